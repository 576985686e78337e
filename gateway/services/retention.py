"""The retention sweep: erase what the gateway no longer needs to hold, each erasure an audit entry.

- A message's content (sealed payload and subjects) once it is acknowledged (the ack erases it itself;
  the sweep catches rows from before that) or past its grant's retention term (``retentionDays`` in
  data.json), acknowledged or not.
- A case's identities (its sealed BSNs and the case key that opens them: crypto-shredding) after
  ``retention.caseIdentitiesDays`` without an exchange or change on the case.

Safe in several processes at once: each batch erases and logs in one transaction under the log's
write lock, and erases only rows not erased yet; a batch another sweeper took first is rolled back
(its entries with it) and left to that one. ``gateway serve`` runs a `RetentionSweeper` thread;
``gateway retention sweep`` runs one sweep.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, null, or_, select, update

from audit import AuditWriteError
from gateway.auth import Principal
from gateway.db import utcnow
from gateway.models import Case, CaseKey, Message, Subject
from gateway.polling import Poller
from gateway.runtime import Runtime
from gateway.services.trail import CallContext, make_entry
from gateway.tracing import from_header

log = logging.getLogger("gateway.retention")

SWEEPER = Principal(client_id="retention-sweeper", agency="gateway", role="system", scopes=frozenset())
"""Who erases, in the audit trail."""

BATCH = 200
"""Rows erased (and entries logged) per transaction."""
MAX_BATCHES = 500
"""Batches per kind in one sweep: a bound, the next sweep goes on where this one stopped."""


@dataclass(frozen=True)
class SweepResult:
    """What one sweep erased."""

    messages: int = 0
    cases: int = 0


class _Taken(Exception):
    """Another sweeper erased some of this batch first: this one's transaction is rolled back."""


def sweep(rt: Runtime, *, now: dt.datetime | None = None) -> SweepResult:
    """Erase every message and case identity that is due at ``now``; returns the counts."""
    now = now or utcnow()
    ctx = CallContext(principal=SWEEPER, trace=from_header(None))
    messages = sum(_batches(lambda: _erase_messages(rt, ctx, now)))
    cases = sum(_batches(lambda: _erase_identities(rt, ctx, now)))
    if messages or cases:
        log.info("retention sweep erased %d messages and the identities of %d cases", messages, cases)
    return SweepResult(messages=messages, cases=cases)


def _batches(step: Any) -> list[int]:
    done: list[int] = []
    for _ in range(MAX_BATCHES):
        n = step()
        if n is None:
            break
        done.append(n)
    return done


def _append(rt: Runtime, entries: list[dict[str, Any]], writes: Any) -> bool:
    """Log ``entries`` with ``writes``; False when another sweeper took the batch first."""
    try:
        rt.audit.append(entries, writes=writes)
    except AuditWriteError as e:
        if isinstance(e.__cause__, _Taken):
            return False
        raise
    return True


def _erase_messages(rt: Runtime, ctx: CallContext, now: dt.datetime) -> int | None:
    """One batch of due messages erased; None when none is due."""
    with rt.db.connect() as conn:
        rows = conn.execute(
            select(
                Message.message_id,
                Message.case_id,
                Message.recipient,
                Message.information_type,
                Message.purpose,
                Message.acked_at,
            )
            .where(
                Message.erased_at.is_(None),
                or_(Message.acked_at.is_not(None), Message.retain_until <= now),
            )
            .order_by(Message.received_at)
            .limit(BATCH)
        ).all()
    if not rows:
        return None
    entries = [
        make_entry(
            ctx,
            type_="retention",
            action="erase",
            outcome="erased",
            case_id=r.case_id,
            counterpart=r.recipient,
            information_type=r.information_type,
            purpose=r.purpose,
            refs={"messageId": r.message_id, "why": "acknowledged" if r.acked_at else "retention_term"},
        )
        for r in rows
    ]
    ids = [r.message_id for r in rows]

    def erase(conn: Connection) -> None:
        done = conn.execute(
            update(Message)
            .where(Message.message_id.in_(ids), Message.erased_at.is_(None))
            .values(sealed=None, payload=null(), erased_at=now)
        ).rowcount
        if done != len(ids):
            raise _Taken()

    return len(ids) if _append(rt, entries, erase) else 0


def _erase_identities(rt: Runtime, ctx: CallContext, now: dt.datetime) -> int | None:
    """One batch of idle cases' identities erased (crypto-shredding); None when none is due."""
    cutoff = now - rt.process_facts().case_identities_term()
    recent = exists().where(and_(Message.case_id == Case.case_id, Message.received_at > cutoff))
    held = exists().where(and_(CaseKey.case_id == Case.case_id))
    sealed = exists().where(and_(Subject.case_id == Case.case_id, Subject.identity.is_not(None)))
    with rt.db.connect() as conn:
        cases = conn.execute(
            select(Case.case_id, Case.flow, Case.step)
            .where(Case.identities_erased_at.is_(None), Case.updated_at <= cutoff, ~recent, held | sealed)
            .order_by(Case.updated_at)
            .limit(BATCH)
        ).all()
        if not cases:
            return None
        ids = [c.case_id for c in cases]
        pseudonyms: dict[str, list[str]] = {i: [] for i in ids}
        for s in conn.execute(
            select(Subject.case_id, Subject.pseudonym)
            .where(Subject.case_id.in_(ids))
            .order_by(Subject.position)
        ):
            pseudonyms[s.case_id].append(s.pseudonym)
    entries = [
        make_entry(
            ctx,
            type_="retention",
            action="erase",
            outcome="identities_erased",
            case_id=c.case_id,
            step=f"{c.flow}/{c.step}",
            subjects=pseudonyms[c.case_id],
            refs={"why": "case_idle"},
        )
        for c in cases
    ]

    def shred(conn: Connection) -> None:
        done = conn.execute(
            update(Case)
            .where(Case.case_id.in_(ids), Case.identities_erased_at.is_(None))
            .values(identities_erased_at=now)
        ).rowcount
        if done != len(ids):
            raise _Taken()
        conn.execute(delete(CaseKey).where(CaseKey.case_id.in_(ids)))
        conn.execute(update(Subject).where(Subject.case_id.in_(ids)).values(identity=None))

    return len(ids) if _append(rt, entries, shred) else 0


class RetentionSweeper(Poller):
    """Sweeps every ``interval`` seconds in a daemon thread (``gateway serve``) until `stop`."""

    thread_name = "retention-sweeper"
    spread_first = True  # the first sweep after a random part of the interval, so workers spread
    log_tracebacks = False  # a sweep's exception may quote case data: its type only
    log = log

    def __init__(self, rt: Runtime, *, interval: float) -> None:
        super().__init__(interval=interval)
        self.rt = rt

    def check(self) -> SweepResult:
        """One sweep (`sweep`)."""
        return sweep(self.rt)
