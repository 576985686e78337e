"""The JSON shapes agency systems exchange with the gateway's HTTP connector, defined once for both ends.

Bodies use camelCase keys (as the gateway's own API does). The W3C ``traceparent`` travels as a
header, not in the body. Unknown keys are ignored in both directions so that either side can add a
field without breaking the other.
"""

from __future__ import annotations

import re
from dataclasses import asdict
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.alias_generators import to_camel

from connectors.base import Delivery, DeliveryReceipt, FetchRequest, FetchResult, SubjectIdentity

DELIVERIES_PATH = "/veilig-delen/deliveries"
FETCH_PATH = "/veilig-delen/fetch"
HEALTH_PATH = "/veilig-delen/health"

_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]


class _Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True)


class SubjectBody(_Body):
    """A subject the recipient may identify: role and BSN."""

    role: Id
    bsn: Annotated[str, StringConstraints(pattern=r"^[0-9]{9}$")]


class DeliveryBody(_Body):
    """``POST /veilig-delen/deliveries``."""

    message_id: Id
    case_id: Id
    sender: Id
    recipient: Id
    information_type: Id
    purpose: Id
    legal_basis: str
    payload: dict[str, Any]
    usage_restriction: str
    subjects: list[SubjectBody] = Field(default_factory=list)


class ReceiptBody(_Body):
    """The answer to a delivery."""

    message_id: str
    accepted: bool
    detail: str = ""


class FetchBody(_Body):
    """``POST /veilig-delen/fetch``."""

    request_id: Id
    case_id: Id
    requester: Id
    holder: Id
    information_type: Id
    purpose: Id
    subject_roles: list[str]
    subject_pseudonyms: list[str]


class FetchResultBody(_Body):
    """The answer to a fetch."""

    found: bool
    data: dict[str, Any] = Field(default_factory=dict)


def _without_trace(obj: Delivery | FetchRequest) -> dict[str, Any]:
    fields = asdict(obj)
    del fields["trace_parent"]
    return fields


# Outgoing bodies are built with ``model_construct``, without validation: the receiving end validates
# and answers a refusal, which keeps a connector's failures to ``ConnectorError``, and a local
# ValidationError would print the case data it was given.


def delivery_json(d: Delivery) -> dict[str, Any]:
    """The request body for ``d``."""
    fields = _without_trace(d)
    fields["subjects"] = [SubjectBody.model_construct(role=s.role, bsn=s.bsn) for s in d.subjects]
    return DeliveryBody.model_construct(**fields).model_dump(by_alias=True, mode="json")


def delivery_from(body: DeliveryBody, traceparent: str | None) -> Delivery:
    """The delivery a body and its ``traceparent`` header describe."""
    fields = body.model_dump()
    subjects = tuple(SubjectIdentity(s["role"], s["bsn"]) for s in fields.pop("subjects"))
    return Delivery(**fields, subjects=subjects, trace_parent=valid_traceparent(traceparent))


def fetch_json(r: FetchRequest) -> dict[str, Any]:
    """The request body for ``r``."""
    return FetchBody.model_construct(**_without_trace(r)).model_dump(by_alias=True, mode="json")


def fetch_from(body: FetchBody, traceparent: str | None) -> FetchRequest:
    """The fetch request a body and its ``traceparent`` header describe."""
    return FetchRequest(**body.model_dump(), trace_parent=valid_traceparent(traceparent))


def receipt_json(receipt: DeliveryReceipt) -> dict[str, Any]:
    """The response body for ``receipt``."""
    return ReceiptBody.model_construct(**asdict(receipt)).model_dump(by_alias=True)


def result_json(result: FetchResult) -> dict[str, Any]:
    """The response body for ``result``."""
    return FetchResultBody.model_construct(**asdict(result)).model_dump(by_alias=True, mode="json")


def valid_traceparent(value: str | None) -> str:
    """``value`` when it is a well-formed version-00 traceparent, else ``""`` (W3C: ignore bad headers)."""
    if value and _TRACEPARENT.match(value.strip()):
        return value.strip()
    return ""
