"""API schemas (Pydantic), apart from the ORM models. JSON keys are camelCase."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

from connectors import Agency
from gateway.bsn import is_valid_bsn
from gateway.settings import MAX_PAYLOAD_FIELDS

Flow = Literal["acuut", "structureel"]
SubjectRole = Literal["slachtoffer", "pleger", "kind", "ouder", "betrokkene"]
Identifier = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
MessageId = Annotated[str, Field(min_length=1, max_length=64)]
UNIQUE: JsonDict = {"uniqueItems": True}
"""Lists whose items may appear once (refused with a 400 otherwise): say so in the schema too."""


class Schema(BaseModel):
    """camelCase on the wire, unknown keys refused so typos are caught."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class RequestBody(Schema):
    """A request body, strictly typed: ``"open": "yes"`` or ``1`` is a 400, never ``true``.

    FastAPI validates the parsed JSON in Python mode, where a strict ``datetime`` would refuse every
    string; a time in a body is therefore a ``JsonDateTime``.
    """

    model_config = ConfigDict(strict=True)


def _rfc3339_text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("a time is RFC 3339 text with an offset, e.g. 2026-12-01T10:00:00Z")
    return value


JsonDateTime = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339_text)]
"""A time in a strict body: RFC 3339 text with an offset only, never a number of seconds."""


def count_fields(value: Any, stop_after: int | None = None) -> int:
    """The keys in ``value`` at every depth; counting stops once past ``stop_after``."""
    count, stack = 0, [value]
    while stack:  # a loop, not recursion: nothing here depends on how deep the caller nested
        item = stack.pop()
        if isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        if stop_after is not None and count > stop_after:
            break
    return count


class SubjectIn(RequestBody):
    role: SubjectRole
    bsn: str = Field(description="Burgerservicenummer: nine digits, elfproef. Stored only as a pseudonym.")

    @field_validator("bsn")
    @classmethod
    def _elfproef(cls, v: str) -> str:
        # The message never repeats the value: a BSN must not end up in an error or a log.
        if not is_valid_bsn(v):
            raise ValueError("not a valid BSN (nine digits, elfproef)")
        return v


class CaseCreate(RequestBody):
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


class TransitionIn(RequestBody):
    flow: Flow | None = None
    step: str = Identifier


class TrackIn(RequestBody):
    open: bool


class ShareIn(RequestBody):
    information_type: str = Identifier
    purpose: str = Identifier
    recipients: list[Agency] = Field(min_length=1, max_length=5, json_schema_extra=UNIQUE)
    payload: dict[str, Any]
    based_on: list[MessageId] | None = Field(
        default=None,
        max_length=20,
        json_schema_extra=UNIQUE,
        description=(
            "Onward sharing: the ids of received messages (delivered to the caller's agency, in this "
            "case) the payload comes from. The policy then checks the purpose against theirs."
        ),
    )

    @field_validator("payload")
    @classmethod
    def _bounded(cls, v: dict[str, Any]) -> dict[str, Any]:
        # Every key at every depth counts, so nesting is no way round the limit.
        if count_fields(v, stop_after=MAX_PAYLOAD_FIELDS) > MAX_PAYLOAD_FIELDS:
            raise ValueError(f"more than {MAX_PAYLOAD_FIELDS} fields (keys at every depth count)")
        return v

    @field_validator("based_on")
    @classmethod
    def _message_ids(cls, v: list[str] | None) -> list[str] | None:
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
    identifies: list[str] | None = Field(
        None,
        description="The roles of the case's subjects whose BSN went to this recipient (`subjects` of the "
        "delivered message), as its grant allows (`bsn:<role>`); the BSNs themselves are never answered.",
    )
    delivered: bool | None = None


class ShareOut(Schema):
    share_id: str
    policy_revision: str
    results: list[ShareResult]


class ShareRecipientStatus(Schema):
    recipient: str
    allowed: bool
    message_id: str | None = None
    identifies: list[str] | None = Field(
        None, description="The roles of the subjects this recipient can identify in the message (see shares)."
    )
    status: Literal["refused", "pending", "delivered", "dead_letter"] = Field(
        description="`refused` by the policy; `pending` until the recipient's system took the message (a "
        "push, or for a pull-only recipient its acknowledgement); `delivered`; `dead_letter` when pushing "
        "gave up (an operator can requeue it; the message still waits in the inbox)."
    )
    attempts: int = Field(description="Push attempts made so far.")
    delivered_at: dt.datetime | None = Field(
        default=None, description="When the push was accepted, or the message acknowledged (UTC)."
    )
    last_error: str | None = Field(
        default=None,
        description="The kind of the last failed push: `timeout`, `unavailable`, `rejected`, `not_accepted`, "
        "`no_connector`, `erased`, `unopenable` or `error`.",
    )


class ShareStatus(Schema):
    share_id: str
    case_id: str
    information_type: str
    purpose: str
    created_at: dt.datetime
    recipients: list[ShareRecipientStatus] = Field(
        description="Every recipient named in the share, in its order, with its delivery status."
    )


class OriginOut(Schema):
    message_id: str
    purpose: str
    information_type: str
    sender: str


class SubjectIdentityOut(Schema):
    """A subject the recipient may identify (a grant's ``bsn:<role>`` field): role and BSN."""

    role: str
    bsn: str = Field(pattern=r"^[0-9]{9}$", description="Burgerservicenummer (nine digits).")


