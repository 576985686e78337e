"""The transactional outbox's deliverer: pushes stored messages to their recipients' systems, at least once.

A share commits one ``outbox`` row per allowed push recipient together with its audit entries and
messages (`ExchangeService.share`). A `Deliverer` then sends each row's message:

- **claims** a row with a lease first (a conditional ``UPDATE`` whose row count says who won), so no two
  deliverers (threads, ``--workers``, replicas on one PostgreSQL) push one message at the same time; a
  crashed deliverer's lease runs out and another takes the row over (at least once: the recipient
  stores a message id once, it is the ``Idempotency-Key``);
- **retries** a failed push after an exponential backoff with full jitter, and moves the row to the
  dead letter after ``GATEWAY_DELIVERY_MAX_ATTEMPTS`` attempts (at once when the recipient refused it:
  sending it unchanged will not help); ``gateway outbox retry`` requeues it;
- keeps a **circuit breaker per agency**: after ``GATEWAY_DELIVERY_BREAKER_FAILURES`` consecutive
  failures the agency's rows wait, unclaimed and untried, until a cool-down has passed; then one trial
  push closes the circuit again or reopens it;
- **audits every attempt**: the outbox row's new state commits in the transaction of the attempt's entry
  (type ``delivery``, action ``push``; outcome ``delivered``, ``push_failed``, ``dead_letter`` or
  ``skipped``), which names the message, the share, the attempt and the error's kind, never anything the
  agency answered.

The share's own request makes the first attempt (its rows are born claimed by it), so the answer's
``delivered`` is true when the recipient took the message; retries happen in the background
(`Deliverer.start`, run by ``gateway serve`` in every worker).

    deliverer = Deliverer(rt)          # rt.deliverer is the runtime's own
    deliverer.run_once()               # one pass over the rows that are due; the attempts it made
    deliverer.start(); deliverer.stop()

Time comes from the ``clock`` given (tests move it instead of sleeping).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import BindParameter, Connection, Engine, Table, bindparam, func, null, or_, select, update
from sqlalchemy.orm import Session

from connectors import (
    AGENCIES,
    ConnectorError,
    ConnectorRejected,
    ConnectorTimeout,
    ConnectorUnavailable,
    Delivery,
)
from connectors.config import DeliveryMode
from connectors.registry import connectors_config
from gateway.auth import Principal
from gateway.db import Base, utcnow
from gateway.errors import AuditUnavailable, NotFound
from gateway.models import Message, OutboxItem, Share
from gateway.services.messages import Unopenable, stored_delivery
from gateway.services.trail import CallContext, make_entry
from gateway.tracing import TraceContext, from_header

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from gateway.settings import Settings

log = logging.getLogger("gateway.outbox")

DELIVERER = Principal(client_id="gateway-deliverer", agency="gateway", role="system", scopes=frozenset())
"""Who pushes, in the audit trail."""

OPERATOR = Principal(client_id="gateway-cli", agency="operator", role="operator", scopes=frozenset())
"""Who requeues, in the audit trail, from ``gateway outbox retry``."""

PENDING, DELIVERED, DEAD_LETTER = "pending", "delivered", "dead_letter"
STATUSES = (PENDING, DELIVERED, DEAD_LETTER)

ErrorKind = Literal[
    "timeout", "unavailable", "rejected", "not_accepted", "no_connector", "erased", "unopenable", "error"
]
"""What went wrong with a push, as the outbox row, its entry and ``GET /v1/shares/{id}`` say it: a kind,
never the agency's own words (they could quote case data)."""

_ANSWERED: frozenset[str] = frozenset({"rejected", "not_accepted"})
"""Failures where the agency's system answered: they say nothing against its circuit."""

BATCH = 100
"""Rows one pass of the deliverer looks at."""

_OUTBOX = Base.metadata.tables[OutboxItem.__tablename__]
_MESSAGES = Base.metadata.tables[Message.__tablename__]


def _bound(table: Table, name: str, key: str | None = None) -> BindParameter[Any]:
    """A bind parameter ``b_<key or name>`` typed as ``table``'s column ``name`` (a timestamp is bound as
    the column binds it; a column's own name is reserved for the statement's SET clause)."""
    return bindparam(f"b_{key or name}", type_=table.c[name].type)


