"""Whole-log verification: the stored log, an offline export, and checkpoint consistency for witnesses."""

from __future__ import annotations

import base64
import binascii
import bisect
import datetime as dt
import gc
import hashlib
import json
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, func, inspect, select

from audit._internal import schema as _schema
from audit._internal.columns import ENTRY_COLUMNS, extract_rows, parse_leaf, sqlite_time_text
from audit._internal.errors import InvalidNote
from audit._internal.merkle import (
    EMPTY_ROOT,
    CompactRange,
    NodeKey,
    fold,
    leaf_hash,
    perfect_levels,
    range_nodes,
    verify_consistency,
)
from audit._internal.note import Checkpoint, NoteVerifier, open_note, parse_checkpoint, parse_verifier_key
from audit._internal.schema import (
    checkpoints,
    entries,
    entry_agencies,
    entry_subjects,
    nodes,
    subject_runs,
)
from audit._internal.store import LogEntry, SqlAuditStore, _read_size, as_bytes, decode, raw

Progress = Callable[[int], None]
"""Called as ``progress(entries_checked)`` while a verification runs, and once at the end."""

VerifierKeys = str | NoteVerifier | Sequence[str | NoteVerifier]
"""One verifier key, or several (the current key and earlier, rotated-out ones)."""


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of a verification, with the reason.

    ``first_bad_index`` is the lowest index that cannot be vouched for: exact when an entry's bytes,
    stored hash or search columns are wrong or it is missing; the first leaf of the subtree when only a
    stored tree node is wrong; and, when the log was rewritten with every hash fixed (only a signed
    checkpoint shows that), the size of the last checkpoint that still matches. None when no index is
    to blame. ``reason`` explains the verdict; ``problems`` lists everything found.
    """

    ok: bool
    size: int
    first_bad_index: int | None
    reason: str
    root: bytes | None = None
    checkpoints: int = 0
    problems: tuple[str, ...] = field(default=())


def _verifiers(keys: VerifierKeys) -> list[NoteVerifier]:
    items: Sequence[str | NoteVerifier] = [keys] if isinstance(keys, str | NoteVerifier) else keys
    return [k if isinstance(k, NoteVerifier) else parse_verifier_key(k) for k in items]


def _open_checkpoint(note: str, verifiers: Sequence[NoteVerifier]) -> Checkpoint:
    text, signed_by = open_note(note, verifiers)
    checkpoint = parse_checkpoint(text)
    if checkpoint.origin not in {v.name for v in signed_by}:
        raise InvalidNote(
            f"checkpoint origin {checkpoint.origin!r} is not the name of the key that signed it"
        )
    return checkpoint


class _Findings:
    """Problems found so far; the verdict names the one with the lowest index."""

    def __init__(self) -> None:
        self.items: list[tuple[int | None, str]] = []

    def add(self, index: int | None, reason: str) -> None:
        self.items.append((index, reason))

    def __bool__(self) -> bool:
        return bool(self.items)

    def result(self, size: int, root: bytes | None, checked: int, ok_reason: str) -> VerifyResult:
        if not self.items:
            return VerifyResult(True, size, None, ok_reason, root, checked)
        indexed = [item for item in self.items if item[0] is not None]
        first_index, reason = min(indexed, key=lambda item: item[0] or 0) if indexed else self.items[0]
        return VerifyResult(False, size, first_index, reason, None, checked, tuple(r for _, r in self.items))


def verify_log(
    source: SqlAuditStore | Engine,
    verifier_key: VerifierKeys,
    *,
    trusted_checkpoints: Iterable[str] = (),
    batch_size: int = 5000,
    progress: Progress | None = None,
    workers: int | None = None,
) -> VerifyResult:
    """Check the stored log from its leaf bytes up, and against every checkpoint it signed.

    Recomputes each leaf hash from ``leaf_data`` and compares it with the stored one; re-derives the
    search columns (an edited index could hide entries from a privacy officer's search); recomputes
    every perfect subtree and compares it with the stored node; and checks that each checkpoint, stored
    or in ``trusted_checkpoints`` (notes kept outside the database, e.g. by a witness), carries a valid
    signature and signs the recomputed root at its size. Only those outside checkpoints catch a log that
    was rewritten together with its stored checkpoints.

    A large log is checked by ``workers`` processes (default: one per CPU, for logs of at least two
    chunks of ``2**16`` entries; 1 checks in this process), each taking aligned chunks of the log and
    returning the hashes the tree needs from them; this process combines them in order and makes the
    same checks, with the same verdict, as a single process would. Processes are started by fork:
    call it from a program that has no other threads running (the command line does).
    """
    engine = source.engine if isinstance(source, SqlAuditStore) else source
    verifiers = _verifiers(verifier_key)
    findings = _Findings()

    with engine.connect() as conn:
        # Checkpoints first, then the size: appends may go on meanwhile, and this order guarantees every
        # checkpoint read is within the size read. Nodes are counted up to that size for the same reason.
        stored = conn.execute(
            select(
                checkpoints.c.id,
                raw(checkpoints.c.tree_size).label("tree_size"),
                raw(checkpoints.c.root_hash).label("root_hash"),
                raw(checkpoints.c.note).label("note"),
                raw(checkpoints.c.created_at).label("created_at"),
            ).order_by(checkpoints.c.id)
        ).all()
        created = [_decodes(conn, checkpoints.c.created_at, row.created_at, dt.datetime) for row in stored]
        size = _read_size(conn)
        # Indexes start at 0; a row below that would be outside the tree yet found by a search.
        stray = int(conn.execute(select(func.count()).where(entries.c.idx < 0)).scalar_one())
        node_count = int(
            conn.execute(
                select(func.count())
                .select_from(nodes)
                .where(((nodes.c.idx + 1).op("<<")(nodes.c.level)) <= size)
            ).scalar_one()
        )

    if stray:
        findings.add(None, f"audit_entries holds {stray} rows with a negative index")
    claims: list[tuple[int, bytes, str]] = []
    for row, created_ok in zip(stored, created, strict=True):
        label = f"stored checkpoint #{row.id}"
        if not created_ok:
            findings.add(None, f"{label}: its created_at is {_kind(row.created_at)}, not a timestamp")
        if not isinstance(row.note, str):
            findings.add(None, f"{label} does not verify: its note is {_kind(row.note)}, not text")
            continue
        try:
            cp = _open_checkpoint(row.note, verifiers)
        except InvalidNote as e:
            findings.add(None, f"{label} does not verify: {e}")
            continue
        if type(row.tree_size) is not int or cp.size != row.tree_size or cp.root != as_bytes(row.root_hash):
            findings.add(None, f"{label}: its size or root columns differ from its signed note")
        claims.append((cp.size, cp.root, label))
    for n, note in enumerate(trusted_checkpoints, 1):
        label = f"trusted checkpoint {n}"
        try:
            cp = _open_checkpoint(note, verifiers)
        except InvalidNote as e:
            findings.add(None, f"{label} does not verify: {e}")
            continue
        claims.append((cp.size, cp.root, label))

    wanted = {s for s, _, _ in claims}
    roots_at: dict[int, bytes] = {0: EMPTY_ROOT}
    frontier, stopped = _check_chunks(
        engine, size, _processes(workers, size), batch_size, wanted, roots_at, findings, progress
    )

    verified = frontier.size
    if not stopped and node_count != size - size.bit_count():
        findings.add(
            None,
            f"audit_nodes holds {node_count} rows; a tree of {size} leaves has {size - size.bit_count()}",
        )

    # A bad entry or node pinpoints more than a checkpoint can; a checkpoint mismatch only sets the
    # verdict when nothing found below its size explains it (e.g. a rewrite that fixed every hash).
    local = [i for i, _ in findings.items if i is not None]
    first_local = min(local) if local else None
    matched: list[int] = [0]
    for claim_size, claim_root, label in sorted(claims, key=lambda c: c[0]):
        if claim_size > verified:
            if not stopped:
                findings.add(verified, f"{label} covers {claim_size} entries but the log holds {size}")
            continue
        if roots_at[claim_size] == claim_root:
            matched.append(claim_size)
            continue
        good = max(s for s in matched if s < claim_size) if claim_size > 0 else 0
        explained = first_local is not None and first_local < claim_size
        findings.add(
            None if explained else good,
            f"{label}: the root of the first {claim_size} entries differs from the signed root; "
            f"an entry in [{good}, {claim_size}) was changed or the log was rewritten",
        )

    root = frontier.root() if not stopped else None
    return findings.result(size, root, len(claims), f"{size} entries and {len(claims)} checkpoints verify")


_CHUNK_LEVEL = 16
"""The log is checked in chunks of ``2**_CHUNK_LEVEL`` entries, aligned so that each full chunk is one
perfect subtree of the log's tree (by worker processes, or one after another in this process)."""

_forked_engine: Engine | None = None


def _processes(workers: int | None, size: int) -> int:
    if workers is None:
        if size < 2 << _CHUNK_LEVEL:
            return 1
        workers = min(os.cpu_count() or 1, 8)
    return max(1, min(workers, -(-size >> _CHUNK_LEVEL) if size else 1))


@dataclass(frozen=True)
class _ChunkResult:
    stopped: bool
    checked: int  # entries of the chunk that verify, from its start
    findings: list[tuple[int | None, str]]
    ranges: dict[int, list[bytes]]  # for each wanted size in the chunk: the chunk's subtrees up to it
    end: list[bytes]  # the chunk's subtrees up to ``checked``


def _check_chunks(
    engine: Engine,
    size: int,
    processes: int,
    batch_size: int,
    wanted: set[int],
    roots_at: dict[int, bytes],
    findings: _Findings,
    progress: Progress | None,
) -> tuple[CompactRange, bool]:
    """Check ``[0, size)`` chunk by chunk, over ``processes`` workers or in this process (1).

    Returns the verified tree and whether the check stopped at a problem. Either way each chunk is
    checked by ``_check_span`` and the chunks are combined here in order, so both give the same verdict.
    """
    chunk = 1 << _CHUNK_LEVEL
    starts = range(0, size, chunk)

    def wanted_in(lo: int, hi: int) -> list[int]:
        return sorted(s for s in wanted if lo < s <= hi)

    if processes <= 1:
        results = (
            (lo, _check_span(engine, lo, min(lo + chunk, size), wanted_in(lo, lo + chunk), batch_size))
            for lo in starts
        )
        return _combine(engine, results, roots_at, findings, progress)

    global _forked_engine
    _forked_engine = engine
    fork = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(processes, mp_context=fork, initializer=_init_worker)
    try:
        return _combine(
            engine,
            _pooled(pool, processes, starts, size, wanted_in, batch_size),
            roots_at,
            findings,
            progress,
        )
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _forked_engine = None


def _pooled(
    pool: ProcessPoolExecutor,
    processes: int,
    starts: range,
    size: int,
    wanted_in: Callable[[int, int], list[int]],
    batch_size: int,
) -> Iterator[tuple[int, _ChunkResult]]:
    """The chunks' results in order, from a bounded window of chunks in flight.

    The size is read from the log, which may be damaged (an index of 2**62), so the chunks are never
    all listed up front; the caller stops reading at the first chunk that does not verify to its end.
    """
    chunk = 1 << _CHUNK_LEVEL
    window: deque[tuple[int, Future[_ChunkResult]]] = deque()
    pending = iter(starts)

    def submit_next() -> None:
        lo = next(pending, None)
        if lo is not None:
            hi = min(lo + chunk, size)
            window.append((lo, pool.submit(_check_chunk, lo, hi, wanted_in(lo, hi), batch_size)))

    for _ in range(2 * processes):
        submit_next()
    while window:
        lo, future = window.popleft()
        submit_next()
        yield lo, future.result()


def _combine(
    engine: Engine,
    results: Iterable[tuple[int, _ChunkResult]],
    roots_at: dict[int, bytes],
    findings: _Findings,
    progress: Progress | None,
) -> tuple[CompactRange, bool]:
    """Join the chunks' trees in order; check the stored nodes above the chunks, the roots wanted."""
    chunk = 1 << _CHUNK_LEVEL
    frontier = CompactRange()
    for lo, result in results:
        before = frontier.hashes()
        for at, hashes in result.ranges.items():
            roots_at[at] = fold(before + hashes)
        for index, reason in result.findings:
            findings.add(index, reason)
        if result.checked < chunk:
            # The last chunk, or one with a bad entry: the verified tree ends within it.
            frontier = CompactRange(lo + result.checked, before + result.end)
            if progress is not None:
                progress(frontier.size)
            return frontier, result.stopped
        [top] = result.end
        created = frontier.append_subtree(_CHUNK_LEVEL, top)
        if result.stopped:
            return frontier, True  # a bad node within the chunk, found once all of it was read
        if created:
            with engine.connect() as conn:
                if _check_nodes(conn, created, findings):
                    return frontier, True
        if progress is not None:
            progress(frontier.size)
    return frontier, False


def _init_worker() -> None:
    # The parent's pooled connections are the parent's: a forked child must not use or close them.
    if _forked_engine is not None:
        _forked_engine.dispose(close=False)
    # A worker only checks chunks and exits; what it makes has no cycles, and the collector's passes
    # over a chunk's rows (hundreds of thousands of tuples) cost it about a tenth of its time. Only in a
    # worker: in a single process (a gateway's console thread) the collector is the program's.
    gc.disable()


def _check_chunk(lo: int, hi: int, wanted: list[int], batch_size: int) -> _ChunkResult:
    """In a worker: ``_check_span`` on the engine the parent forked with."""
    engine = _forked_engine
    if engine is None:
        raise RuntimeError("no engine in this worker")
    return _check_span(engine, lo, hi, wanted, batch_size)


def _check_span(engine: Engine, lo: int, hi: int, wanted: list[int], batch_size: int) -> _ChunkResult:
    """Check entries ``[lo, hi)`` (``lo`` aligned to the chunk size, ``hi - lo`` at most a chunk).

    Entries batch by batch up to the first that does not verify; then the tree over the entries that
    do, level by level (``perfect_levels``), against the stored nodes within the chunk, one range per
    level. A stored node that is wrong is named by the first leaf under it, the smallest wrong subtree
    in the order the tree grew; as every node checked lies over verified entries, that index is below
    any bad entry's. ``ranges`` and ``end`` are the compact ranges the caller joins to its tree.
    """
    findings = _Findings()
    leaves: list[bytes] = []
    subjects: list[_Row] = []
    stopped, low = False, lo
    with engine.connect() as conn:
        sqlite_time = conn.dialect.name == "sqlite"
        while low < hi and not stopped:
            high = min(low + batch_size, hi)
            stopped = _check_entries(conn, sqlite_time, low, high, lo, leaves, findings, subjects)
            low = high
        levels = perfect_levels(leaves)
        if _check_levels(conn, lo, levels, findings):
            stopped = True
        _check_runs(conn, lo, lo + len(leaves), subjects, findings)
    checked = len(leaves)

    def subtrees(count: int) -> list[bytes]:
        return [levels[level][i] for level, i in range_nodes(0, count)]

    ranges = {at: subtrees(at - lo) for at in wanted if at - lo <= checked}
    return _ChunkResult(stopped, checked, findings.items, ranges, subtrees(checked))


def _check_entries(
    conn: Connection,
    sqlite_time: bool,
    low: int,
    high: int,
    base: int,
    leaves: list[bytes],
    findings: _Findings,
    subjects: list[_Row],
) -> bool:
    """Check entries ``[low, high)``, appending their leaf hashes to ``leaves`` and, when they all
    verify, their subject rows to ``subjects``; True at a bad entry.

    ``leaves`` holds the hashes from ``base`` (a chunk's start) up to ``low``. The batch's rows are
    compared as a whole with the rows its leaves give (entries, agencies, subjects: three list
    comparisons in C); only a batch where they differ goes through the entry-by-entry checks of
    ``_check_rows``, which name the entry and the column.
    """
    rows, agency_rows, subject_rows = _read_batch(conn, low, high)
    hashes = _derived_hashes(sqlite_time, low, high, rows, agency_rows, subject_rows)
    if hashes is None:
        return _check_rows(conn, high, rows, agency_rows, subject_rows, leaves, findings, base)
    leaves.extend(hashes)
    subjects.extend(subject_rows)
    return False


def _check_runs(conn: Connection, lo: int, verified: int, subjects: list[_Row], findings: _Findings) -> None:
    """The sealed subject runs of ``[lo, verified)`` against the subject rows of those entries.

    A search by person reads ``audit_subject_runs`` for the entries before the last run's end: a run
    that lost, gained or moved a row hides an entry from that search or names one that is not the
    person's. Each run holds the rows of the ``SUBJECT_RUN`` entries below its end (a multiple of it; a
    chunk's size is a multiple of the run's, so each run lies in one chunk): every whole block up to the
    last run's end must equal its entries' subject rows (an empty block has none). ``subjects`` are the
    verified rows ``(idx, pseudonym)`` in index order. The rows are compared as sets of
    ``(run_end, pseudonym, idx)`` (both tables' primary keys make them distinct; the counts are compared
    too), so no sort is needed on either side.
    """
    run = _schema.SUBJECT_RUN
    if not inspect(conn).has_table(subject_runs.name):
        return  # a log from before migration 0009: searches read audit_entry_subjects alone
    last = conn.execute(select(func.max(subject_runs.c.run_end))).scalar()
    if last is None:
        return
    limit = min(int(last), verified // run * run) if type(last) is int else verified // run * run
    upto = bisect.bisect_left(subjects, limit, key=_first)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    dbapi: Any = conn.connection.dbapi_connection
    cursor = dbapi.cursor()
    try:
        # First in the database alone (about 1.5 us an entry): as many rows as the blocks' entries have
        # subject rows, none outside its block, each one of those rows. Distinct by the primary keys, so
        # that is the same set. Only a chunk that fails this is compared row by row, to name the entry.
        span = (run, run, run, lo, verified)
        cursor.execute(_RUNS_AGREE.replace("?", mark), span)
        count, misplaced, unknown = cursor.fetchone()
        if (count, misplaced, unknown) == (upto, 0, 0):
            return
        cursor.execute(f"{_SELECT_RUNS} WHERE run_end > {mark} AND run_end <= {mark}", (lo, verified))
        stored = cursor.fetchall()
    finally:
        cursor.close()
    expected = {(i - i % run + run, p, i) for i, p in subjects[:upto]}
    got = set(stored)
    if len(got) == len(stored) == len(expected) and got == expected:
        return
    wrong = [row for row in got ^ expected if type(row[2]) is int]
    first = min((row[2] for row in wrong), default=lo)
    end = next((row[0] for row in sorted(wrong, key=lambda r: r[2]) if row[2] == first), None)
    findings.add(
        max(first, lo),
        f"audit_subject_runs: the run ending at {end!r} differs from the subject rows of the entries it "
        "covers (a search by person would miss an entry or name a wrong one)",
    )


def _first(row: _Row) -> Any:
    return row[0]


_Row = tuple[Any, ...]


def _read_batch(conn: Connection, low: int, high: int) -> tuple[list[_Row], list[_Row], list[_Row]]:
    """The raw rows of entries ``[low, high)``: the entries in index order, their agencies and subjects.

    Raw values through the driver's own cursor: on SQLite a column holds whatever was written to it,
    and a type's result processing (a timestamp parser, say) would raise on garbage before any check
    could name the entry; plain tuples also cost a fraction of SQLAlchemy's rows. The side tables come
    in their primary key's order, which on SQLite is the order ``extract_rows`` sorts them in (and
    costs nothing: the rows lie in that order); on other databases a collation may differ, and the
    comparison sorts them when it must.
    """
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    span = f"WHERE idx >= {mark} AND idx < {mark}"
    dbapi: Any = conn.connection.dbapi_connection
    cursor = dbapi.cursor()
    try:
        cursor.execute(f"{_SELECT_ENTRIES} {span} ORDER BY idx", (low, high))
        rows = cursor.fetchall()
        cursor.execute(f"{_SELECT_AGENCIES} {span} ORDER BY idx, agency, role", (low, high))
        agency_rows = cursor.fetchall()
        cursor.execute(f"{_SELECT_SUBJECTS} {span} ORDER BY idx, pseudonym", (low, high))
        subject_rows = cursor.fetchall()
    finally:
        cursor.close()
    return rows, agency_rows, subject_rows


# Names are the schema's own constants, never input.
_SELECT_ENTRIES = f"SELECT idx, leaf_data, leaf_hash, {', '.join(ENTRY_COLUMNS)} FROM {entries.name}"  # noqa: S608
_SELECT_AGENCIES = f"SELECT idx, agency, role FROM {entry_agencies.name}"  # noqa: S608
_SELECT_SUBJECTS = f"SELECT idx, pseudonym FROM {entry_subjects.name}"  # noqa: S608
_SELECT_RUNS = f"SELECT run_end, pseudonym, idx FROM {subject_runs.name}"  # noqa: S608
_RUNS_AGREE = (
    "SELECT count(*),"  # noqa: S608 (the schema's own table names)
    " coalesce(sum(CASE WHEN r.idx < r.run_end - ? OR r.run_end / ? * ? <> r.run_end THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN NOT EXISTS (SELECT 1 FROM"
    f" {entry_subjects.name} s WHERE s.idx = r.idx AND s.pseudonym = r.pseudonym) THEN 1 ELSE 0 END), 0)"
    f" FROM {subject_runs.name} r WHERE r.run_end > ? AND r.run_end <= ?"
)


def _derived_hashes(
    sqlite_time: bool,
    low: int,
    high: int,
    rows: list[_Row],
    agency_rows: list[_Row],
    subject_rows: list[_Row],
) -> list[bytes] | None:
    """The leaf hashes of ``[low, high)`` if every stored row is exactly what its leaf gives, else None.

    None says only "look closer": ``_check_rows`` then decides, by the column types' own decoding, what
    (if anything) is wrong. Exact equality of values of the same types is what the store writes; the
    derived values are strings, None and (as the driver returns them) timestamps, which compare equal
    to nothing of another type. Each entry's row is compared as soon as its leaf is parsed (while it is
    in the cache, and without building the derived row); the side tables' rows as two lists at the end.
    """
    if len(rows) != high - low:
        return None
    sha256 = hashlib.sha256
    loads, refused = orjson.loads, orjson.JSONDecodeError
    agencies: list[_Row] = []
    subjects: list[_Row] = []
    hashes: list[bytes] = []
    add_agency, add_subject, add_hash = agencies.append, subjects.append, hashes.append
    index = low
    for row in rows:
        data = row[1]
        if type(data) is not bytes:
            return None
        h = sha256(b"\x00" + data).digest()
        # parse_leaf, inlined: orjson, and where it refuses the full rules of _derive.
        try:
            parsed = loads(data)
        except refused:
            values, derived_agencies, derived_subjects = _derive(data, sqlite_time)
        else:
            values, derived_agencies, derived_subjects = extract_rows(
                parsed if type(parsed) is dict else _EMPTY, sqlite_time=sqlite_time
            )
        if row[0] != index or row[2] != h or row[3:] != values:
            return None
        for agency, role in derived_agencies:
            add_agency((index, agency, role))
        for pseudonym in derived_subjects:
            add_subject((index, pseudonym))
        add_hash(h)
        index += 1
    if agency_rows == agencies and subject_rows == subjects:
        return hashes
    try:
        # In another order than the derived rows' (idx, value) order (a collation): sorted, then equal?
        if sorted(agency_rows) != agencies or sorted(subject_rows) != subjects:
            return None
    except TypeError:  # garbage of mixed types that cannot even be sorted
        return None
    return hashes


_EMPTY: dict[str, Any] = {}


def _check_rows(
    conn: Connection,
    high: int,
    rows: list[_Row],
    agency_rows: list[_Row],
    subject_rows: list[_Row],
    leaves: list[bytes],
    findings: _Findings,
    base: int,
) -> bool:
    """``_check_entries`` entry by entry: the first entry that does not verify is named, with the reason."""
    agencies: dict[int, set[tuple[Any, Any]]] = {}
    for idx, agency, role in agency_rows:
        agencies.setdefault(idx, set()).add((agency, role))
    subjects: dict[int, set[Any]] = {}
    for idx, pseudonym in subject_rows:
        subjects.setdefault(idx, set()).add(pseudonym)

    stored_as = _stored_form(conn)
    no_agencies: set[tuple[Any, Any]] = set()
    no_subjects: set[Any] = set()
    for row in rows:
        index = base + len(leaves)
        if row[0] != index:
            findings.add(index, f"entry {index} is missing (the next stored entry is {row[0]})")
            return True
        data, stored_hash = as_bytes(row[1]), as_bytes(row[2])
        if data is None or stored_hash is None:
            column, value = ("leaf_data", row[1]) if data is None else ("leaf_hash", row[2])
            findings.add(index, f"entry {index}: its {column} is {_kind(value)}, not bytes")
            return True
        h = leaf_hash(data)
        if h != stored_hash:
            findings.add(index, f"entry {index}: its stored leaf hash does not match its data")
            return True
        values, derived_agencies, derived_subjects = _derive(data)
        stored = row[3:]
        # Fast path: the stored values are exactly what the store writes for these columns. Anything
        # else is decided by the column types' own decoding, which names the wrong columns.
        expected = stored_as(values)
        if stored != expected or not all(map(_same_kind, stored, expected)):
            wrong = sorted(
                col
                for col, stored_value, value in zip(ENTRY_COLUMNS, stored, values, strict=True)
                if not _same(conn, col, stored_value, value)
            )
        else:
            wrong = []
        if set(derived_agencies) != agencies.get(index, no_agencies):
            wrong.append("agencies")
        if set(derived_subjects) != subjects.get(index, no_subjects):
            wrong.append("subjects")
        if wrong:
            findings.add(
                index, f"entry {index}: its search columns ({', '.join(wrong)}) do not match its data"
            )
            return True
        leaves.append(h)
    if base + len(leaves) < high:
        # Rows stop short of the batch end although the log goes on: the rest are missing. Name the
        # next stored entry as when it falls within the batch, wherever the batch happens to end.
        missing = base + len(leaves)
        after = conn.execute(select(func.min(entries.c.idx)).where(entries.c.idx > missing)).scalar()
        next_one = "" if after is None else f" (the next stored entry is {after})"
        findings.add(missing, f"entry {missing} is missing{next_one}")
        return True
    return False


_TIME = ENTRY_COLUMNS.index("entry_time")


def _derive(
    data: bytes, sqlite_time: bool = False
) -> tuple[tuple[Any, ...], list[tuple[str, str]], list[str]]:
    """The search rows a leaf's bytes give (none for a leaf that is not a JSON object)."""
    try:
        parsed = parse_leaf(data)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        parsed = None
    return extract_rows(parsed if isinstance(parsed, dict) else {}, sqlite_time=sqlite_time)


def _stored_form(conn: Connection) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """Derived column values as the driver returns them raw: on SQLite a timestamp is text."""
    if conn.dialect.name != "sqlite":
        return lambda values: values
    return lambda values: (*values[:_TIME], sqlite_time_text(values[_TIME]), *values[_TIME + 1 :])


def _same_kind(stored: Any, derived: Any) -> bool:
    return type(stored) is type(derived)


def _check_levels(conn: Connection, lo: int, levels: list[list[bytes]], findings: _Findings) -> bool:
    """Compare a chunk's perfect subtrees (``perfect_levels`` of its leaves from ``lo``) with the stored
    ``audit_nodes`` rows, one range per level and one list comparison each; True if one is wrong."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    query = (
        f"SELECT idx, hash FROM {nodes.name} "  # noqa: S608 (the schema's name, placeholders only)
        f"WHERE level = {mark} AND idx >= {mark} AND idx < {mark} ORDER BY idx"
    )
    differ: list[tuple[int, list[_Row]]] = []
    dbapi: Any = conn.connection.dbapi_connection
    cursor = dbapi.cursor()
    try:
        for level in range(1, len(levels)):
            hashes = levels[level]
            first = lo >> level
            cursor.execute(query, (level, first, first + len(hashes)))
            rows = cursor.fetchall()
            if rows != list(zip(range(first, first + len(hashes)), hashes, strict=True)):
                differ.append((level, rows))
    finally:
        cursor.close()
    wrong: list[tuple[int, int, bool]] = []
    for level, rows in differ:
        stored = {i: as_bytes(h) for i, h in rows}
        first = lo >> level
        for i, h in enumerate(levels[level], first):
            got = stored.get(i)
            if got != h:
                wrong.append((level, i, got is None))
    if not wrong:
        return False  # only rows outside the tree differ: the count of audit_nodes says so
    # In the order the tree grew: the smallest wrong subtree is the one that says most about where.
    level, i, missing = min(wrong, key=lambda w: ((w[1] + 1) << w[0], w[0]))
    _node_finding(findings, level, i, missing)
    return True


def _node_finding(findings: _Findings, level: int, i: int, missing: bool) -> None:
    first, last = i << level, ((i + 1) << level) - 1
    what = "is missing" if missing else "does not match the entries"
    findings.add(first, f"stored tree node over entries {first}..{last} {what}")


def _check_nodes(conn: Connection, produced: list[tuple[int, int, bytes]], findings: _Findings) -> bool:
    """Compare recomputed perfect subtrees with the stored ``audit_nodes`` rows; True if one is wrong."""
    if not produced:
        return False
    ordered = sorted(produced)  # by (level, idx): the primary key's order
    # A batch of leaves completes a contiguous run of nodes on each level: one range per level.
    spans: dict[int, tuple[int, int]] = {}
    for level, i, _h in ordered:
        spans[level] = (spans[level][0], i) if level in spans else (i, i)
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    terms = " OR ".join([f"(level = {mark} AND idx >= {mark} AND idx <= {mark})"] * len(spans))
    params = tuple(v for level, (lo, hi) in spans.items() for v in (level, lo, hi))
    dbapi: Any = conn.connection.dbapi_connection
    cursor = dbapi.cursor()
    try:
        # Names are the schema's own, placeholders only; the driver's tuples, fetched in one call.
        cursor.execute(
            f"SELECT level, idx, hash FROM {nodes.name} WHERE {terms} ORDER BY level, idx",  # noqa: S608
            params,
        )
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if rows == ordered:
        return False
    expected: dict[NodeKey, bytes] = {(level, i): h for level, i, h in produced}
    stored = {(level, i): as_bytes(h) for level, i, h in rows}
    # In the order the tree grew: the smallest wrong subtree is the one that says most about where.
    for (level, i), h in sorted(expected.items(), key=lambda kv: ((kv[0][1] + 1) << kv[0][0], kv[0][0])):
        got = stored.get((level, i))
        if got != h:
            _node_finding(findings, level, i, got is None)
            return True
    return False


def _kind(value: Any) -> str:
    """What a stored value is, without showing it (garbage may be someone's personal data)."""
    if value is None:
        return "NULL"
    names = {bytes: "bytes", str: "text", int: "an integer", float: "a real number"}
    return names.get(type(value), type(value).__name__)


def _decoded(conn: Connection, column: Any, stored: Any) -> tuple[bool, Any]:
    """``(True, value)`` when a raw value decodes as ``column``'s type, else ``(False, None)``."""
    try:
        return True, decode(column, stored, conn)
    except (TypeError, ValueError, AttributeError, OverflowError):
        return False, None


def _decodes(conn: Connection, column: Any, stored: Any, kind: type) -> bool:
    """Whether a raw value is a ``kind`` once decoded as ``column``'s type."""
    ok, value = _decoded(conn, column, stored)
    return ok and isinstance(value, kind)


def _same(conn: Connection, column: str, stored: Any, derived: Any) -> bool:
    """Whether a stored search column holds the value derived from the leaf (False for garbage)."""
    ok, value = _decoded(conn, entries.c[column], stored)
    return ok and type(value) is type(derived) and bool(value == derived)


def export_lines(items: Iterable[LogEntry]) -> Iterator[str]:
    """NDJSON export lines ``{"index":i,"leafData":"<base64>"}\\n`` for ``verify_export``."""
    for item in items:
        yield item.export_line()


def _parse_line(line: str | bytes) -> tuple[int, bytes]:
    obj: Any = json.loads(line)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    index, data = obj.get("index"), obj.get("leafData")
    if not isinstance(index, int) or isinstance(index, bool) or not isinstance(data, str):
        raise ValueError("needs an integer index and a base64 leafData")
    return index, base64.b64decode(data, validate=True)


def verify_export(
    lines: Iterable[str | bytes],
    checkpoint_text: str,
    verifier_key: VerifierKeys,
    progress: Progress | None = None,
) -> VerifyResult:
    """Check an NDJSON export offline: its first entries must hash to the signed checkpoint's root.

    Lines are ``{"index": i, "leafData": "<base64>"}``, indexes counting from 0 without gaps; blank
    lines are skipped. Lines past the checkpoint's size are allowed (the export may be newer) but are
    not covered by it, and the reason says so.
    """
    try:
        cp = _open_checkpoint(checkpoint_text, _verifiers(verifier_key))
    except InvalidNote as e:
        return VerifyResult(False, 0, None, f"the checkpoint does not verify: {e}")
    findings = _Findings()
    frontier = CompactRange()
    beyond = 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if frontier.size >= cp.size:
            beyond += 1
            continue
        try:
            index, data = _parse_line(line)
        except (ValueError, binascii.Error, RecursionError) as e:
            findings.add(frontier.size, f"line {number} is not an export line: {e}")
            break
        if index != frontier.size:
            findings.add(
                frontier.size, f"line {number} holds entry {index} where entry {frontier.size} belongs"
            )
            break
        frontier.append(leaf_hash(data))
        if progress is not None and frontier.size % 10_000 == 0:
            progress(frontier.size)
    if not findings and frontier.size < cp.size:
        findings.add(
            frontier.size, f"the export ends after {frontier.size} entries; the checkpoint covers {cp.size}"
        )
    root = frontier.root()
    if not findings and root != cp.root:
        findings.add(None, f"the {cp.size} exported entries do not hash to the checkpoint's root")
    if progress is not None:
        progress(frontier.size)
    note = f"; {beyond} later entries are not covered by the checkpoint" if beyond else ""
    return findings.result(
        cp.size, root if not findings else None, 1, f"{cp.size} entries match the checkpoint{note}"
    )


def check_consistency(
    old_checkpoint: str, new_checkpoint: str, proof: Sequence[bytes], verifier_key: VerifierKeys
) -> Checkpoint:
    """For a witness: verify both signed checkpoints and that the new one extends the old one.

    Returns the new checkpoint. Raises ``InvalidNote`` (bad signature, other origin) or ``InvalidProof``
    (the log was forked or rewritten between the two, or the proof is wrong).
    """
    verifiers = _verifiers(verifier_key)
    old = _open_checkpoint(old_checkpoint, verifiers)
    new = _open_checkpoint(new_checkpoint, verifiers)
    if old.origin != new.origin:
        raise InvalidNote(f"checkpoints of different logs: {old.origin!r} and {new.origin!r}")
    verify_consistency(old.size, new.size, proof, old.root, new.root)
    return new
