"""API schemas (Pydantic), apart from the ORM models. JSON keys are camelCase."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from gateway.bsn import is_valid_bsn

Agency = Literal["politie", "veilig_thuis", "om", "reclassering", "rvdk"]
Flow = Literal["acuut", "structureel"]
SubjectRole = Literal["slachtoffer", "pleger", "kind", "ouder", "betrokkene"]
Identifier = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")


class Schema(BaseModel):
    """camelCase on the wire, unknown keys refused so typos are caught."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SubjectIn(Schema):
    role: SubjectRole
    bsn: str = Field(description="Burgerservicenummer: nine digits, elfproef. Stored only as a pseudonym.")

    @field_validator("bsn")
    @classmethod
    def _elfproef(cls, v: str) -> str:
        # The message never repeats the value: a BSN must not end up in an error or a log.
        if not is_valid_bsn(v):
            raise ValueError("not a valid BSN (nine digits, elfproef)")
        return v


class CaseCreate(Schema):
    flow: Flow
    subjects: list[SubjectIn] = Field(min_length=1, max_length=50)
    step: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")


class Tracks(Schema):
    zorg: bool
    straf: bool


class SubjectOut(Schema):
    role: str
    pseudonym: str


class CaseOut(Schema):
    case_id: str
    flow: str
    step: str
    tracks: Tracks
    opened_by: str
    subjects: list[SubjectOut]
    created_at: dt.datetime
    updated_at: dt.datetime


class TransitionIn(Schema):
    flow: Flow | None = None
    step: str = Identifier


class TrackIn(Schema):
    open: bool


class ShareIn(Schema):
    information_type: str = Identifier
    purpose: str = Identifier
    recipients: list[Agency] = Field(min_length=1, max_length=5)
    payload: dict[str, Any]
    based_on: list[str] | None = Field(
        default=None,
        max_length=20,
        description=(
            "Onward sharing: the ids of received messages (delivered to the caller's agency, in this "
            "case) the payload comes from. The policy then checks the purpose against theirs."
        ),
    )

    @field_validator("based_on")
    @classmethod
    def _message_ids(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(not (1 <= len(m) <= 64) for m in v):
            raise ValueError("message ids are 1 to 64 characters")
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a message is listed twice")
        return v


class Reason(Schema):
    code: str
    message: str
    message_nl: str | None = None


class ShareResult(Schema):
    recipient: str
    allowed: bool
    reasons: list[Reason]
    legal_basis: str | None
    message_id: str | None = None
    fields: list[str] | None = None
    delivered: bool | None = None


class ShareOut(Schema):
    share_id: str
    policy_revision: str
    results: list[ShareResult]


class OriginOut(Schema):
    message_id: str
    purpose: str
    information_type: str
    sender: str


class InboxMessage(Schema):
    message_id: str
    case_id: str
    information_type: str
    purpose: str
    sender: str
    legal_basis: str
    payload: dict[str, Any]
    received_at: dt.datetime
    usage_restriction: str
    based_on: list[str] | None = None
    origin: list[OriginOut] | None = Field(
        default=None,
        description="Where the data came from: the messages it was shared on from, and theirs in turn.",
    )


class Inbox(Schema):
    messages: list[InboxMessage]


class RequestIn(Schema):
    information_type: str = Identifier
    purpose: str = Identifier
    holder: Agency


class RequestOut(Schema):
    request_id: str
    allowed: bool
    legal_basis: str | None
    policy_revision: str
    fields: list[str]
    data: dict[str, Any]


class DecisionIn(Schema):
    action: Literal["share", "request", "case.read", "case.transition", "case.track"]
    case_id: str = Field(min_length=1, max_length=64)
    information_type: str | None = Field(default=None, min_length=1, max_length=64)
    purpose: str | None = Field(default=None, min_length=1, max_length=64)
    recipient: Agency | None = None
    holder: Agency | None = None
    flow: Flow | None = None
    step: str | None = Field(default=None, min_length=1, max_length=64)
    track: Literal["zorg", "straf"] | None = None
    open: bool | None = None
    payload_fields: list[str] | None = None
    based_on: list[str] | None = Field(default=None, max_length=20)


class DecisionOut(Schema):
    allowed: bool
    reasons: list[Reason]
    legal_basis: str | None
    obligations: list[dict[str, Any]]
    policy_revision: str
    recipients: dict[str, Any] | None = None


class AuditFilters(Schema):
    case_id: str | None = None
    agency: Agency | None = None
    purpose: str | None = None
    type: str | None = None
    information_type: str | None = None
    from_: dt.datetime | None = Field(default=None, alias="from")
    to: dt.datetime | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = None


class AuditSearchIn(AuditFilters):
    bsn: str

    @field_validator("bsn")
    @classmethod
    def _elfproef(cls, v: str) -> str:
        if not is_valid_bsn(v):
            raise ValueError("not a valid BSN (nine digits, elfproef)")
        return v


class AuditItem(Schema):
    index: int
    leaf_data: str
    entry: dict[str, Any]


class AuditPage(Schema):
    entries: list[AuditItem]
    next: str | None


class SubjectReportRow(Schema):
    index: int
    time: str | None
    type: str | None
    action: str | None
    case_id: str | None
    actor: str | None
    counterpart: str | None
    from_: str | None = Field(alias="from")
    to: str | None
    information_type: str | None
    purpose: str | None
    legal_basis: str | None
    allowed: bool | None
    outcome: str | None
    policy_revision: str | None
    trace_id: str | None


class SubjectReport(Schema):
    checkpoint: str
    tree_size: int
    entries: list[SubjectReportRow]
    next: str | None


class ProofOut(Schema):
    index: int
    tree_size: int
    hashes: list[str]


class ConsistencyOut(BaseModel):
    from_: int = Field(alias="from")
    to: int
    hashes: list[str]
    model_config = ConfigDict(populate_by_name=True)


class PolicyInfo(Schema):
    revision: str
    engine: str
    loaded_at: str
    modules: list[str]