# An attempt's row update and a push-only recipient's erasure, built once (not per attempt).
_SETTLE = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.message_id == _bound(_OUTBOX, "message_id"),
        _OUTBOX.c.claimed_until == _bound(_OUTBOX, "claimed_until", "lease"),
    )
    .values(
        status=_bound(_OUTBOX, "status"),
        attempts=_bound(_OUTBOX, "attempts"),
        next_attempt_at=_bound(_OUTBOX, "next_attempt_at"),
        last_error=_bound(_OUTBOX, "last_error"),
        delivered_at=_bound(_OUTBOX, "delivered_at"),
        claimed_until=None,
    )
)
_ERASE_PUSHED = (
    update(_MESSAGES)
    .where(_MESSAGES.c.message_id == _bound(_MESSAGES, "message_id"), _MESSAGES.c.erased_at.is_(None))
    .values(
        acked_at=func.coalesce(_MESSAGES.c.acked_at, _bound(_MESSAGES, "acked_at", "now")),
        sealed=None,
        payload=null(),
        erased_at=_bound(_MESSAGES, "erased_at", "now"),
    )
)


def error_kind(e: BaseException) -> ErrorKind:
    """The kind of a failed push."""
    match e:
        case ConnectorTimeout():
            return "timeout"
        case ConnectorUnavailable():
            return "unavailable"
        case ConnectorRejected():
            return "rejected"
        case _:
            return "error"


def full_jitter(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, ...): uniform in [0, min(cap, base*2^(n-1))].

    Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the spread keeps many
    messages that failed together from coming back together.
    """
    return rng.uniform(0.0, min(cap, base * 2.0 ** min(attempt - 1, 62)))


def delivery_modes(settings: Settings) -> dict[str, DeliveryMode]:
    """How each agency receives its messages: the connector file's ``mode`` when there is a file, else
    ``GATEWAY_DELIVERY_MODES``; ``both`` for an agency neither names. ``push``: pushed, and erased once its
    system took it; ``both``: pushed and listed in the inbox until acknowledged; ``pull``: only listed."""
    if settings.connectors == "http" and settings.connectors_file is not None:
        if settings.delivery_modes:
            raise ValueError(
                "GATEWAY_DELIVERY_MODES is for configurations without a connector file; "
                "set each agency's mode in GATEWAY_CONNECTORS_FILE"
            )
        config = connectors_config("http", {}, settings.connectors_file)
        return {a: config.mode_of(a) for a in AGENCIES} if config is not None else {}
    return dict(settings.delivery_modes)


class CircuitBreakers:
    """One circuit per agency: closed, open (its rows wait untried) or, after the cool-down, half-open.

    A small class rather than pybreaker or circuitbreaker: both wrap the call and read the wall clock,
    while the deliverer must ask *before* it claims a row (an open circuit leaves the row unclaimed and
    its attempts unspent) and must run on the clock it is given. State is per process: each worker and
    replica learns an agency is down from its own failures.
    """

    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures = failures
        self.cooldown = dt.timedelta(seconds=cooldown)
        self._lock = threading.Lock()
        self._count: dict[str, int] = {}
        self._opened: dict[str, dt.datetime] = {}

    def state(self, agency: str, now: dt.datetime) -> Literal["closed", "open", "half_open"]:
        """The circuit of ``agency`` at ``now``."""
        with self._lock:
            opened = self._opened.get(agency)
        if opened is None:
            return "closed"
        return "open" if now < opened + self.cooldown else "half_open"

    def allows(self, agency: str, now: dt.datetime) -> bool:
        """Whether a push to ``agency`` may be tried now (closed, or half-open for a trial)."""
        return self.state(agency, now) != "open"

    def blocked(self, now: dt.datetime) -> list[str]:
        """The agencies whose circuit is open at ``now``."""
        with self._lock:
            opened = dict(self._opened)
        return sorted(a for a, t in opened.items() if now < t + self.cooldown)

    def succeeded(self, agency: str) -> None:
        """A push reached ``agency``'s system: close its circuit."""
        with self._lock:
            self._count.pop(agency, None)
            if self._opened.pop(agency, None) is not None:
                log.info("circuit to %s closed", agency)

    def failed(self, agency: str, now: dt.datetime) -> None:
        """A push to ``agency`` failed: count it; open (or, half-open, reopen) the circuit at the limit."""
        with self._lock:
            count = self._count.get(agency, 0) + 1
            self._count[agency] = count
            if agency in self._opened or count >= self.failures:
                if agency not in self._opened:
                    log.warning("circuit to %s opened after %d consecutive failures", agency, count)
                self._opened[agency] = now


