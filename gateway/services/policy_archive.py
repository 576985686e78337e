"""The policy archive and the recorded decision inputs (issue 11 items 2 and 4).

Every revision the gateway activates is kept in ``policy_revisions``, content-addressed by its revision
(the SHA-256 `gateway.policy.policy_revision` computes over the files), from the same bytes that were
compiled: `archive_revision` at start and on every reload, on every replica, insert-if-absent. Every
decision's input is kept in ``decision_inputs`` under ``sha256:<hex>`` of its RFC 8785 canonical JSON,
and the audit entry that carries the decision names that digest (``decision.inputDigest``): the
`Runtime` remembers each input as it decides (`PendingInputs`) and `Runtime.audit_append` writes the
inputs its entries name in the entries' own transaction (`write_inputs`), so no entry names an input
that is not stored. An input holds identifiers, roles and field names only (`policy_input`); one that
holds anything that could be a BSN or payload text is not recorded (`withheld_reason`).

`load_revision` rebuilds an archived revision in memory, `engine_for_source` makes the engine a replay
decides with (`gateway audit explain`, `gateway policy impact`), and `recorded_decisions` gives the newest
decisions with their inputs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from audit import InvalidEntry, canonical_json, metadata
from gateway.db import utcnow
from gateway.errors import PolicyLoadFailed
from gateway.models import DecisionInput, PolicyRevision

if TYPE_CHECKING:
    from gateway.policy import EmbeddedEngine, PolicySource

__all__ = [
    "ArchivedRevision",
    "EngineCache",
    "InputMissing",
    "PendingInput",
    "PendingInputs",
    "RecordedDecision",
    "RevisionNotArchived",
    "RevisionTampered",
    "active_revision",
    "archive_revision",
    "engine_for_source",
    "input_digest",
    "list_revisions",
    "load_input",
    "load_revision",
    "pending_input",
    "recipient_of",
    "recorded_decisions",
    "revision_files",
    "store_revision",
    "withheld_reason",
    "write_inputs",
]

ARCHIVE_DIRECTORY = Path("policy_revisions")
"""The `PolicySource.directory` of a revision rebuilt from the archive (it names no real directory)."""

MAX_TEXT = 128
"""The longest string a recorded input may hold: identifiers and field names are short, text is not."""

_DIGITS = re.compile(rb"[0-9]{8,}")
"""A run of eight or more digits: could be a BSN (nine digits, or eight with a leading zero dropped)."""

_LONG = re.compile(rb'[^"]{%d,}' % (MAX_TEXT + 1))
"""More than `MAX_TEXT` bytes between two quotes of canonical JSON without escapes: a long string (or a
long run of numbers, which is withheld too)."""

_SCAN_BATCH = 500
"""Audit entries read per query while looking for recorded decisions, newest first."""


class RevisionNotArchived(PolicyLoadFailed):
    """The revision is not in ``policy_revisions``."""

    title = "Policy revision not archived"


class RevisionTampered(PolicyLoadFailed):
    """The archived files of a revision no longer hash to that revision: the row was changed."""

    title = "Archived policy revision altered"


# -- the revisions --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchivedRevision:
    """One archived revision, as ``GET /v1/policies`` lists it."""

    revision: str
    created_at: dt.datetime
    activated_at: dt.datetime | None

    def to_json(self, active: str | None = None) -> dict[str, Any]:
        """``{revision, createdAt, activatedAt, active}``; ``active`` is the revision that serves."""
        return {
            "revision": self.revision,
            "createdAt": _iso(self.created_at),
            "activatedAt": _iso(self.activated_at),
            "active": self.revision == active,
        }


def revision_files(source: PolicySource) -> str:
    """The canonical JSON ``{relative path: text}`` of ``source``'s files (the ``files`` column)."""
    from gateway.policy._source import texts_revision

    if set(source.texts) != set(source.files) or texts_revision(source.texts) != source.revision:
        # Only a source read by read_policy/source_from_bytes carries its exact texts.
        raise ValueError(f"the source of {source.revision} does not carry the texts it was hashed from")
    return canonical_json(source.texts).decode("utf-8")


def archive_revision(db: Engine, source: PolicySource, *, activated: bool = True) -> bool:
    """Keep ``source`` in the archive (insert if absent, from any replica); True when this call stored it.

    ``activated``: the revision serves from now on, so its ``activatedAt`` becomes now (the archive's
    newest activation is the `active_revision`).
    """
    with db.begin() as conn:
        return store_revision(conn, source, activated=activated)


