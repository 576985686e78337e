"""The audit log on SQLAlchemy: one linear log, durable appends with group commit, proofs, search."""

from __future__ import annotations

import _thread
import base64
import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import (
    Connection,
    Engine,
    Select,
    Table,
    exists,
    func,
    insert,
    intersect,
    literal_column,
    select,
    text,
    type_coerce,
    union_all,
)
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import NullType, TypeEngine

from audit._internal import schema as _schema
from audit._internal.canonical import fast_canonical_json, reference_canonical_json
from audit._internal.columns import ENTRY_COLUMNS, extract_rows, parse_time
from audit._internal.errors import (
    AuditWriteError,
    EntryNotFound,
    InvalidEntry,
    InvalidNote,
    InvalidProof,
    LogCorrupted,
)
from audit._internal.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    NodeKey,
    NodeReader,
    consistency_ranges,
    frontier_nodes,
    hashes_for_ranges,
    inclusion_ranges,
    leaf_hash,
    verify_consistency,
)
from audit._internal.note import Checkpoint, LogSigner, NoteVerifier, parse_verifier_key, verify_checkpoint
from audit._internal.schema import checkpoints, entries, entry_agencies, entry_subjects, nodes, subject_runs

log = logging.getLogger(__name__)

MAX_PAGE = 1000
"""The largest page ``search`` returns."""

_CHECKPOINT_EVERY = 256
"""SQLite: checkpoint the WAL after this many entries (some 6 pages an entry at batches of 32: about
1,600 pages, against the 1,000 of SQLite's own autocheckpoint)."""
_WAL_RESET_FRAMES = 8192
"""SQLite: a WAL this long (32 MiB of 4 KiB pages) is checkpointed by the leader before it hands over the
lead, so that the WAL can start over (``_checkpoint_wal``)."""
_MAX_GATHER = 0.002
"""The longest a new group-commit leader waits for the last batch's callers to queue again."""

# One constant advisory lock serialises appends across every process sharing the PostgreSQL database.
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"veilig-delen/audit/append").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class LogEntry:
    """One leaf of the log: its index and the exact canonical JSON bytes that were hashed."""

    index: int
    leaf_data: bytes

    @property
    def entry(self) -> dict[str, Any]:
        """The leaf bytes parsed as JSON."""
        parsed: dict[str, Any] = json.loads(self.leaf_data)
        return parsed

    @property
    def leaf_hash(self) -> bytes:
        """RFC 6962 leaf hash of the bytes."""
        return leaf_hash(self.leaf_data)

    def export_line(self) -> str:
        """The NDJSON export line ``{"index":i,"leafData":"<base64>"}`` with its newline."""
        data = base64.b64encode(self.leaf_data).decode("ascii")
        return f'{{"index":{self.index},"leafData":"{data}"}}\n'