@dataclass(frozen=True)
class Claim:
    """An outbox row this deliverer holds until ``lease`` (also the token its update is fenced with)."""

    message_id: str
    share_id: str
    recipient: str
    attempts: int
    lease: dt.datetime


@dataclass(frozen=True)
class Outcome:
    """What one attempt did, and the row's state after it."""

    claim: Claim
    outcome: Literal["delivered", "push_failed", "dead_letter", "skipped"]
    status: str
    attempts: int
    error: ErrorKind | None
    next_attempt_at: dt.datetime
    delivered_at: dt.datetime | None
    entry: dict[str, Any]

    @property
    def delivered(self) -> bool:
        """Whether the recipient's system has the message now."""
        return self.outcome == "delivered"


class Deliverer:
    """Pushes due outbox rows; safe to run in every worker and replica at once (see the module)."""

    def __init__(
        self,
        rt: Runtime,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        rng: random.Random | None = None,
    ) -> None:
        s = rt.settings
        self.rt = rt
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 (jitter spreads retries; nothing secret)
        self.max_attempts = s.delivery_max_attempts
        self.base, self.cap = s.delivery_backoff_base, s.delivery_backoff_cap
        self.lease = dt.timedelta(seconds=s.delivery_lease)
        self.poll_interval = s.delivery_poll_interval
        self.breakers = CircuitBreakers(s.delivery_breaker_failures, s.delivery_breaker_cooldown)
        self.modes = delivery_modes(s)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def pushes(self, recipient: str) -> bool:
        """Whether messages to ``recipient`` go through the outbox: a connector, and not ``pull`` only."""
        return recipient in self.rt.connectors and self.modes.get(recipient, "both") != "pull"

    # -- the share's first attempt --------------------------------------------------------------------

    def first_lease(self, recipient: str) -> dt.datetime | None:
        """The lease a new outbox row to ``recipient`` is born with, so its share's request makes the
        first attempt; None (the row waits for the deliverer) while the agency's circuit is open."""
        now = self.clock()
        return now + self.lease if self.breakers.allows(recipient, now) else None

    def first_attempts(self, items: Sequence[tuple[Delivery, str, dt.datetime]]) -> dict[str, bool]:
        """Push each ``(delivery, share id, lease)`` once, now; audit all outcomes in one append.

        Returns whether each message was delivered. Never raises for a failed push or an unavailable
        audit log: the share is committed, the rows stay claimed until their lease ends and the
        deliverer tries again.
        """
        outcomes = [
            # Each entry in the span of its push, a child of the share's request.
            self._attempt(
                Claim(d.message_id, share_id, d.recipient, 0, lease), d, from_header(d.trace_parent)
            )
            for d, share_id, lease in items
        ]
        self._commit(outcomes)
        return {o.claim.message_id: o.delivered for o in outcomes}

    # -- the background passes ------------------------------------------------------------------------

    def run_once(self, limit: int = BATCH) -> int:
        """One pass: claim and push every due row (oldest first, up to ``limit``); the attempts made."""
        now = self.clock()
        query = (
            select(OutboxItem.message_id, OutboxItem.share_id, OutboxItem.recipient, OutboxItem.attempts)
            .where(
                OutboxItem.status == PENDING,
                OutboxItem.next_attempt_at <= now,
                or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now),
            )
            .order_by(OutboxItem.next_attempt_at)
            .limit(limit)
        )
        blocked = self.breakers.blocked(now)
        if blocked:
            query = query.where(OutboxItem.recipient.not_in(blocked))
        with self.rt.db.connect() as conn:
            due = conn.execute(query).all()
        made = 0
        for row in due:
            if not self.breakers.allows(row.recipient, self.clock()):
                continue  # opened during this pass: the row waits, untried and unclaimed
            claim = self.claim(row.message_id, row.share_id, row.recipient, row.attempts)
            if claim is None:
                continue  # another deliverer holds it
            outcome = self._attempt(claim, None, from_header(None))
            self._commit([outcome])
            made += 1
        return made

    def claim(self, message_id: str, share_id: str, recipient: str, attempts: int) -> Claim | None:
        """Take the row for this deliverer until now + lease; None when another holds it or it is done."""
        now = self.clock()
        lease = now + self.lease
        with self.rt.db.begin() as conn:
            taken = conn.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.message_id == message_id,
                    OutboxItem.status == PENDING,
                    or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now),
                )
                .values(claimed_until=lease)
            ).rowcount
        return Claim(message_id, share_id, recipient, attempts, lease) if taken == 1 else None

    def start(self) -> None:
        """Run passes in a daemon thread until `stop`: at once when woken, else every poll interval."""
        if self._thread is not None:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="outbox-deliverer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Make the running deliverer look at the outbox now."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the attempt in progress (its outcome is committed first)."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping:
            try:
                made = self.run_once()
            except Exception as e:  # a locked or lost database: the next pass tries again
                log.error("outbox pass failed: %s", type(e).__name__)
                made = 0
            if made == 0 and not self._stopping:
                self._wake.wait(self.poll_interval)
                self._wake.clear()

    # -- one attempt ------------------------------------------------------------------------------------

    def _attempt(self, claim: Claim, delivery: Delivery | None, trace: TraceContext) -> Outcome:
        """Push the claimed row's message once; the outcome, not yet committed."""
        meta, opened = self._message(claim, delivery, trace)
        attempt = claim.attempts + 1
        error: ErrorKind | None = None
        if opened == "acknowledged":
            # The recipient took it from its inbox first: nothing left to push.
            return self._outcome(claim, meta, trace, "skipped", claim.attempts, None, via="inbox")
        if isinstance(opened, str):
            error = opened  # erased before it could be pushed, or damaged: final, never retried
            return self._outcome(claim, meta, trace, "dead_letter", attempt, error)
        connector = self.rt.connectors.get(claim.recipient)
        if connector is None:
            error = "no_connector"
        else:
            try:
                receipt = connector.deliver(opened)
                error = None if receipt.accepted else "not_accepted"
            except ConnectorError as e:
                error = error_kind(e)
            except Exception as e:  # a connector bug must not stop the deliverer; the row is retried
                log.error("push of %s raised %s", claim.message_id, type(e).__name__)
                error = "error"
        now = self.clock()
        if error is None:
            self.breakers.succeeded(claim.recipient)
            return self._outcome(claim, meta, trace, "delivered", attempt, None)
        log.warning("push of %s to %s failed: %s", claim.message_id, claim.recipient, error)
        if error in _ANSWERED:
            self.breakers.succeeded(claim.recipient)  # it is up; it said no
        elif error != "no_connector":
            self.breakers.failed(claim.recipient, now)
        final = error == "rejected" or attempt >= self.max_attempts
        return self._outcome(claim, meta, trace, "dead_letter" if final else "push_failed", attempt, error)

    def _message(
        self, claim: Claim, delivery: Delivery | None, trace: TraceContext
    ) -> tuple[dict[str, str], Delivery | ErrorKind | Literal["acknowledged"]]:
        """What the entry names of the message, and its delivery (or why there is none to push)."""
        if delivery is not None:
            meta = {
                "case_id": delivery.case_id,
                "information_type": delivery.information_type,
                "purpose": delivery.purpose,
            }
            return meta, delivery
        traceparent = trace.traceparent
        with self.rt.db.connect() as conn:
            row = conn.execute(
                select(Message.case_id, Message.information_type, Message.purpose, Message.acked_at).where(
                    Message.message_id == claim.message_id
                )
            ).first()
            if row is None:
                return {}, "erased"
            meta = {"case_id": row.case_id, "information_type": row.information_type, "purpose": row.purpose}
            if row.acked_at is not None:
                return meta, "acknowledged"
            try:
                found = stored_delivery(self.rt, conn, claim.message_id, traceparent)
            except Unopenable:
                log.error("message %s cannot be opened for its push", claim.message_id)
                return meta, "unopenable"
        return meta, found if found is not None else "erased"

    def _outcome(
        self,
        claim: Claim,
        meta: dict[str, str],
        trace: TraceContext,
        outcome: Literal["delivered", "push_failed", "dead_letter", "skipped"],
        attempts: int,
        error: ErrorKind | None,
        *,
        via: str | None = None,
    ) -> Outcome:
        now = self.clock()
        refs = {"messageId": claim.message_id, "shareId": claim.share_id}
        if outcome != "skipped":
            refs["attempt"] = str(attempts)
        if error is not None:
            refs["error"] = error
        if via is not None:
            refs["via"] = via
        entry = make_entry(
            CallContext(principal=DELIVERER, trace=trace),
            type_="delivery",
            action="push",
            outcome=outcome,
            case_id=meta.get("case_id"),
            counterpart=claim.recipient,
            information_type=meta.get("information_type"),
            purpose=meta.get("purpose"),
            refs=refs,
        )
        status = {"delivered": DELIVERED, "skipped": DELIVERED, "dead_letter": DEAD_LETTER}.get(
            outcome, PENDING
        )
        wait = full_jitter(attempts, self.base, self.cap, self.rng) if outcome == "push_failed" else 0.0
        return Outcome(
            claim=claim,
            outcome=outcome,
            status=status,
            attempts=attempts,
            error=error,
            next_attempt_at=now + dt.timedelta(seconds=wait),
            delivered_at=now if status == DELIVERED else None,
            entry=entry,
        )

    def _commit(self, outcomes: Sequence[Outcome]) -> None:
        """The attempts' entries and their rows' new states, in one transaction.

        A row is updated only while this deliverer's lease on it holds (fenced by the lease's value): one
        whose lease ran out belongs to another deliverer now, but the attempt happened and stays logged.
        """
        if not outcomes:
            return

        def write(conn: Connection) -> None:
            for o in outcomes:
                done = conn.execute(
                    _SETTLE,
                    {
                        "b_message_id": o.claim.message_id,
                        "b_lease": o.claim.lease,
                        "b_status": o.status,
                        "b_attempts": o.attempts,
                        "b_next_attempt_at": o.next_attempt_at,
                        "b_last_error": o.error,
                        "b_delivered_at": o.delivered_at,
                    },
                ).rowcount
                if done != 1:
                    log.warning(
                        "lease on %s ran out during its push; another deliverer has it", o.claim.message_id
                    )
                if o.outcome == "delivered" and self.modes.get(o.claim.recipient, "both") == "push":
                    # A push-only agency never reads its inbox: its system taking the message (2xx) is its
                    # acknowledgement. The content is erased with the delivered entry, as an inbox ack
                    # erases it (the metadata stays, for basedOn and the trail). ``both`` keeps it listed
                    # in the inbox until acknowledged there, or until the retention term.
                    now = o.delivered_at or utcnow()
                    conn.execute(_ERASE_PUSHED, {"b_message_id": o.claim.message_id, "b_now": now})

        try:
            self.rt.audit_append([o.entry for o in outcomes], writes=write)
        except AuditUnavailable:
            # The rows stay claimed until their lease ends; then they are tried (and logged) again.
            log.error("the outcome of %d push attempts could not be logged", len(outcomes))
            return
        for o in outcomes:
            self.rt.metrics.deliveries.labels(o.outcome).inc()


