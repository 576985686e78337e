"""Subject-access reports: every logged exchange about one person, in plain columns.

The report is read from the log itself (the same leaf bytes the Merkle tree hashes), found through the
subject-pseudonym index, so each row names its log index and can be proven with an inclusion proof
against a signed checkpoint. The audit package never sees a BSN: callers pass the keyed pseudonym.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from audit._internal.store import MAX_PAGE, AuditStore, LogEntry, SearchFilters

# Which way information moves for an action: from the actor to the counterpart (a share), or from the
# counterpart to the actor (a request is answered by the holder; an acknowledged message came from its
# sender). Actions not listed move nothing between agencies (a case opened, read or moved).
_TO_COUNTERPART = frozenset({"share", "push", "what-if:share"})
_FROM_COUNTERPART = frozenset({"request", "what-if:request", "ack"})


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _agency(value: Any) -> str | None:
    if isinstance(value, Mapping):
        value = value.get("agency")
    return _str(value)


@dataclass(frozen=True)
class ReportRow:
    """One entry about the person: when, between which agencies, what, why, on which legal basis."""

    index: int
    time: str | None
    type: str | None
    action: str | None
    case_id: str | None
    actor: str | None
    counterpart: str | None
    from_agency: str | None
    to_agency: str | None
    information_type: str | None
    purpose: str | None
    legal_basis: str | None
    allowed: bool | None
    outcome: str | None
    policy_revision: str | None
    trace_id: str | None

    @property
    def moves_information(self) -> bool:
        """True for an action that sends information between agencies (whether or not it was allowed)."""
        return self.action in _TO_COUNTERPART or self.action in _FROM_COUNTERPART

    def as_json(self) -> dict[str, Any]:
        """The row with camelCase keys, as the API and ``--json`` show it."""
        return {
            "index": self.index,
            "time": self.time,
            "type": self.type,
            "action": self.action,
            "caseId": self.case_id,
            "actor": self.actor,
            "counterpart": self.counterpart,
            "from": self.from_agency,
            "to": self.to_agency,
            "informationType": self.information_type,
            "purpose": self.purpose,
            "legalBasis": self.legal_basis,
            "allowed": self.allowed,
            "outcome": self.outcome,
            "policyRevision": self.policy_revision,
            "traceId": self.trace_id,
        }


def report_row(item: LogEntry) -> ReportRow:
    """The report columns of one logged entry; absent or odd fields become None."""
    try:
        parsed: Any = item.entry
    except ValueError:
        parsed = None
    e: Mapping[str, Any] = parsed if isinstance(parsed, Mapping) else {}
    decision = e.get("decision")
    if not isinstance(decision, Mapping):
        decision = {}
    action = _str(e.get("action"))
    actor, counterpart = _agency(e.get("actor")), _agency(e.get("counterpart"))
    if action in _TO_COUNTERPART:
        source, target = actor, counterpart
    elif action in _FROM_COUNTERPART:
        source, target = counterpart, actor
    else:
        source, target = None, None
    allowed = decision.get("allowed")
    return ReportRow(
        index=item.index,
        time=_str(e.get("time")),
        type=_str(e.get("type")),
        action=action,
        case_id=_str(e.get("caseId")),
        actor=actor,
        counterpart=counterpart,
        from_agency=source,
        to_agency=target,
        information_type=_str(e.get("informationType")),
        purpose=_str(e.get("purpose")),
        legal_basis=_str(decision.get("legalBasis")),
        allowed=allowed if isinstance(allowed, bool) else None,
        outcome=_str(e.get("outcome")),
        policy_revision=_str(decision.get("policyRevision")),
        trace_id=_str(e.get("traceId")),
    )


@dataclass(frozen=True)
class SubjectReport:
    """Every entry naming one person among the first ``tree_size`` entries of the log, oldest first."""

    tree_size: int
    rows: tuple[ReportRow, ...] = field(default=())

    @property
    def exchanges(self) -> tuple[ReportRow, ...]:
        """The rows where information was sent, or asked for, between agencies."""
        return tuple(r for r in self.rows if r.moves_information)

    def as_json(self) -> dict[str, Any]:
        """``{treeSize, entries: [...]}`` with camelCase rows."""
        return {"treeSize": self.tree_size, "entries": [r.as_json() for r in self.rows]}


def subject_report(
    store: AuditStore,
    pseudonym: str,
    *,
    filters: SearchFilters | Mapping[str, Any] | None = None,
    visible_to: str | None = None,
    tree_size: int | None = None,
) -> SubjectReport:
    """Every entry whose subjects include ``pseudonym``, among the first ``tree_size`` entries.

    ``tree_size`` defaults to the log's size when the report starts, so a report made while the log
    grows still describes one prefix of it (pair it with a checkpoint of at least that size).
    ``visible_to`` limits the report to entries naming that agency (a privacy officer's view);
    ``filters`` narrows further (case, purpose, time range, ...).
    """
    size = store.size() if tree_size is None else tree_size
    base = replace(SearchFilters.coerce(filters), subject=pseudonym)
    if visible_to is not None:
        base = replace(base, visible_to=visible_to)
    rows: list[ReportRow] = []
    cursor: str | None = None
    while True:
        page, cursor = store.search(base, limit=MAX_PAGE, cursor=cursor)
        for item in page:
            if item.index >= size:
                return SubjectReport(size, tuple(rows))
            rows.append(report_row(item))
        if cursor is None:
            return SubjectReport(size, tuple(rows))