def store_revision(conn: Connection, source: PolicySource, *, activated: bool = True) -> bool:
    """`archive_revision` in the caller's transaction (a reload's, with its audit entry)."""
    files = revision_files(source)
    now = utcnow()
    row = {
        "revision": source.revision,
        "files": files,
        "created_at": now,
        "activated_at": now if activated else None,
    }
    stored = _insert_if_absent(conn, PolicyRevision.__table__, "revision", [row]) > 0
    if not stored and activated:
        conn.execute(
            update(PolicyRevision).where(PolicyRevision.revision == source.revision).values(activated_at=now)
        )
    return stored


def load_revision(db: Engine, revision: str, *, verify: bool = True) -> PolicySource:
    """The archived ``revision``, rebuilt in memory; `RevisionNotArchived` when it is not there.

    ``verify``: refuse (`RevisionTampered`) files that no longer hash to ``revision``. Without it the
    altered files are returned, with their own revision (an explanation reports the alteration).
    """
    from gateway.policy._source import source_from_bytes

    with db.connect() as conn:
        text = conn.scalar(select(PolicyRevision.files).where(PolicyRevision.revision == revision))
    if text is None:
        raise RevisionNotArchived(
            f"revision {revision} is not archived", errors=[{"field": "revision", "message": "not archived"}]
        )
    files = json.loads(text)
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise RevisionTampered(
            f"the archived files of {revision} are not a JSON object of texts",
            errors=[{"field": "files", "message": "not {path: text}"}],
        )
    source = source_from_bytes(ARCHIVE_DIRECTORY, [(str(k), v.encode("utf-8")) for k, v in files.items()])
    if verify and source.revision != revision:
        raise RevisionTampered(
            f"the archived files of {revision} hash to {source.revision}",
            errors=[{"field": "files", "message": f"hash to {source.revision}"}],
        )
    return source


def list_revisions(db: Engine) -> list[ArchivedRevision]:
    """Every archived revision, the newest activation (else creation) first."""
    with db.connect() as conn:
        rows = conn.execute(
            select(PolicyRevision.revision, PolicyRevision.created_at, PolicyRevision.activated_at)
        ).all()
    found = [ArchivedRevision(str(r), c, a) for r, c, a in rows]
    return sorted(found, key=lambda r: (r.activated_at or r.created_at, r.created_at), reverse=True)


def active_revision(db: Engine) -> str:
    """The revision activated last (on any replica); `RevisionNotArchived` when none is archived."""
    revisions = list_revisions(db)
    activated = [r for r in revisions if r.activated_at is not None]
    if not activated:
        raise RevisionNotArchived(
            "no policy revision is archived yet", errors=[{"field": "revision", "message": "none archived"}]
        )
    return activated[0].revision


def engine_for_source(source: PolicySource) -> EmbeddedEngine:
    """An embedded engine of ``source`` for a replay: in the calling thread, one interpreter, no worker
    processes (the revision was compiled and tested when it was activated). ``close`` it when done."""
    from gateway.policy import EmbeddedEngine

    return EmbeddedEngine(source, pool_size=1, timeout=None)


class EngineCache:
    """Engines of archived revisions by revision, the ``size`` most recently used kept (thread-safe)."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._engines: OrderedDict[str, EmbeddedEngine] = OrderedDict()
        self._lock = threading.Lock()

    def engine(self, source: PolicySource) -> EmbeddedEngine:
        """The engine of ``source`` (keyed by its revision), compiled on first use."""
        with self._lock:
            found = self._engines.get(source.revision)
            if found is not None:
                self._engines.move_to_end(source.revision)
                return found
        built = engine_for_source(source)
        with self._lock:
            found = self._engines.get(source.revision)
            if found is not None:
                built.close()
                return found
            self._engines[source.revision] = built
            while len(self._engines) > self._size:
                _, old = self._engines.popitem(last=False)
                old.close()
            return built

    def close(self) -> None:
        """Close every engine."""
        with self._lock:
            engines, self._engines = list(self._engines.values()), OrderedDict()
        for e in engines:
            e.close()


# -- the inputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingInput:
    """A decision's input, canonical, waiting for the entry that carries the decision."""

    digest: str
    text: str
    action: str


def input_digest(policy_input: Mapping[str, Any]) -> str:
    """``sha256:<hex>`` of the RFC 8785 canonical JSON of ``policy_input``."""
    return "sha256:" + hashlib.sha256(canonical_json(policy_input)).hexdigest()


def withheld_reason(policy_input: Any) -> str | None:
    """Why ``policy_input`` must not be stored, else None.

    A policy input holds identifiers, roles and field names: short strings without a run of eight or
    more digits. Anything else (a number or text that could be a BSN, a string longer than `MAX_TEXT`
    that could be payload content, a value JSON cannot carry exactly) keeps the whole input out.
    """
    return _withheld(policy_input)[0]