# -- what the sender and the operator see -------------------------------------------------------------


def share_status(rt: Runtime, agency: str, share_id: str) -> dict[str, Any]:
    """``GET /v1/shares/{shareId}``: each recipient's delivery status; 404 unless ``agency`` sent it.

    A push recipient's status is its outbox row's, or ``delivered`` once it acknowledged the message in
    its inbox; a pull recipient's (no outbox row) is ``pending`` until it acknowledges, then
    ``delivered``; a refused recipient's is ``refused``.
    """
    with rt.sessions() as s:
        share = s.get(Share, share_id)
        if share is None or share.sender != agency:
            raise NotFound("no such share")
        ids = [r["messageId"] for r in share.recipients if r.get("messageId")]
        rows = {o.message_id: o for o in s.scalars(select(OutboxItem).where(OutboxItem.message_id.in_(ids)))}
        acked_query = select(Message.message_id, Message.acked_at).where(Message.message_id.in_(ids))
        acked: dict[str, dt.datetime | None] = {m: t for m, t in s.execute(acked_query)}
        recipients = []
        for r in share.recipients:
            item: dict[str, Any] = {"recipient": r["recipient"], "allowed": r["allowed"], "attempts": 0}
            message_id = r.get("messageId")
            if not r["allowed"] or not message_id:
                item["status"] = "refused"
                recipients.append(item)
                continue
            item["messageId"] = message_id
            if "identifies" in r:  # shares stored before the sender was told which identities went lack it
                item["identifies"] = r["identifies"]
            row, acked_at = rows.get(message_id), acked.get(message_id)
            if row is not None:
                item.update(attempts=row.attempts, status=row.status)
                if row.last_error:
                    item["lastError"] = row.last_error
                if row.delivered_at:
                    item["deliveredAt"] = row.delivered_at
            else:
                item["status"] = PENDING
            if acked_at is not None and item["status"] != DELIVERED:
                item.update(status=DELIVERED, deliveredAt=acked_at)
            recipients.append(item)
        return {
            "shareId": share.share_id,
            "caseId": share.case_id,
            "informationType": share.information_type,
            "purpose": share.purpose,
            "createdAt": share.created_at,
            "recipients": recipients,
        }


