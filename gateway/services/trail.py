"""What goes into an audit entry: one place, so every entry has the same shape.

Entries follow the fields of Logboek Dataverwerkingen (trace, span, processing activity, status) and the
Authorization Decision Log (the decision, its reasons and the policy revision). They never hold a BSN or
payload content: subjects appear as keyed pseudonyms and payloads as a SHA-256 digest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit import canonical_json
from gateway.auth import Principal
from gateway.models import CaseRecord
from gateway.policy import Decision
from gateway.tracing import TraceContext

ENTRY_VERSION = 1

# Outcomes where the gateway's own processing failed. Logboek Dataverwerkingen's status ERROR; a refusal
# is a decision carried out, not an error (Authorization Decision Log: "a deny is not an Error").
_ERROR_OUTCOMES = frozenset({"push_failed", "dead_letter", "holder_timeout", "holder_failed"})


@dataclass(frozen=True)
class CallContext:
    """Who is calling, within which trace."""

    principal: Principal
    trace: TraceContext


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 over the canonical JSON of a payload, so an officer can match it without seeing it."""
    return "sha256:" + hashlib.sha256(canonical_json(payload)).hexdigest()


def _time() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def fields_digest(fields: Iterable[str]) -> str:
    """``sha256:<hex>`` of the canonical JSON of the sorted, distinct field names (``fieldsDigest``)."""
    return "sha256:" + hashlib.sha256(canonical_json(sorted(set(fields)))).hexdigest()


def decision_record(decision: Decision, recipient: str | None = None) -> dict[str, Any]:
    """The decision part of an entry; per recipient when the decision covered several."""
    part = decision.recipients.get(recipient) if recipient is not None else None
    reasons = part.reasons if part is not None else decision.reasons
    record = {
        "allowed": part.allowed if part is not None else decision.allowed,
        "reasons": [{"code": r.code, "message": r.message} for r in reasons],
        "legalBasis": part.legal_basis if part is not None else decision.legal_basis,
        "policyRevision": decision.policy_revision,
    }
    if part is not None:
        # Which fields the recipient may receive, as a digest: the log names no field (explain checks it).
        record["fieldsDigest"] = fields_digest(part.fields)
    if decision.input_digest is not None:
        # The input is stored under this digest with the entry (Runtime.audit_append, issue 11).
        record["inputDigest"] = decision.input_digest
    return record


def make_entry(
    ctx: CallContext,
    *,
    type_: str,
    action: str,
    outcome: str,
    case_id: str | None = None,
    step: str | None = None,
    subjects: list[str] | None = None,
    information_type: str | None = None,
    purpose: str | None = None,
    counterpart: str | None = None,
    decision: dict[str, Any] | None = None,
    digest: str | None = None,
    refs: dict[str, str] | None = None,
    query: dict[str, str | int] | None = None,
) -> dict[str, Any]:
    """One audit entry. ``outcome`` says what happened after the decision (e.g. ``delivered``).

    ``query`` is what a lookup asked for (its filters and page): only values the gateway validated,
    never request text, since nothing can be taken out of the log again.
    """
    entry: dict[str, Any] = {
        "v": ENTRY_VERSION,
        "time": _time(),
        "type": type_,
        "traceId": ctx.trace.trace_id,
        "spanId": ctx.trace.span_id,
        "actor": {"agency": ctx.principal.agency, "clientId": ctx.principal.client_id},
        "action": action,
        "processingActivity": f"veilig-delen:{purpose or action}",
        "outcome": outcome,
        "status": "error" if outcome in _ERROR_OUTCOMES else "ok",
    }
    if ctx.trace.parent_span_id:
        entry["parentSpanId"] = ctx.trace.parent_span_id
        # The caller's operation, as Logboek's foreign_operation: its trace and span, and who ran it.
        entry["foreignOperation"] = {
            "traceId": ctx.trace.trace_id,
            "spanId": ctx.trace.parent_span_id,
            "entity": ctx.principal.agency,
        }
    optional = {
        "caseId": case_id,
        "step": step,
        "subjects": subjects,
        "informationType": information_type,
        "purpose": purpose,
        "counterpart": counterpart,
        "decision": decision,
        "payloadDigest": digest,
        "refs": refs,
        "query": query,
    }
    entry.update({k: v for k, v in optional.items() if v is not None})
    return entry


def lookup_entry(
    ctx: CallContext,
    *,
    action: str,
    pseudonym: str | None = None,
    subjects: list[str] | None = None,
    case_id: str | None = None,
    counterpart: str | None = None,
    query: dict[str, str | int] | None = None,
) -> dict[str, Any]:
    """The entry of one lookup of a person (a page of a subject report, or of a search by BSN), or of a
    case's report (``subjects``: every person of the case).

    Looking someone up is a processing of their data, so it is logged like any other: who asked, about
    which pseudonym, in which case, with which validated filters and from which position in the log.
    """
    return make_entry(
        ctx,
        type_="audit",
        action=action,
        outcome="reported" if action.endswith("_report") else "searched",
        subjects=subjects if subjects is not None else [pseudonym] if pseudonym is not None else None,
        case_id=case_id,
        counterpart=counterpart,
        query=query,
    )


def pseudonyms(case: CaseRecord) -> list[str]:
    """The subjects' pseudonyms, as entries name them."""
    return [s.pseudonym for s in case.subjects]


def case_entry(
    ctx: CallContext,
    case: CaseRecord,
    *,
    type_: str,
    action: str,
    outcome: str,
    decision: Decision | None = None,
    recipient: str | None = None,
    counterpart: str | None = None,
    information_type: str | None = None,
    purpose: str | None = None,
    digest: str | None = None,
    refs: dict[str, str] | None = None,
    subjects: bool = True,
) -> dict[str, Any]:
    """The entry of anything done about ``case``: its id, step and subjects filled in from the case.

    ``decision`` (with ``recipient`` for a decision over several receivers) is recorded as the decision
    part; ``counterpart`` defaults to ``recipient``. ``subjects=False`` leaves the pseudonyms out (an
    acknowledgement names the message, not the people again).
    """
    return make_entry(
        ctx,
        type_=type_,
        action=action,
        outcome=outcome,
        case_id=case.case_id,
        step=f"{case.flow}/{case.step}",
        subjects=pseudonyms(case) if subjects else None,
        information_type=information_type,
        purpose=purpose,
        counterpart=counterpart or recipient,
        decision=decision_record(decision, recipient) if decision is not None else None,
        digest=digest,
        refs=refs,
    )
