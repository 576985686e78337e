"""Witnessing the log: each serve process submits new checkpoints to the agencies' witnesses, keeps the
cosignatures they answer (``audit_cosignatures``) and serves them as extra signature lines.

The protocol is C2SP tlog-witness ``add-checkpoint``: the log sends the checkpoint with a consistency
proof from the size the witness holds (the largest it cosigned for us, else 0). A 409 says which size
that is; the log then resends once from there (resync). Every cosignature is verified against the
witness's configured key before it is kept. With several replicas every process submits: the witness
serialises them (its 409s), and the unique (checkpoint, witness) row keeps one cosignature each.

A witness that holds a larger tree than the log has, or refuses a checkpoint as not extending the one
it holds, is an alarm (logged as an error, counted in ``gateway_witness_submissions``): the log was
rolled back or forked, or the witness has been given another log's history.

A checkpoint is *witnessed* when cosignatures by at least ``GATEWAY_WITNESS_QUORUM`` different
configured witnesses verify (tlog-policy's ``group witnesses Q w1 w2 w3``).
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx
from prometheus_client import Counter
from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite

from audit import (
    AddCheckpoint,
    AuditError,
    Checkpoint,
    CosignatureVerifier,
    InvalidNote,
    MalformedRequest,
    SqlAuditStore,
    parse_checkpoint,
    parse_cosignature_key,
    parse_signature_lines,
    parse_size_answer,
    split_note,
)
from audit._internal.schema import cosignatures
from audit._internal.store import as_bytes, raw

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from gateway.settings import Settings, WitnessSpec

log = logging.getLogger("gateway.witnessing")

OutcomeKind = Literal["cosigned", "held", "refused", "alarm", "unreachable"]


@dataclass(frozen=True)
class Witness:
    """A configured witness: its name, add-checkpoint URL and pinned cosignature key."""

    name: str
    url: str
    verifier: CosignatureVerifier

    @classmethod
    def from_spec(cls, spec: WitnessSpec) -> Witness:
        """From a ``GATEWAY_WITNESSES`` entry (already checked by the settings)."""
        return cls(spec.name, spec.url.rstrip("/"), parse_cosignature_key(spec.vkey))


def configured(settings: Settings) -> list[Witness]:
    """The witnesses the settings name."""
    return [Witness.from_spec(s) for s in settings.witnesses]


# -- what is kept ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CosignatureView:
    """A kept cosignature of one checkpoint, checked again now against the configured key."""

    witness: str
    time: int
    valid: bool
    line: str

    def to_json(self) -> dict[str, Any]:
        """As the API shows it (the time in ISO 8601, UTC)."""
        when = dt.datetime.fromtimestamp(self.time, dt.UTC) if 0 < self.time < 1 << 40 else None
        shown = when.isoformat().replace("+00:00", "Z") if when else None
        return {"witness": self.witness, "time": shown, "valid": self.valid}


def kept_cosignatures(engine: Engine, witnesses: Sequence[Witness], cp: Checkpoint) -> list[CosignatureView]:
    """The cosignatures kept for checkpoint ``cp``, each verified again; by witness name.

    A row of a witness no longer configured, or whose line does not verify (garbage written into the
    table), is listed as not valid; it never counts and is never served.
    """
    body = cp.body()
    by_name = {w.name: w for w in witnesses}
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                raw(cosignatures.c.witness).label("witness"),
                raw(cosignatures.c.signature_line).label("line"),
                raw(cosignatures.c.cosigned_at).label("cosigned_at"),
            )
            .where(cosignatures.c.tree_size == cp.size, cosignatures.c.root_hash == cp.root)
            .order_by(cosignatures.c.witness, cosignatures.c.id)
        ).all()
    views: list[CosignatureView] = []
    for row in rows:
        if not isinstance(row.witness, str) or not isinstance(row.line, str):
            continue
        when = row.cosigned_at if isinstance(row.cosigned_at, int) else 0
        valid = False
        w = by_name.get(row.witness)
        if w is not None:
            try:
                cosig = w.verifier.check(body, row.line)
            except InvalidNote:
                cosig = None
            valid = cosig is not None and cosig.time == when
        views.append(CosignatureView(row.witness, when, valid, row.line))
    return views


def cosigned_note(engine: Engine, witnesses: Sequence[Witness], note: str) -> str:
    """``note`` (the log's signed checkpoint) with the valid kept cosignatures as extra signature lines."""
    if not witnesses:
        return note  # nobody to ask for: no query on every GET of a log without witnesses
    text, _ = split_note(note)
    cp = parse_checkpoint(text)
    lines = [v.line for v in kept_cosignatures(engine, witnesses, cp) if v.valid]
    return note + "".join(line + "\n" for line in lines)


def is_witnessed(views: Sequence[CosignatureView], quorum: int) -> bool:
    """Whether valid cosignatures by at least ``quorum`` different witnesses are among ``views``."""
    return quorum > 0 and len({v.witness for v in views if v.valid}) >= quorum


def latest_witnessed(
    engine: Engine, witnesses: Sequence[Witness], quorum: int, origin: str, *, look_back: int = 50
) -> Checkpoint | None:
    """The largest checkpoint (of the last ``look_back`` cosigned) that the quorum cosigned, or None."""
    if quorum <= 0 or not witnesses:
        return None
    with engine.connect() as conn:
        candidates = conn.execute(
            select(raw(cosignatures.c.tree_size).label("size"), raw(cosignatures.c.root_hash).label("root"))
            .where(cosignatures.c.witness.in_([w.name for w in witnesses]))
            .group_by(cosignatures.c.tree_size, cosignatures.c.root_hash)
            .having(func.count(func.distinct(cosignatures.c.witness)) >= quorum)
            .order_by(cosignatures.c.tree_size.desc())
            .limit(look_back)
        ).all()
    for row in candidates:
        root = as_bytes(row.root)
        if not isinstance(row.size, int) or root is None or len(root) != 32:
            continue
        cp = Checkpoint(origin, row.size, root)
        if is_witnessed(kept_cosignatures(engine, witnesses, cp), quorum):
            return cp
    return None


@dataclass(frozen=True)
class WitnessStatus:
    """A checkpoint's cosignatures and whether the quorum holds (``GET /v1/audit/checkpoint/witnesses``)."""

    checkpoint: Checkpoint
    cosignatures: list[CosignatureView]
    quorum: int
    witnesses: list[str]
    latest_witnessed: Checkpoint | None

    @property
    def witnessed(self) -> bool:
        """Whether this checkpoint is witnessed by the quorum."""
        return is_witnessed(self.cosignatures, self.quorum)

    def to_json(self) -> dict[str, Any]:
        """As the API shows it."""
        latest = self.latest_witnessed
        return {
            "size": self.checkpoint.size,
            "rootHash": base64.b64encode(self.checkpoint.root).decode(),
            "cosignatures": [c.to_json() for c in self.cosignatures],
            "quorum": self.quorum,
            "witnessed": self.witnessed,
            "witnesses": self.witnesses,
            "latestWitnessed": (
                {"size": latest.size, "rootHash": base64.b64encode(latest.root).decode()} if latest else None
            ),
        }


def witness_status(rt: Runtime, cp: Checkpoint) -> WitnessStatus:
    """The witnessing of ``cp`` by the runtime's configured witnesses."""
    witnesses = configured(rt.settings)
    quorum = rt.settings.quorum
    return WitnessStatus(
        cp,
        kept_cosignatures(rt.db, witnesses, cp),
        quorum,
        [w.name for w in witnesses],
        latest_witnessed(rt.db, witnesses, quorum, cp.origin),
    )


# -- submitting -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one witness made of one checkpoint this round."""

    witness: str
    kind: OutcomeKind
    size: int
    detail: str = ""


class _Refused(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text[:200]}")
        self.status = status


@dataclass
class Submitter:
    """Submits the log's newest checkpoint to each witness (``submit_round``); thread-safe per round."""

    store: SqlAuditStore
    witnesses: Sequence[Witness]
    timeout: float = 5.0
    counter: Counter | None = None
    _known: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _last: dict[str, OutcomeKind] = field(default_factory=dict, init=False, repr=False)
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(timeout=self.timeout, follow_redirects=False)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def submit_round(self) -> list[Outcome]:
        """Sign a checkpoint if the log grew, then submit it to every witness at once (one thread each)."""
        note = self.store.checkpoint()
        if not self.witnesses:
            return []
        with ThreadPoolExecutor(
            max_workers=min(8, len(self.witnesses)), thread_name_prefix="witness"
        ) as pool:
            outcomes = list(pool.map(lambda w: self._submit_safely(w, note), self.witnesses))
        for o in outcomes:
            if self.counter is not None:
                self.counter.labels(o.witness, o.kind).inc()
            if o.kind == "alarm":
                log.error("witness %s: %s", o.witness, o.detail)
            elif o.kind in ("refused", "unreachable"):
                # Said once when it starts, not every round while a witness stays down.
                level = logging.WARNING if self._last.get(o.witness) != o.kind else logging.DEBUG
                log.log(level, "witness %s %s: %s", o.witness, o.kind, o.detail)
            elif self._last.get(o.witness) in ("refused", "unreachable"):
                log.warning("witness %s %s again", o.witness, o.kind)
            self._last[o.witness] = o.kind
        return outcomes

    def _submit_safely(self, w: Witness, note: str) -> Outcome:
        try:
            return self.submit(w, note)
        except httpx.HTTPError as e:
            return Outcome(w.name, "unreachable", 0, f"{type(e).__name__} at {w.url}")
        except (AuditError, MalformedRequest) as e:
            return Outcome(w.name, "refused", 0, e.reason)
        except Exception as e:  # a database fault: the next round tries again
            return Outcome(w.name, "unreachable", 0, f"{type(e).__name__} (not submitted)")

    def submit(self, w: Witness, note: str) -> Outcome:
        """Submit ``note`` to ``w`` from the size it holds (resent once after a 409); keep its cosignature."""
        cp = parse_checkpoint(split_note(note)[0])
        if self._has(w, cp):
            self._known[w.name] = max(self._known.get(w.name, 0), cp.size)
            return Outcome(w.name, "held", cp.size, "cosigned already")
        old = self._known.get(w.name)
        if old is None:
            old = self._largest_cosigned(w)
        resynced = ""
        for _ in range(2):  # the first try, and one resend from the size a 409 names
            status, body, media = self._post(w, old, note, cp)
            if status != 409:
                break
            held = parse_size_answer(media, body)
            if held == old:  # 409 although old is its size: it holds another root for this size
                return Outcome(w.name, "alarm", cp.size, f"holds another root for size {held}: forked?")
            self._known[w.name] = held
            if held > cp.size:
                if held > self.store.size():
                    # Sent once more as following its size, so that the witness keeps it as evidence.
                    self._post(w, held, note, cp)
                    detail = f"holds {held} entries, more than the log's {self.store.size()}: rolled back?"
                    return Outcome(w.name, "alarm", cp.size, detail)
                note = self.store.checkpoint()  # another replica's newer checkpoint got there first
                cp = parse_checkpoint(split_note(note)[0])
                if self._has(w, cp):
                    return Outcome(w.name, "held", cp.size, "cosigned already")
            old = held
            resynced = f"resent after a 409: it held {held}"
        else:
            return Outcome(w.name, "refused", cp.size, "it moved on meanwhile (another replica): next round")
        if status == 422:
            return Outcome(
                w.name, "alarm", cp.size, f"the checkpoint does not extend the {old} it holds (422): forked?"
            )
        if status != 200:
            return Outcome(
                w.name, "refused", cp.size, f"answered {status}: {body[:200].decode(errors='replace')}"
            )
        return self._keep(w, cp, body, resynced)

    def _post(self, w: Witness, old: int, note: str, cp: Checkpoint) -> tuple[int, bytes, str | None]:
        proof = self.store.consistency_proof(old, cp.size) if 0 < old < cp.size else []
        body = AddCheckpoint(old, tuple(proof), note).encode()
        response = self._http.post(f"{w.url}/add-checkpoint", content=body)
        return response.status_code, response.content, response.headers.get("content-type")

    def _keep(self, w: Witness, cp: Checkpoint, body: bytes, detail: str = "") -> Outcome:
        try:
            lines = parse_signature_lines(body.decode("utf-8"))
        except (UnicodeDecodeError, MalformedRequest) as e:
            return Outcome(w.name, "refused", cp.size, f"its answer is no cosignature: {e}")
        text = cp.body()
        for line in lines:
            try:
                cosig = w.verifier.check(text, line)
            except InvalidNote as e:
                return Outcome(w.name, "refused", cp.size, f"its cosignature does not verify: {e.reason}")
            if cosig is None:
                continue  # another key's line (a witness may sign with several): ignored
            self._insert(w, cp, cosig.line, cosig.time)
            self._known[w.name] = cp.size
            return Outcome(w.name, "cosigned", cp.size, detail)
        return Outcome(w.name, "refused", cp.size, "no line by its configured key")

    def _insert(self, w: Witness, cp: Checkpoint, line: str, when: int) -> None:
        values = {
            "tree_size": cp.size,
            "root_hash": cp.root,
            "witness": w.name,
            "signature_line": line,
            "cosigned_at": when,
            "received_at": dt.datetime.now(dt.UTC),
        }
        engine = self.store.engine
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        # Another replica may have kept this witness's cosignature of the checkpoint first: one is enough.
        statement = dialect.insert(cosignatures).values(**values).on_conflict_do_nothing()
        with engine.begin() as conn:
            conn.execute(statement)

    def _has(self, w: Witness, cp: Checkpoint) -> bool:
        with self.store.engine.connect() as conn:
            found = conn.execute(
                select(cosignatures.c.id).where(
                    cosignatures.c.tree_size == cp.size,
                    cosignatures.c.root_hash == cp.root,
                    cosignatures.c.witness == w.name,
                )
            ).first()
        return found is not None

    def _largest_cosigned(self, w: Witness) -> int:
        with self.store.engine.connect() as conn:
            size = conn.execute(
                select(func.max(cosignatures.c.tree_size)).where(cosignatures.c.witness == w.name)
            ).scalar()
        return size if isinstance(size, int) else 0


class Witnessing:
    """Runs ``Submitter.submit_round`` every ``GATEWAY_WITNESS_INTERVAL`` seconds in a daemon thread."""

    def __init__(self, rt: Runtime) -> None:
        self.interval = rt.settings.witness_interval
        counter = Counter(
            "gateway_witness_submissions",
            "Checkpoint submissions to witnesses by outcome (cosigned, held, refused, alarm, unreachable)",
            ["witness", "outcome"],
            registry=rt.metrics.registry,
        )
        self.submitter = Submitter(rt.audit, configured(rt.settings), rt.settings.witness_timeout, counter)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start submitting (the first round soon, at a random moment, so replicas spread)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="witnessing", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Submit now rather than at the end of the interval."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the round in progress; close the connections."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.submitter.close()

    def _run(self) -> None:
        wait = random.uniform(0, min(self.interval, 2.0))  # noqa: S311 - spreading, not secrecy
        while not self._stop.is_set():
            self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.submitter.submit_round()
            except Exception as e:  # the log or its database is down: the next round tries again
                log.error("witnessing round failed: %s", type(e).__name__)
            wait = self.interval


def checkpoint_of(note: str) -> Checkpoint:
    """The checkpoint in a signed note (structure only; the caller knows who signed it)."""
    return parse_checkpoint(split_note(note)[0])


__all__ = [
    "CosignatureView",
    "Outcome",
    "Submitter",
    "Witness",
    "WitnessStatus",
    "Witnessing",
    "checkpoint_of",
    "configured",
    "cosigned_note",
    "is_witnessed",
    "kept_cosignatures",
    "latest_witnessed",
    "witness_status",
]