def outbox_rows(
    db: Engine,
    *,
    status: str | None = None,
    agency: str | None = None,
    message_id: str | None = None,
    limit: int = 1000,
) -> list[OutboxItem]:
    """Outbox rows, oldest first, filtered by status, recipient and message (``gateway outbox``)."""
    query = select(OutboxItem).order_by(OutboxItem.created_at, OutboxItem.message_id).limit(limit)
    if message_id is not None:
        query = query.where(OutboxItem.message_id == message_id)
    if status is not None:
        query = query.where(OutboxItem.status == status)
    if agency is not None:
        query = query.where(OutboxItem.recipient == agency)
    with Session(db) as s:
        rows = list(s.scalars(query))
        s.expunge_all()
    return rows


def requeue_entries(rows: Iterable[OutboxItem], trace: TraceContext | None = None) -> list[dict[str, Any]]:
    """The audit entries of an operator putting ``rows`` back to pending (``gateway outbox retry``)."""
    ctx = CallContext(principal=OPERATOR, trace=trace or from_header(None))
    return [
        make_entry(
            ctx,
            type_="delivery",
            action="outbox.retry",
            outcome="requeued",
            counterpart=r.recipient,
            refs={"messageId": r.message_id, "shareId": r.share_id, "previous": r.status},
        )
        for r in rows
    ]


def requeue_writes(rows: Sequence[OutboxItem], now: dt.datetime) -> Callable[[Connection], None]:
    """The writes that put ``rows`` back to pending with fresh attempts, each only if still as listed."""

    def write(conn: Connection) -> None:
        for r in rows:
            changed = conn.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.message_id == r.message_id,
                    OutboxItem.status == r.status,
                    # Never from under a deliverer that is pushing it now: that could send it twice at once.
                    or_(OutboxItem.claimed_until.is_(None), OutboxItem.claimed_until < now),
                )
                .values(status=PENDING, attempts=0, next_attempt_at=now, claimed_until=None)
            ).rowcount
            if changed != 1:
                raise RuntimeError(f"outbox row {r.message_id} changed while it was requeued; try again")

    return write