@dataclass(frozen=True, kw_only=True)
class SearchFilters:
    """Search criteria; every one that is set must hold.

    ``agency`` and ``visible_to`` both mean "the entry names this agency as actor or counterpart": the
    first is the searcher's filter, the second the access rule (a privacy officer sees entries that
    name their own agency), so both can apply at once. ``time_from`` is inclusive, ``time_to``
    exclusive. ``subject`` is a BSN pseudonym, never a BSN. ``trace_id`` has no index of its own (no
    route or console page searches by trace, and its random keys made every append dearer): alone, it
    reads the log from the cursor on.
    """

    case_id: str | None = None
    agency: str | None = None
    visible_to: str | None = None
    purpose: str | None = None
    type: str | None = None
    information_type: str | None = None
    trace_id: str | None = None
    subject: str | None = None
    time_from: dt.datetime | None = None
    time_to: dt.datetime | None = None

    @classmethod
    def coerce(cls, value: SearchFilters | Mapping[str, Any] | None) -> SearchFilters:
        """Filters from a ``SearchFilters``, a mapping of its field names, or None (no filter)."""
        if value is None:
            return cls()
        if isinstance(value, SearchFilters):
            return value
        unknown = set(value) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown search filters: {sorted(unknown)}")
        given = {k: v for k, v in value.items() if v is not None}
        for name in ("time_from", "time_to"):
            if isinstance(given.get(name), str):
                parsed = parse_time(given[name])
                if parsed is None:
                    raise ValueError(f"{name} is not an RFC 3339 time with an offset")
                given[name] = parsed
        for name, v in given.items():
            if name.startswith("time_"):
                if not isinstance(v, dt.datetime) or v.tzinfo is None:
                    raise ValueError(f"{name} must be a timezone-aware datetime")
            elif not isinstance(v, str):
                raise ValueError(f"{name} must be a string")
        return cls(**given)


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint the log signed: its size, root, signed note text and when it was made."""

    size: int
    root: bytes
    note: str
    created_at: dt.datetime


@runtime_checkable
class AuditStore(Protocol):
    """The tamper-evident audit log as the gateway uses it."""

    def append(self, entries: Sequence[Mapping[str, Any]], *, writes: Writes | None = None) -> list[int]:
        """Durably log entries (with the caller's ``writes`` in the same transaction); their indexes."""
        ...

    def size(self) -> int:
        """Number of committed entries."""
        ...

    def root(self, size: int | None = None) -> bytes:
        """RFC 6962 root hash at ``size`` (default: now)."""
        ...

    def entry(self, index: int) -> LogEntry | None:
        """One entry, or None beyond the log."""
        ...

    def entries(self, start: int, end: int) -> list[LogEntry]:
        """Entries with ``start <= index < end``."""
        ...

    def iter_entries(self, start: int = 0, end: int | None = None) -> Iterator[LogEntry]:
        """Entries in index order, read in batches (for export)."""
        ...

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of ``index`` in the tree of ``tree_size``."""
        ...

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes."""
        ...

    def checkpoint(self) -> str:
        """A signed checkpoint covering every committed entry."""
        ...

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The newest signed checkpoint, if any."""
        ...

    def verifier_key(self) -> str:
        """The note verifier key of the log's signer."""
        ...

    def search(
        self,
        filters: SearchFilters | Mapping[str, Any] | None = None,
        limit: int = 100,
        cursor: str | int | None = None,
    ) -> tuple[list[LogEntry], str | None]:
        """A page of matching entries in index order, and the cursor of the next page."""
        ...


@dataclass(frozen=True)
class _Prepared:
    """An entry ready to be written: its leaf bytes and hash, and its search rows (without the index)."""

    leaf_data: bytes
    leaf_hash: bytes
    values: tuple[Any, ...]  # ENTRY_COLUMNS, entry_time already bound for the dialect
    agencies: list[tuple[str, str]]
    subjects: list[str]


class _Wake:
    """A one-shot event for one waiting thread: a bare lock, released once.

    ``threading.Event`` is a condition, a lock and a list of waiters, and each ``wait`` allocates one
    more lock: some 10 us a caller, and a commit wakes some 30 of them while the next batch waits.
    """

    __slots__ = ("_lock", "_set")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self._set = False

    def set(self) -> None:
        """Wake the waiter (again: nothing). Only the group-commit leader sets, one at a time."""
        if not self._set:
            self._set = True
            self._lock.release()

    def wait(self) -> None:
        """Block until ``set``; only the call's own thread waits, once."""
        self._lock.acquire()


@dataclass
class _Pending:
    """One ``append`` call waiting in the group-commit queue.

    ``wake`` is set when the call's batch has been committed (``done``), or, with ``done`` still
    False, when the previous leader hands this call the lead.
    """

    items: list[_Prepared]
    writes: Writes | None = None
    indexes: list[int] | None = None
    error: BaseException | None = None
    writes_failed: bool = False
    done: bool = False
    wake: _Wake = field(default_factory=lambda: _Wake())


def _prepare(entry: Mapping[str, Any], sqlite_time: bool = False) -> _Prepared:
    """Canonicalise, hash and extract one entry (in the caller's thread, outside the group commit).

    ``sqlite_time``: the entry time as SQLite stores it (text), since rows are inserted as plain
    tuples, without SQLAlchemy's per-row processing.
    """
    if not isinstance(entry, Mapping):
        raise InvalidEntry(f"an audit entry is a JSON object, not {type(entry).__name__}")
    data = fast_canonical_json(entry)
    if data is not None:
        # The fast path took only plain dicts, lists, strings, integers, booleans and None: a parse of
        # the bytes gives back exactly this object, so the columns can come from it directly.
        parsed: Mapping[str, Any] = entry
    else:
        data = reference_canonical_json(entry if isinstance(entry, dict) else dict(entry))
        # Columns come from the canonical bytes, not the caller's object, so that the verifier, which
        # only has the bytes, derives exactly the same columns (a tuple becomes a list, and so on).
        parsed = json.loads(data)
    values, agencies, subjects = extract_rows(parsed, sqlite_time=sqlite_time)
    return _Prepared(data, leaf_hash(data), values, agencies, subjects)


Writes = Callable[[Connection], object]
"""The caller's own database writes, run by ``SqlAuditStore.append`` in the transaction of its entries."""


_ENTRY_INSERT_COLUMNS = ("idx", "leaf_data", "leaf_hash", *ENTRY_COLUMNS)


@dataclass
class _GroupCommit:
    """Leader/follower group commit: whoever finds no leader commits everything queued meanwhile."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: list[_Pending] = field(default_factory=list)
    leading: bool = False
    # Notified when a call queues; a new leader waits on it (briefly) for the callers of the last batch.
    arrived: threading.Condition = field(init=False)
    wanted: int = 0  # calls queued at which the gathering leader wants to be woken (0: none waits)
    last_calls: int = 0  # calls in the last batch committed
    last_write: float = 0.0  # how long its transaction took, in seconds
    # SQLite: entries committed since the WAL was last checkpointed, and whether a checkpoint runs.
    unchecked: int = 0
    checkpointing: bool = False
    wal_frames: int = 0  # frames in the WAL since it last started over, as the last checkpoint saw

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)


class SqlAuditStore:
    """``AuditStore`` on SQLite (WAL) or PostgreSQL through a SQLAlchemy engine.

    The tables must exist (``audit.metadata``), ideally with ``install_append_only_triggers``.
    Appends are serialised in-process by a group-commit queue and across processes by the database:
    ``BEGIN IMMEDIATE`` on SQLite, ``pg_advisory_xact_lock`` on PostgreSQL. ``retired`` are the verifier
    keys of keys rotated out (``audit.retired_verifier_keys``): checkpoints they signed still anchor
    the consistency check before each new checkpoint.

    Reads check what they read: a row that is not what the log writes (text where bytes belong, a
    leaf that is not a JSON object, a tree node of the wrong length) raises ``LogCorrupted`` naming
    the index, never a ``TypeError``.
    """

    def __init__(
        self,
        engine: Engine,
        signer: LogSigner,
        *,
        max_batch: int = 2000,
        retired: Sequence[str | NoteVerifier] = (),
    ) -> None:
        self._engine = engine
        self._signer = signer
        self._retired = [v if isinstance(v, NoteVerifier) else parse_verifier_key(v) for v in retired]
        self._max_batch = max_batch
        self._group = _GroupCommit()
        # The tree's right edge after our last commit; only the group-commit leader touches it.
        self._frontier: CompactRange | None = None
        # SQLite stores a timestamp as text: made once, in the caller's thread.
        self._sqlite = engine.dialect.name == "sqlite"
        # SQLite files: the connection the leaders write on, kept between batches (``_writing``).
        self._writer: Connection | None = None
        self._keeps_writer = self._sqlite and isinstance(engine.pool, QueuePool)

    @property
    def engine(self) -> Engine:
        """The engine the log lives in."""
        return self._engine

    @property
    def signer(self) -> LogSigner:
        """The checkpoint signer."""
        return self._signer

    def verifier_key(self) -> str:
        """The note verifier key of the log's signer."""
        return self._signer.verifier_key()

    def verifier_keys(self) -> list[str]:
        """Every verifier key whose checkpoints this log accepts: the current one first, then retired ones."""
        return [self._signer.verifier_key(), *(str(v) for v in self._retired if v != self._signer.verifier)]

    # -- writing ---------------------------------------------------------------------------------

    def append(self, entries: Sequence[Mapping[str, Any]], *, writes: Writes | None = None) -> list[int]:
        """Canonicalise and durably log ``entries``; returns their consecutive indexes after the commit.

        Concurrent callers are batched into one transaction (group commit); each gets its indexes only
        once that transaction has committed. If this raises, none of these entries were written:
        ``InvalidEntry`` before anything is queued, ``AuditWriteError`` when the commit failed.

        ``writes``, if given, is called as ``writes(connection)`` inside the transaction that commits
        these entries, while the log's write lock is held (``BEGIN IMMEDIATE`` on SQLite, the advisory
        lock on PostgreSQL, so a read-modify-write in it is serialised across processes too). The
        entries and whatever it wrote through ``connection`` commit together or not at all. It must
        write only through that connection and must not commit, roll back or close it; it may be
        called again when its batch is retried, so it should have no other side effects. When it
        raises, only this call fails, with ``AuditWriteError`` whose ``__cause__`` is what it raised
        (``writes_failed`` is True): the other callers in the same batch still commit (each caller's
        writes run in a SAVEPOINT). Entries are required with ``writes``: every write is logged.
        """
        if not entries:
            if writes is not None:
                raise InvalidEntry("writes need at least one audit entry: every write is logged")
            return []
        sqlite_time = self._sqlite
        pending = _Pending(items=[_prepare(e, sqlite_time) for e in entries], writes=writes)
        group = self._group
        with group.lock:
            group.queue.append(pending)
            leader = not group.leading
            group.leading = True
            if group.wanted and len(group.queue) >= group.wanted:
                group.arrived.notify()  # (once the gathering leader has what it waits for)
        if not leader:
            # Each caller waits on its own event, so a commit wakes exactly the callers it served
            # rather than every waiting thread.
            pending.wake.wait()
            leader = not pending.done
        if leader:
            checkpoint = completed = False
            try:
                while not pending.done:
                    with group.lock:
                        self._gather()
                        batch = self._take_batch()
                    started = time.monotonic()
                    self._commit_batch(batch)
                    with group.lock:
                        group.last_calls, group.last_write = len(batch), time.monotonic() - started
                with group.lock:
                    inline = self._checkpoint_due() and group.wal_frames >= _WAL_RESET_FRAMES
                    if inline:
                        group.checkpointing, group.unchecked = True, 0
                if inline:
                    # Still leading, so no batch of this process commits meanwhile: the checkpoint
                    # reaches the WAL's end and the next commit starts the WAL over. Checkpoints beside
                    # a stream of commits never do, and the WAL would only grow.
                    if self._checkpoint_wal():
                        with group.lock:
                            group.wal_frames = 0  # all copied: the next commit starts it over
                completed = True
            finally:
                if self._writer is not None:
                    with group.lock:
                        quiet = not group.queue and group.last_calls <= 1
                    if quiet:  # (still leading: nobody else writes on it meanwhile)
                        self._release_writer()
                # Hand the lead to the oldest waiting call, which commits whatever queued meanwhile.
                with group.lock:
                    if group.queue:
                        group.queue[0].wake.set()
                    else:
                        group.leading = False
                    if completed and self._checkpoint_due():  # (not on the way out of an interrupt)
                        group.checkpointing = checkpoint = True
                        group.unchecked = 0
            if checkpoint:
                # After the hand-over: the next leader's transaction goes on while this runs.
                self._checkpoint_wal()
        if pending.writes_failed:
            raise AuditWriteError(
                "the caller's writes failed; neither they nor the audit entries were committed",
                writes_failed=True,
            ) from pending.error
        if pending.error is not None or pending.indexes is None:
            raise AuditWriteError("the audit log could not commit the entries") from pending.error
        return pending.indexes

    def _gather(self) -> None:
        """Wait (holding the group's lock, released while waiting) for the last batch's callers to queue.

        Under steady concurrency the callers of the last batch come back at once, but not before the
        next leader starts: without this, batches alternate between the first one back and all the
        others, two commits where one would do. The wait ends when as many calls are queued as the
        last batch had, and after half the last transaction's time at most (2 ms at most), less than
        the commit it saves. A caller alone (a last batch of one) never waits.
        """
        group = self._group
        # A caller busy with the WAL checkpoint comes back only after it: not worth waiting for.
        want = group.last_calls - group.checkpointing
        if want <= 1 or len(group.queue) >= want:
            return
        deadline = time.monotonic() + min(group.last_write / 2, _MAX_GATHER)
        group.wanted = want
        try:
            while len(group.queue) < want:
                left = deadline - time.monotonic()
                if left <= 0 or not group.arrived.wait(left):
                    return
        finally:
            group.wanted = 0

    def _checkpoint_due(self) -> bool:
        """Whether enough entries were committed since the last WAL checkpoint (call with the lock held)."""
        group = self._group
        return group.unchecked >= _CHECKPOINT_EVERY and not group.checkpointing

    def _checkpoint_wal(self) -> bool:
        """SQLite: copy the WAL into the database file (PASSIVE: writers go on meanwhile).

        The log's own commits do not checkpoint (``wal_autocheckpoint`` is off while they run): done
        there, every caller of the batch would wait for it. A checkpoint is not needed for
        durability (a committed transaction is in the synced WAL), only to keep the WAL short.
        Records how many frames the WAL holds since it last started over; True when every frame was
        copied (the next commit then starts the WAL over).
        """
        frames: int | None = None
        complete = False
        try:
            with self._engine.connect() as conn:
                busy, frames, copied = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
            complete = busy == 0 and copied == frames
        except Exception:
            log.warning("audit WAL checkpoint failed; the next one retries", exc_info=True)
        finally:
            with self._group.lock:
                self._group.checkpointing = False
                if isinstance(frames, int):
                    self._group.wal_frames = frames
        return complete

    def _take_batch(self) -> list[_Pending]:
        queue = self._group.queue
        taken, rows = 0, 0
        while taken < len(queue) and (taken == 0 or rows + len(queue[taken].items) <= self._max_batch):
            rows += len(queue[taken].items)
            taken += 1
        batch = queue[:taken]
        del queue[:taken]
        return batch

    def _commit_batch(self, batch: list[_Pending]) -> None:
        """Write one batch in one transaction; record the outcome on every call in it and wake them.

        When the batch fails as a whole (an insert, the commit, or a caller's writes that broke the
        transaction beyond its savepoint), each of its calls is retried in a transaction of its own,
        so that one call's failure is that call's alone.
        """
        try:
            try:
                self._write(batch)
            except Exception as e:
                if len(batch) == 1:
                    raise
                log.warning(
                    "audit append of %d calls failed (%s); retrying each alone", len(batch), type(e).__name__
                )
                for p in batch:
                    if p.done or p.writes_failed:
                        continue
                    try:
                        self._write([p])
                    except Exception as alone:
                        log.exception("audit append of %d entries failed", len(p.items))
                        p.error = alone
                    finally:
                        p.done = True
                        p.wake.set()
        except Exception as e:
            log.exception("audit append of %d entries failed", sum(len(p.items) for p in batch))
            for p in batch:
                if not p.done and not p.writes_failed:
                    p.error = e
        except BaseException as e:
            for p in batch:
                if not p.done:
                    p.error = e
            raise
        finally:
            for p in batch:
                p.done = True
                p.wake.set()

    def _write(self, batch: list[_Pending]) -> None:
        """One transaction: the log's lock, each call's writes (in a savepoint), its entries, commit.

        Sets ``indexes`` on the calls committed, and ``error`` with ``writes_failed`` on those whose
        writes raised (their savepoint rolled back). Raises when the transaction as a whole failed: then
        nothing of it was committed, and no call's outcome is set except ``writes_failed`` ones.
        """
        with self._writing() as conn:
            _lock_log(conn)
            # Read again each time (another process may have appended); driver SQL, as it is run at
            # every batch.
            highest = conn.exec_driver_sql("SELECT max(idx) FROM audit_entries").scalar()
            size = 0 if highest is None else int(highest) + 1
            cached = self._frontier
            frontier = (
                cached.copy() if cached is not None and cached.size == size else _load_frontier(conn, size)
            )
            live = batch if all(p.writes is None for p in batch) else self._run_writes(conn, batch)
            entry_rows: list[tuple[Any, ...]] = []
            agency_rows: list[tuple[Any, ...]] = []
            subject_rows: list[tuple[Any, ...]] = []
            node_rows: list[tuple[Any, ...]] = []
            assigned: list[list[int]] = []
            append_leaf = frontier.append
            for pending in live:
                indexes = []
                for item in pending.items:
                    index = frontier.size
                    for node in append_leaf(item.leaf_hash):
                        node_rows.append(node)
                    entry_rows.append((index, item.leaf_data, item.leaf_hash, *item.values))
                    for agency, role in item.agencies:
                        agency_rows.append((index, agency, role))
                    for pseudonym in item.subjects:
                        subject_rows.append((index, pseudonym))
                    indexes.append(index)
                assigned.append(indexes)
            if entry_rows:
                _insert_many(conn, entries, _ENTRY_INSERT_COLUMNS, entry_rows)
                _insert_many(conn, entry_agencies, ("idx", "agency", "role"), agency_rows)
                _insert_many(conn, entry_subjects, ("idx", "pseudonym"), subject_rows)
                _insert_many(conn, nodes, ("level", "idx", "hash"), node_rows)
                _seal_subjects(conn, size, frontier.size)
            try:
                conn.commit()
            except Exception:
                # The connection's state is unknown now (it may even still hold the log's lock in an
                # open transaction): close it rather than give it back to the pool.
                conn.invalidate()
                # A commit that failed may still have landed (a connection lost during COMMIT on
                # PostgreSQL): then retrying would log the entries twice. Ask the database.
                if not entry_rows or not self._landed(size, [row[2] for row in entry_rows]):
                    raise
                log.warning("audit commit reported a failure but its %d entries are stored", len(entry_rows))
        # Only after the commit: a failed batch must not leave its leaves in our idea of the tree.
        self._frontier = frontier
        if self._sqlite:
            with self._group.lock:
                self._group.unchecked += len(entry_rows)
        for p, indexes in zip(live, assigned, strict=True):
            p.indexes = indexes
            p.done = True

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """The connection a batch is written on (only the group-commit leader calls this).

        On a SQLite file the store keeps its pooled connection from one batch to the next while calls
        keep coming (``_release_writer`` gives it back once a lone call finds the queue empty): SQLite
        empties a connection's page cache when another connection wrote last, so a connection a batch
        started each batch by reading every b-tree's pages anew. While kept it never checkpoints in
        its commits (the store does). A batch that fails drops it: its state is unknown then.
        """
        if not self._keeps_writer:
            with self._engine.connect() as pooled, _autocheckpoint_off(pooled, self._sqlite):
                yield pooled
            return
        conn = self._writer
        if conn is None or conn.closed or conn.invalidated:
            self._writer = None
            conn = self._engine.connect()
            try:
                _set_autocheckpoint(conn, off=True)
            except BaseException:
                conn.close()
                raise
            self._writer = conn
        try:
            yield conn
        except BaseException:
            self._release_writer()
            raise

    def _release_writer(self) -> None:
        """Give the kept write connection back to the pool, checkpointing as before; never raises."""
        conn, self._writer = self._writer, None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if not conn.invalidated and not conn.closed:
                if conn.in_transaction():
                    conn.rollback()
                _set_autocheckpoint(conn, off=False)  # (it invalidates the connection on failure)
        with contextlib.suppress(Exception):
            conn.close()

    def _run_writes(self, conn: Connection, batch: list[_Pending]) -> list[_Pending]:
        """Run each call's writes, each in a savepoint when others share the transaction; the calls left."""
        live: list[_Pending] = []
        for p in batch:
            if p.writes is None:
                live.append(p)
                continue
            if len(batch) == 1:
                # Alone in its transaction: a failure rolls back the whole of it, no savepoint needed.
                try:
                    p.writes(conn)
                except Exception as e:
                    p.error, p.writes_failed = e, True
                    raise
                live.append(p)
                continue
            savepoint = conn.begin_nested()
            try:
                p.writes(conn)
            except Exception as e:
                # If the rollback itself fails (the database dropped the whole transaction), that
                # propagates: the batch fails and every call is retried alone.
                savepoint.rollback()
                log.info("an audit append's writes failed (%s); its entries are left out", type(e).__name__)
                p.error, p.writes_failed = e, True
                continue
            savepoint.commit()
            live.append(p)
        return live

    def _landed(self, first: int, hashes: list[bytes]) -> bool:
        """Whether entries ``first, first + 1, ...`` are stored with exactly these leaf hashes."""
        try:
            with self._engine.connect() as conn:
                stored = conn.execute(
                    select(entries.c.leaf_hash)
                    .where(entries.c.idx >= first, entries.c.idx < first + len(hashes))
                    .order_by(entries.c.idx)
                ).scalars()
                return [as_bytes(h) for h in stored] == hashes
        except Exception:
            log.warning("could not tell whether a failed audit commit landed", exc_info=True)
            return False

    # -- reading ---------------------------------------------------------------------------------

    def size(self) -> int:
        """Number of committed entries."""
        with self._engine.connect() as conn:
            return _read_size(conn)

    def root(self, size: int | None = None) -> bytes:
        """RFC 6962 root hash of the first ``size`` entries (default: all committed)."""
        with self._engine.connect() as conn:
            current = _read_size(conn)
            size = current if size is None else size
            if not 0 <= size <= current:
                raise EntryNotFound(f"tree size {size} is beyond the log's {current} entries")
            return _root(conn, size)

    def entry(self, index: int) -> LogEntry | None:
        """The entry at ``index``, or None when the log has none there."""
        if not 0 <= index <= MAX_POSITION:
            return None  # no log holds it, and the database could not even compare it
        with self._engine.connect() as conn:
            row = conn.execute(select(entries.c.leaf_data).where(entries.c.idx == index)).first()
        return None if row is None else checked_entry(index, row.leaf_data)

    def entries(self, start: int, end: int) -> list[LogEntry]:
        """Entries with ``start <= index < end``, in index order (fewer if the log is shorter)."""
        if start < 0 or end < start:
            raise ValueError(f"bad entry range [{start}, {end})")
        start, end = min(start, MAX_POSITION), min(end, MAX_POSITION)
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(entries.c.idx, entries.c.leaf_data)
                .where(entries.c.idx >= start, entries.c.idx < end)
                .order_by(entries.c.idx)
            )
            return [checked_entry(r.idx, r.leaf_data) for r in rows]

    def iter_entries(
        self, start: int = 0, end: int | None = None, *, batch_size: int = 1000
    ) -> Iterator[LogEntry]:
        """Entries ``start <= index < end`` (default: the size when iteration starts), read in batches.

        Each batch uses its own short transaction, so a slow export holds no lock; entries never change,
        so the batches add up to a consistent view.
        """
        stop = self.size() if end is None else end
        position = start
        while position < stop:
            batch = self.entries(position, min(position + batch_size, stop))
            if not batch:
                return
            yield from batch
            position = batch[-1].index + 1

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of the first ``tree_size`` entries."""
        with self._engine.connect() as conn:
            current = _read_size(conn)
            if not 0 <= index < tree_size <= current:
                raise EntryNotFound(f"no entry {index} in a tree of size {tree_size} (log size {current})")
            return hashes_for_ranges(inclusion_ranges(index, tree_size), _reader(conn))

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof that the tree of ``size1`` entries is a prefix of that of ``size2``."""
        with self._engine.connect() as conn:
            current = _read_size(conn)
            if not 0 <= size1 <= size2 <= current:
                raise EntryNotFound(f"no consistency proof from {size1} to {size2} (log size {current})")
            return hashes_for_ranges(consistency_ranges(size1, size2), _reader(conn))

    # -- checkpoints -----------------------------------------------------------------------------

    def checkpoint(self) -> str:
        """A signed checkpoint of every entry committed so far; recorded in ``audit_checkpoints``.

        Reuses the latest checkpoint when the log has not grown and the current key signed it. Before
        signing a new one it proves, from the stored tree, that the new tree extends the latest
        checkpoint signed by this key or a retired one, and raises ``LogCorrupted`` otherwise: a log
        must never sign two inconsistent checkpoints, also not across a key rotation.
        """
        with self._engine.connect() as conn:
            size = _read_size(conn)
            found = self._latest_known(conn)
            previous = found[0] if found is not None else None
            if found is not None and found[2] and found[0].size == size:
                return found[1]
            root = _root(conn, size)
            if previous is not None:
                if previous.size > size:
                    raise LogCorrupted(f"the log has {size} entries but a checkpoint signed {previous.size}")
                proof = hashes_for_ranges(consistency_ranges(previous.size, size), _reader(conn))
                try:
                    verify_consistency(previous.size, size, proof, previous.root, root)
                except InvalidProof as e:
                    raise LogCorrupted(
                        f"the stored tree does not extend the checkpoint of size {previous.size}: {e}"
                    ) from e
            note = self._signer.sign_checkpoint(size, root)
            conn.execute(
                insert(checkpoints).values(
                    tree_size=size, root_hash=root, note=note, created_at=dt.datetime.now(dt.UTC)
                )
            )
            conn.commit()
        return note

    def _latest_known(self, conn: Connection) -> tuple[Checkpoint, str, bool] | None:
        """The largest checkpoint a known key signed, its note, and whether the current key signed it.

        Rows that no known key signed (another log's, garbage) are skipped: they anchor nothing. The
        verifier reports them.
        """
        rows = conn.execute(
            select(checkpoints.c.id, raw(checkpoints.c.note).label("note")).order_by(
                checkpoints.c.tree_size.desc(), checkpoints.c.id.desc()
            )
        )
        current = self._signer.verifier
        for row in rows:
            if not isinstance(row.note, str):
                continue
            for verifier in (current, *self._retired):
                try:
                    cp = verify_checkpoint(row.note, verifier)
                except InvalidNote:
                    continue
                return cp, row.note, verifier == current
        return None

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest tree size (newest among equals), or None."""
        with self._engine.connect() as conn:
            return _latest_checkpoint(conn)

    # -- search ----------------------------------------------------------------------------------

    def search(
        self,
        filters: SearchFilters | Mapping[str, Any] | None = None,
        limit: int = 100,
        cursor: str | int | None = None,
    ) -> tuple[list[LogEntry], str | None]:
        """Entries matching every filter set, in index order, starting at the page ``cursor`` names.

        ``filters`` is a ``SearchFilters`` or a mapping with the same keys (times as datetimes or
        RFC 3339 strings). Returns at most ``limit`` (capped at ``MAX_PAGE``) entries and the cursor of
        the next page (the decimal index it starts at), or None on the last page. A malformed filter
        or cursor raises ``ValueError``.
        """
        if limit < 1:
            raise ValueError("limit must be at least 1")
        limit = min(limit, MAX_PAGE)
        f = SearchFilters.coerce(filters)
        start = _parse_cursor(cursor)
        with self._engine.connect() as conn:
            span = _index_span(conn, f, start)
            if span is None:
                return [], None
            if conn.dialect.name == "sqlite" and not _selective(f):
                found = _search_merged(conn, f, span, limit + 1)
            else:
                found = _search_planned(conn, f, span, limit + 1)
        if len(found) > limit:
            return found[:limit], str(found[limit].index)
        return found, None


# -- search ------------------------------------------------------------------------------------------
#
# Every filter is a stream of entry indexes in ascending order, read from an index alone: (column, idx)
# on audit_entries, (agency, idx) and (pseudonym, idx) on the side tables. A page is the first indexes
# all the streams share from the cursor on. The time range is the exception (its index is ordered by
# time, not by index): it is turned into bounds on the index first, then checked on the rows within.


def _index_span(conn: Connection, f: SearchFilters, start: int) -> tuple[int, int | None] | None:
    """``(low, high)`` bounds on the index of any match (``high`` inclusive, None for open), or None.

    Without a time filter that is ``(cursor, None)``. With one, the lowest and highest index of the
    entries in the time range, read from the (entry_time, idx) index: cost grows with the entries in
    the range, not with the log, and a scan in index order then starts where the range starts.
    """
    if f.time_from is None and f.time_to is None:
        return start, None
    in_range = select(entries.c.idx)
    if f.time_from is not None:
        in_range = in_range.where(entries.c.entry_time >= f.time_from)
    if f.time_to is not None:
        in_range = in_range.where(entries.c.entry_time < f.time_to)
    # OFFSET 0 keeps the range a subquery: asked for min(idx) of the table directly, both SQLite and
    # PostgreSQL walk the primary key until the first row in range, reading whole rows, rather than
    # reading the range off the (entry_time, idx) index alone.
    ranged = in_range.offset(0).subquery()
    query = select(func.min(ranged.c.idx), func.max(ranged.c.idx))
    low, high = conn.execute(query).one()
    if low is None or high < start:
        return None  # nothing in the range, or nothing from the cursor on
    return max(int(low), start), int(high)


def _in_span(column: Any, span: tuple[int, int | None]) -> list[Any]:
    low, high = span
    conditions = [column >= low]
    if high is not None:
        conditions.append(column <= high)
    return conditions


_COLUMN_FILTERS = (
    ("case_id", "case_id"),
    ("purpose", "purpose"),
    ("type", "entry_type"),
    ("information_type", "information_type"),
    ("trace_id", "trace_id"),
)


def _selective(f: SearchFilters) -> bool:
    """A filter that matches a handful of entries (one person, one case, one trace) drives best."""
    return f.subject is not None or f.case_id is not None or f.trace_id is not None


def _search_merged(
    conn: Connection, f: SearchFilters, span: tuple[int, int | None], n: int
) -> list[LogEntry]:
    """SQLite, broad filters: intersect their sorted index streams, a merge that stops after ``n``.

    SQLite's planner uses one index per table; for two filters it would walk the first one's index
    and read each row to test the second, which for a rare combination means reading much of the
    log. ``A INTERSECT B ORDER BY idx LIMIT n`` over covering indexes is a merge of two sorted
    streams instead, reading only index pages and stopping at the n-th match. (A merge reads every
    index entry of each stream up to the last match; with a selective filter among them, driving
    from that filter and probing the others, as ``_search_planned`` does, reads less.)
    """
    streams: list[Select[Any]] = []
    for name, column in _COLUMN_FILTERS:
        value = getattr(f, name)
        if value is not None:
            c = entries.c[column]
            streams.append(select(entries.c.idx).where(c == value, *_in_span(entries.c.idx, span)))
    for agency in dict.fromkeys(a for a in (f.agency, f.visible_to) if a is not None):
        streams.append(
            select(entry_agencies.c.idx).where(
                entry_agencies.c.agency == agency, *_in_span(entry_agencies.c.idx, span)
            )
        )
    if f.subject is not None:
        streams.append(_person(conn, f.subject, span))
    if f.time_from is not None or f.time_to is not None or not streams:
        timed = select(entries.c.idx).where(*_in_span(entries.c.idx, span))
        if f.time_from is not None:
            timed = timed.where(entries.c.entry_time >= f.time_from)
        if f.time_to is not None:
            timed = timed.where(entries.c.entry_time < f.time_to)
        streams.append(timed)
    if len(streams) == 1:
        # One stream may repeat an index (an agency named as actor and counterpart): group them.
        (only,) = streams
        ids_query: Any = only.group_by(literal_column("idx")).order_by(literal_column("idx")).limit(n)
    else:
        ids_query = intersect(*streams).order_by(literal_column("idx")).limit(n)
    ids = [int(i) for i in conn.execute(ids_query).scalars()]
    if not ids:
        return []
    rows = conn.execute(
        select(entries.c.idx, entries.c.leaf_data).where(entries.c.idx.in_(ids)).order_by(entries.c.idx)
    )
    return [checked_entry(r.idx, r.leaf_data) for r in rows]


def _search_planned(
    conn: Connection, f: SearchFilters, span: tuple[int, int | None], n: int
) -> list[LogEntry]:
    """One query driven by the most selective filter; the others are probes on their indexes.

    Used for selective filters on SQLite, and always on PostgreSQL, whose planner combines indexes
    itself (bitmap AND, semi-joins) using per-value statistics.
    """
    query = select(entries.c.idx, entries.c.leaf_data).where(*_in_span(entries.c.idx, span))
    for name, column in _COLUMN_FILTERS:
        value = getattr(f, name)
        if value is not None:
            query = query.where(entries.c[column] == value)
    # The span is repeated inside each subquery: planners do not carry "idx >= cursor" across a join,
    # and without it a deep page would read an agency's index entries from the start of the log.
    for agency in dict.fromkeys(a for a in (f.agency, f.visible_to) if a is not None):
        query = query.where(
            exists().where(
                entry_agencies.c.idx == entries.c.idx,
                entry_agencies.c.agency == agency,
                *_in_span(entry_agencies.c.idx, span),
            )
        )
    if f.subject is not None:
        # A person's entries are few: drive from them rather than test every entry for them.
        query = query.where(entries.c.idx.in_(_person(conn, f.subject, span)))
    if f.time_from is not None:
        query = query.where(entries.c.entry_time >= f.time_from)
    if f.time_to is not None:
        query = query.where(entries.c.entry_time < f.time_to)
    rows = conn.execute(query.order_by(entries.c.idx).limit(n))
    return [checked_entry(r.idx, r.leaf_data) for r in rows]


def _person(conn: Connection, pseudonym: str, span: tuple[int, int | None]) -> Select[Any]:
    """The indexes of a person's entries within ``span``: a seek in each sealed run, then the tail.

    The run ends are read first, in a statement of their own; entries committed (or runs sealed) after
    that are still found, because ``audit_entry_subjects`` holds every entry's rows and the tail is
    read there from the last run end read.
    """
    ends = _run_ends(conn)
    low, high = span
    sealed = ends[-1] if ends else 0
    parts: list[Select[Any]] = []
    # A run ending at or before the span holds nothing in it; one starting after it neither.
    starts = [0, *ends][: len(ends)]
    wanted = [
        end for start, end in zip(starts, ends, strict=True) if end > low and (high is None or start <= high)
    ]
    if wanted:
        parts.append(
            select(subject_runs.c.idx).where(
                subject_runs.c.run_end.in_(wanted),
                subject_runs.c.pseudonym == pseudonym,
                *_in_span(subject_runs.c.idx, span),
            )
        )
    if high is None or sealed <= high:
        parts.append(
            select(entry_subjects.c.idx).where(
                entry_subjects.c.idx >= max(sealed, low),
                entry_subjects.c.pseudonym == pseudonym,
                *_in_span(entry_subjects.c.idx, span),
            )
        )
    if not parts:  # (an empty span: nothing can match)
        return select(entry_subjects.c.idx).where(literal_column("1") == literal_column("0"))
    if len(parts) == 1:
        return parts[0]
    both = union_all(*parts).subquery()
    return select(both.c.idx)


def _run_ends(conn: Connection) -> list[int]:
    """Every ``run_end`` of ``audit_subject_runs``, ascending: one index seek a run (a loose index scan)."""
    rows = conn.execute(
        text(
            "WITH RECURSIVE ends(e) AS ("
            " SELECT (SELECT min(run_end) FROM audit_subject_runs)"
            " UNION ALL"
            " SELECT (SELECT min(run_end) FROM audit_subject_runs WHERE run_end > e) FROM ends"
            " WHERE e IS NOT NULL"
            ") SELECT e FROM ends WHERE e IS NOT NULL"
        )
    )
    ends = [int(e) for (e,) in rows]
    if ends != sorted(set(ends)):  # pragma: no cover - the recursion gives them ascending and distinct
        raise LogCorrupted("the subject runs' ends are not ascending")
    return ends


def _seal_subjects(conn: Connection, before: int, after: int) -> None:
    """When the log grew past a multiple of ``SUBJECT_RUN``: seal the subject rows up to it in runs.

    Each run holds the rows of the ``SUBJECT_RUN`` entries below its end (a multiple of it), so the
    verifier checks each within its chunk. In the append's own transaction, so a run is there exactly
    when the entries it covers are. Sealing starts where the last run ended, so a log whose last run is
    older (another version, a failed seal) catches up here, a run per block.
    """
    run = _schema.SUBJECT_RUN
    end = after // run * run
    if end <= before // run * run:
        return
    last = conn.execute(select(func.max(subject_runs.c.run_end))).scalar()
    start = 0 if last is None else int(last)
    if end <= start:
        return
    conn.execute(
        text(
            "INSERT INTO audit_subject_runs (run_end, pseudonym, idx)"
            " SELECT (idx / :run + 1) * :run, pseudonym, idx FROM audit_entry_subjects"
            " WHERE idx >= :start AND idx < :end ORDER BY 1, pseudonym, idx"
        ),
        {"start": start, "end": end, "run": run},
    )


# -- shared SQL helpers (also used by the verifier) --------------------------------------------------


@contextlib.contextmanager
def _autocheckpoint_off(conn: Connection, sqlite: bool) -> Iterator[None]:
    """On SQLite, no automatic WAL checkpoint in this connection's commits meanwhile (the store runs them)."""
    if not sqlite:
        yield
        return
    _set_autocheckpoint(conn, off=True)
    try:
        yield
    finally:
        if not conn.invalidated:
            _set_autocheckpoint(conn, off=False)