def _withheld(policy_input: Any) -> tuple[str | None, bytes]:
    """`withheld_reason` and the canonical JSON it checked (one pass of two regular expressions)."""
    try:
        text = canonical_json(policy_input)
    except InvalidEntry:
        return "not plain JSON", b""
    if _DIGITS.search(text):
        return "a run of eight or more digits", text
    if b"\\" in text:  # an escape: a quote, a control character or a backslash, in no identifier
        return "an escaped character", text
    if _LONG.search(text):
        return f"a string longer than {MAX_TEXT} characters", text
    return None, text


def pending_input(policy_input: Mapping[str, Any]) -> PendingInput | None:
    """The input as it will be stored, or None when `withheld_reason` keeps it out."""
    reason, text = _withheld(policy_input)
    if reason is not None:
        return None
    action = policy_input.get("action")
    return PendingInput(
        "sha256:" + hashlib.sha256(text).hexdigest(),
        text.decode("utf-8"),
        action if isinstance(action, str) else "",
    )


class PendingInputs:
    """The inputs decided on and not yet written, by digest (the ``size`` newest; thread-safe).

    A decision that no entry carries (a visibility check that passed, a what-if) simply ages out. The
    digests this process committed are remembered too (the ``size`` newest): ``decision_inputs`` rows are
    never updated or deleted, so an input stored once needs neither its insert nor the check that it is
    there again, which most decisions are (the same shares recur).
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._inputs: OrderedDict[str, PendingInput] = OrderedDict()
        self._stored: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, item: PendingInput) -> None:
        """Keep ``item`` until an entry that names it is written (unless it is stored already)."""
        with self._lock:
            if item.digest in self._stored:
                self._stored.move_to_end(item.digest)
                return
            self._inputs[item.digest] = item
            self._inputs.move_to_end(item.digest)
            while len(self._inputs) > self._size:
                self._inputs.popitem(last=False)

    def take(self, digests: Iterable[str]) -> tuple[list[PendingInput], list[str]]:
        """The pending inputs of ``digests`` and the digests neither pending nor known to be stored
        (written by another process, or aged out); those this process stored are in neither."""
        found: list[PendingInput] = []
        missing: list[str] = []
        with self._lock:
            for digest in dict.fromkeys(digests):
                if digest in self._stored:
                    continue
                item = self._inputs.get(digest)
                if item is None:
                    missing.append(digest)
                else:
                    found.append(item)
        return found, missing

    def written(self, digests: Iterable[str]) -> None:
        """Forget ``digests`` as pending: their rows are committed (remembered as stored from now on)."""
        with self._lock:
            for digest in digests:
                self._inputs.pop(digest, None)
                self._stored[digest] = None
                self._stored.move_to_end(digest)
            while len(self._stored) > self._size:
                self._stored.popitem(last=False)

    def __len__(self) -> int:
        with self._lock:
            return len(self._inputs)


def entry_digests(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``decision.inputDigest`` of each of ``entries`` that has one."""
    found = []
    for entry in entries:
        decision = entry.get("decision")
        if isinstance(decision, Mapping):
            digest = decision.get("inputDigest")
            if isinstance(digest, str):
                found.append(digest)
    return found


class InputMissing(LookupError):
    """An entry names an input that is neither pending nor stored: the entry is not written."""


def write_inputs(conn: Connection, pending: Sequence[PendingInput], missing: Sequence[str] = ()) -> None:
    """Insert ``pending`` (insert if absent) in the caller's transaction; `InputMissing` when one of
    ``missing`` has no row either (then the whole transaction, entries included, rolls back)."""
    if pending:
        now = utcnow()
        rows = [{"digest": p.digest, "input": p.text, "action": p.action, "created_at": now} for p in pending]
        _insert_if_absent(conn, DecisionInput.__table__, "digest", rows)
    if missing:
        stored = set(conn.scalars(select(DecisionInput.digest).where(DecisionInput.digest.in_(missing))))
        absent = [d for d in missing if d not in stored]
        if absent:
            raise InputMissing(f"{len(absent)} decision input(s) neither pending nor stored")


def load_input(db: Engine, digest: str) -> dict[str, Any] | None:
    """The input stored under ``digest``, or None."""
    with db.connect() as conn:
        text = conn.scalar(select(DecisionInput.input).where(DecisionInput.digest == digest))
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