class InboxMessage(Schema):
    message_id: str
    case_id: str
    information_type: str
    purpose: str
    sender: str
    legal_basis: str
    payload: dict[str, Any]
    subjects: list[SubjectIdentityOut] = Field(
        default_factory=list,
        description=(
            "The case's subjects the policy lets this recipient identify, with their BSN; the others are "
            "the case's pseudonyms only."
        ),
    )
    received_at: dt.datetime
    usage_restriction: str
    based_on: list[str] | None = None
    origin: list[OriginOut] | None = Field(
        default=None,
        description="Where the data came from: the messages it was shared on from, and theirs in turn.",
    )


class UnreadableMessage(Schema):
    """A message for the caller that cannot be shown (stored damaged, or by an older version)."""

    message_id: str = Field(description="Acknowledge it by this id once the sender has been asked again.")
    case_id: str
    sender: str
    received_at: dt.datetime


class Inbox(Schema):
    messages: list[InboxMessage]
    unreadable: list[UnreadableMessage] = Field(
        default_factory=list,
        description="Messages whose stored payload cannot be shown; they never hide the others.",
    )


class RequestIn(RequestBody):
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


class DecisionIn(RequestBody):
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
    payload_fields: list[str] | None = Field(default=None, max_length=MAX_PAYLOAD_FIELDS)
    based_on: list[MessageId] | None = Field(default=None, max_length=20, json_schema_extra=UNIQUE)

    @field_validator("based_on")
    @classmethod
    def _once(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a message is listed twice")
        return v


class DecisionOut(Schema):
    allowed: bool
    reasons: list[Reason]
    legal_basis: str | None
    obligations: list[dict[str, Any]]
    policy_revision: str
    recipients: dict[str, Any] | None = None


MAX_INDEX = 2**63 - 1
"""The largest index, tree size or cursor position (a signed 64-bit database integer)."""

EntryType = Literal["audit", "access", "case", "decision", "delivery", "exchange", "policy"]
"""The ``type`` of every entry the gateway writes."""

CaseId = Field(
    default=None,
    pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
    description="A case id as the gateway issues them (a lower-case UUID).",
)
_RFC3339_START = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}")
_INDEX_CURSOR = re.compile(r"[0-9]{1,18}")
_RANGE_CURSOR = re.compile(r"[0-9]{1,18}(?:-[0-9]{1,18})?")


class AuditFilters(Schema):
    """Filters on the audit log. Every value is an identifier the gateway checks, never free text."""

    case_id: str | None = CaseId
    agency: Agency | None = Field(
        default=None, description="Entries naming this agency (actor or counterpart)."
    )
    purpose: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$", description="A purpose id."
    )
    type: EntryType | None = Field(default=None, description="The entry type.")
    information_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="An information type id.",
    )
    from_: dt.datetime | None = Field(
        default=None, alias="from", description="Entries at or after this time."
    )
    to: dt.datetime | None = Field(default=None, description="Entries at or before this time.")
    limit: int = Field(default=100, ge=1, le=1000, description="Entries per page.")
    cursor: str | None = Field(
        default=None,
        max_length=40,
        description="The ``next`` of the previous page; left out for the first.",
        # Documented, but checked by the validator below, so the message stays one a person can read.
        json_schema_extra={"pattern": "^[0-9]{1,18}$"},
    )

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _rfc3339_text(cls, v: object) -> object:
        # RFC 3339 text only: pydantic would read a bare number, also "0.5" in a query, as Unix seconds.
        if v is not None and not (isinstance(v, str) and _RFC3339_START.match(v)):
            raise ValueError("a time is RFC 3339 text, e.g. 2026-12-01T10:00:00Z")
        return v

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, v: str | None) -> str | None:
        # The decimal index the page starts at (the store's form). At most 18 digits, so always within
        # 0..2^63-1 (the database's integer), and the documented pattern is exactly what is accepted.
        if v is not None and not _INDEX_CURSOR.fullmatch(v):
            raise ValueError("not a cursor this gateway issued")
        return v


class AuditSearchIn(AuditFilters):
    """A lookup of one person: the BSN travels in the body, never in a URL."""

    bsn: str = Field(description="Burgerservicenummer: nine digits, elfproef. Pseudonymised at once.")
    limit: int = Field(default=100, ge=1, le=1000, description="Rows per page.")
    cursor: str | None = Field(
        default=None,
        max_length=40,
        description="The ``next`` of the previous page; left out for the first. Pages after the first "
        "stay within the log as the first page saw it, so paging ends even though every page is logged.",
        json_schema_extra={"pattern": "^[0-9]{1,18}(-[0-9]{1,18})?$"},
    )

    @field_validator("bsn")
    @classmethod
    def _elfproef(cls, v: str) -> str:
        if not is_valid_bsn(v):
            raise ValueError("not a valid BSN (nine digits, elfproef)")
        return v

    @field_validator("limit", mode="before")
    @classmethod
    def _json_integer(cls, v: object) -> object:
        # A JSON integer (``5``, or ``5.0`` as JSON Schema counts it), never a string or a boolean.
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("must be a whole number")
        if isinstance(v, float):
            if not v.is_integer():
                raise ValueError("must be a whole number")
            return int(v)
        return v

    @field_validator("cursor")
    @classmethod
    def _cursor(cls, v: str | None) -> str | None:
        # ``start`` or ``start-end``: the index the page starts at and the log size the report is bound to.
        if v is not None and not _RANGE_CURSOR.fullmatch(v):
            raise ValueError("not a cursor this gateway issued")
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
    reasons: list[Reason] = Field(
        default_factory=list,
        description="The decision's reasons: the recorded English sentence and the Dutch one, with names.",
    )


class CaseReportIn(Schema):
    """A report of one case: its id in the body, like every lookup."""

    case_id: str = Field(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        description="A case id as the gateway issues them (a lower-case UUID).",
    )


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