def _set_autocheckpoint(conn: Connection, *, off: bool) -> None:
    """SQLite: ``wal_autocheckpoint`` off, or back to what it was before the store turned it off.

    Turning it back on never raises: the batch may be committed already, and a raise would have it
    retried (appended twice); the connection is dropped instead.
    """
    record = conn.connection
    dbapi: Any = record.dbapi_connection
    if off:
        if record.info.get("audit_wal_autocheckpoint") is None:
            (before,) = dbapi.execute("PRAGMA wal_autocheckpoint").fetchone()
            record.info["audit_wal_autocheckpoint"] = before
        dbapi.execute("PRAGMA wal_autocheckpoint=0")
        return
    try:
        dbapi.execute(f"PRAGMA wal_autocheckpoint={int(record.info['audit_wal_autocheckpoint'])}")
    except Exception:
        log.warning("audit: wal_autocheckpoint not restored; the connection is dropped", exc_info=True)
        conn.invalidate()


def _lock_log(conn: Connection) -> None:
    """Start the append transaction holding the log's write lock, so the size read next stays true."""
    dialect = conn.dialect.name
    if dialect == "sqlite":
        dbapi = conn.connection.dbapi_connection
        # pysqlite opens transactions lazily at the first write; take the write lock now instead. If an
        # engine hook already began a transaction, the primary key still refuses a duplicate index.
        if not getattr(dbapi, "in_transaction", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


MAX_POSITION = 2**63 - 1
"""The largest index either database stores (a signed 64-bit integer); beyond it nothing can exist."""


def _parse_cursor(cursor: str | int | None) -> int:
    if cursor is None or cursor == "":
        return 0
    if isinstance(cursor, int) and not isinstance(cursor, bool) and 0 <= cursor <= MAX_POSITION:
        return cursor
    if isinstance(cursor, str) and cursor.isascii() and cursor.isdigit() and len(cursor) <= 19:
        value = int(cursor)
        if value <= MAX_POSITION:
            return value
    raise ValueError("not a search cursor")


def _insert_many(conn: Connection, table: Table, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """Insert rows (tuples in ``columns`` order) in the current transaction.

    COPY on PostgreSQL with psycopg, one driver-level executemany on SQLite, Core elsewhere. The
    values are already what the database stores (UTC, bytes, SQLite's timestamp text).
    """
    if not rows:
        return
    dialect = conn.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        # psycopg's executemany sends one statement per row; COPY streams them, about five times
        # faster, and the append lock is held for that long.
        quoted = ", ".join(f'"{c}"' for c in columns)
        dbapi: Any = conn.connection.dbapi_connection
        with dbapi.cursor() as cur, cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        return
    if dialect.name == "sqlite":
        # Through the connection (so engine events see it), but without SQLAlchemy's per-row
        # parameter processing, which cost more than the insert itself. Many rows a statement: an
        # executemany steps once per row, releasing and retaking the GIL each time, and with dozens of
        # threads queued for the GIL (the group commit's waiting callers) the leader waited for it at
        # every row. One statement of exactly the batch's rows (up to 64): each statement costs some
        # 40 us in SQLAlchemy, and the batches' sizes under steady load are few enough for the
        # driver's statement cache of the store's own connection.
        names = tuple(columns)
        position, left = 0, len(rows)
        while left:
            size = min(_SQLITE_CHUNK, left)
            chunk = rows[position : position + size]
            conn.exec_driver_sql(
                _sqlite_insert(table.name, names, size), tuple(v for row in chunk for v in row)
            )
            position, left = position + size, left - size
        return
    conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])