def _load_inputs(conn: Connection, digests: Iterable[str]) -> dict[str, dict[str, Any]]:
    wanted = list(dict.fromkeys(digests))
    found: dict[str, dict[str, Any]] = {}
    for i in range(0, len(wanted), 500):
        rows = conn.execute(
            select(DecisionInput.digest, DecisionInput.input).where(
                DecisionInput.digest.in_(wanted[i : i + 500])
            )
        )
        for digest, text in rows:
            value = json.loads(text)
            if isinstance(value, dict):
                found[str(digest)] = value
    return found


# -- the recorded decisions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedDecision:
    """A decision as the audit log recorded it, with the input it was made on."""

    index: int
    time: str
    revision: str
    input_digest: str
    input: dict[str, Any]
    decision: dict[str, Any]
    """The entry's decision block (allowed, reasons, legalBasis, policyRevision, inputDigest)."""
    recipient: str | None = None
    """Whose decision the block is: a share's recipient (the entry's counterpart), a request's requester;
    None for a case action."""


def recorded_decisions(
    db: Any, *, last: int | None = None, since: dt.datetime | None = None
) -> list[RecordedDecision]:
    """The recorded decisions, newest first: the newest ``last`` (all when None) of those since ``since``
    (all when None). ``db`` is an `Engine` or anything with ``.db`` (a `Runtime`).

    A decision logged twice (a request's decision and its answer carry the same block) counts once, at
    its first entry; an entry whose input is not stored is left out.
    """
    engine: Engine = db if isinstance(db, Engine) else db.db
    table = metadata.tables["audit_entries"]
    found: list[RecordedDecision] = []
    seen: dict[tuple[Any, ...], int] = {}
    with engine.connect() as conn:
        below: int | None = None
        while last is None or len(found) < last:
            query = select(table.c.idx, table.c.leaf_data).order_by(table.c.idx.desc()).limit(_SCAN_BATCH)
            if below is not None:
                query = query.where(table.c.idx < below)
            if since is not None:
                query = query.where(table.c.entry_time >= since)
            batch = conn.execute(query).all()
            if not batch:
                break
            below = int(batch[-1].idx)
            candidates: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
            for index, leaf in batch:
                entry = _entry(leaf)
                block = entry.get("decision") if entry is not None else None
                if (
                    entry is not None
                    and isinstance(block, dict)
                    and isinstance(block.get("inputDigest"), str)
                ):
                    candidates.append((int(index), entry, block))
            inputs = _load_inputs(conn, (b["inputDigest"] for _, _, b in candidates))
            for index, entry, block in candidates:
                policy_input = inputs.get(block["inputDigest"])
                if policy_input is None:
                    continue
                record = RecordedDecision(
                    index=index,
                    time=str(entry.get("time", "")),
                    revision=str(block.get("policyRevision", "")),
                    input_digest=block["inputDigest"],
                    input=policy_input,
                    decision=block,
                    recipient=recipient_of(entry, policy_input),
                )
                key = (entry.get("traceId"), entry.get("spanId"), record.input_digest, record.recipient)
                if key in seen:  # newest first: this one is the earlier entry of the same decision
                    found[seen[key]] = record
                    continue
                if last is not None and len(found) >= last:
                    break
                seen[key] = len(found)
                found.append(record)
    return found


def recipient_of(entry: Mapping[str, Any], policy_input: Mapping[str, Any]) -> str | None:
    """Whose decision an entry's block is (`decision_record`'s ``recipient``): a share's recipient (the
    entry's counterpart), a request's requester; None for a case action (the decision as a whole)."""
    action = policy_input.get("action")
    if action == "share":
        counterpart = entry.get("counterpart")
        return counterpart if isinstance(counterpart, str) else None
    if action == "request":
        actor = policy_input.get("actor")
        agency = actor.get("agency") if isinstance(actor, Mapping) else None
        return agency if isinstance(agency, str) else None
    return None


def _entry(leaf: Any) -> dict[str, Any] | None:
    try:
        value = json.loads(bytes(leaf))
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


# -- shared ---------------------------------------------------------------------------------------------


def _insert_if_absent(conn: Connection, table: Any, key: str, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows``, skipping those whose ``key`` exists (also when a concurrent writer inserts it
    first); returns how many were inserted."""
    dialect = conn.dialect.name
    if dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        make = sqlite.insert if dialect == "sqlite" else postgresql.insert
        statement = make(table).on_conflict_do_nothing(index_elements=[key]).returning(table.c[key])
        # RETURNING counts what was inserted (an executemany's rowcount does not, on psycopg).
        return len(conn.execute(statement, rows).all())
    inserted = 0
    for row in rows:
        exists = conn.scalar(select(table.c[key]).where(table.c[key] == row[key]))
        if exists is not None:
            continue
        try:
            with conn.begin_nested():
                conn.execute(insert(table), [row])
            inserted += 1
        except IntegrityError:
            continue
    return inserted


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