@functools.lru_cache(maxsize=512)
def _sqlite_insert(table: str, columns: tuple[str, ...], rows: int = 1) -> str:
    # Names are the schema's own constants, never input.
    row = f"({', '.join('?' * len(columns))})"
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"  # noqa: S608


_SQLITE_CHUNK = 64
"""Rows a SQLite insert statement carries at most: 64 x 12 columns stay far below SQLite's 32,766 (and
even the 999 of builds before 3.32) variables a statement."""


def log_size(engine: Engine) -> int:
    """How many entries the log in ``engine`` holds (0 for a new log); needs no signing key."""
    with engine.connect() as conn:
        return _read_size(conn)


def _read_size(conn: Connection) -> int:
    highest = conn.execute(select(func.max(entries.c.idx))).scalar()
    return 0 if highest is None else int(highest) + 1


def read_nodes(conn: Connection, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    """Perfect-node hashes by ``(level, index)``: level 0 from the leaves, the rest from ``audit_nodes``.

    Raises ``LogCorrupted`` if one is missing: the tree is stored in full up to the log's size.
    """
    wanted = set(keys)
    found: dict[NodeKey, bytes] = {}
    leaves = [i for level, i in wanted if level == 0]
    inner = [(level, i) for level, i in wanted if level > 0]
    # Driver-level statements: a proof reads some twenty rows, and building, compiling and processing
    # a Core statement of this varying shape cost several times the lookups themselves.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    if leaves:
        statement = (
            f"SELECT idx, leaf_hash FROM audit_entries WHERE idx IN ({', '.join([mark] * len(leaves))})"  # noqa: S608
        )
        for idx, h in conn.exec_driver_sql(statement, tuple(leaves)):
            found[(0, idx)] = _stored_hash(idx, h)
    if inner:
        # "(level = ? AND idx = ?) OR ...": SQLite answers a row-value IN with a full scan, but an OR
        # of primary-key lookups with one index search each.
        terms = " OR ".join([f"(level = {mark} AND idx = {mark})"] * len(inner))
        params = tuple(v for key in inner for v in key)
        for level, idx, h in conn.exec_driver_sql(
            f"SELECT level, idx, hash FROM audit_nodes WHERE {terms}",  # noqa: S608 (placeholders only)
            params,
        ):
            found[(level, idx)] = _stored_hash(idx << level, h)
    for key, h in found.items():
        if len(h) != HASH_SIZE:
            first = key[1] << key[0]
            raise LogCorrupted(f"entry {first}: a stored tree hash over it is not {HASH_SIZE} bytes")
    missing = wanted - found.keys()
    if missing:
        raise LogCorrupted(f"stored tree nodes are missing: {sorted(missing)[:5]}")
    return found


def _reader(conn: Connection) -> NodeReader:
    return lambda keys: read_nodes(conn, keys)


def _load_frontier(conn: Connection, size: int) -> CompactRange:
    keys = frontier_nodes(size)
    found = read_nodes(conn, keys)
    return CompactRange(size, [found[k] for k in keys])


def _root(conn: Connection, size: int) -> bytes:
    if size == 0:
        return EMPTY_ROOT
    return hashes_for_ranges([(0, size)], _reader(conn))[0]


def _latest_checkpoint(conn: Connection) -> StoredCheckpoint | None:
    row = conn.execute(
        select(*(raw(c).label(c.name) for c in checkpoints.c))
        .order_by(checkpoints.c.tree_size.desc(), checkpoints.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    root = as_bytes(row.root_hash)
    size = row.tree_size
    try:
        created = decode(checkpoints.c.created_at, row.created_at, conn)
    except (TypeError, ValueError, AttributeError):
        created = None
    if not isinstance(size, int) or root is None or not isinstance(row.note, str) or created is None:
        raise LogCorrupted(f"stored checkpoint #{row.id} is not a checkpoint row")
    return StoredCheckpoint(size, root, row.note, created)


# -- reading rows that may not be what the log wrote ----------------------------------------------
#
# On SQLite a column holds whatever was written to it (text in a BLOB column, an integer, NULL where
# the schema says NOT NULL once the constraint is bypassed). The log never writes such rows; someone
# with the file can. Reads go through these so that garbage is a finding, not a TypeError.


def raw(column: Any) -> Any:
    """``column`` without result processing: the value exactly as the driver returns it."""
    return type_coerce(column, NullType())


def as_bytes(value: Any) -> bytes | None:
    """``value`` if it is bytes (or a buffer the driver returns for bytes), else None."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return None


def decode(column: Any, value: Any, conn: Connection) -> Any:
    """A raw value as ``column``'s type would return it; raises TypeError/ValueError on garbage."""
    column_type: TypeEngine[Any] = column.type
    processor = column_type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)
    return value if processor is None else processor(value)


def checked_entry(index: int, value: Any) -> LogEntry:
    """A ``LogEntry`` from a stored ``leaf_data``; ``LogCorrupted`` unless it is bytes of a JSON object."""
    data = as_bytes(value)
    if data is None:
        raise LogCorrupted(f"entry {index}: its stored data is not bytes")
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError) as e:
        raise LogCorrupted(f"entry {index}: its stored data is not JSON") from e
    if not isinstance(parsed, dict):
        raise LogCorrupted(f"entry {index}: its stored data is not a JSON object")
    return LogEntry(index, data)


def _stored_hash(first: Any, value: Any) -> bytes:
    h = as_bytes(value)
    if h is None:
        raise LogCorrupted(f"entry {first}: a stored tree hash over it is not bytes")
    return h
