"""Measure the audit log at national scale: appends, proofs, verification and privacy officers' queries.

    .venv/bin/python -m bench.audit_log --db var/bench/audit.db     # SQLite, 1,000,000 entries, kept
    .venv/bin/python -m bench.audit_log                             # SQLite in a temp dir (rebuilt)
    .venv/bin/python -m bench.audit_log --pg --pg-schema bench      # PostgreSQL, kept and reused
    .venv/bin/python -m bench.audit_log --size 100000 --quick       # a smaller run while developing

The log is built once with bulk appends (2000 entries per call, through ``SqlAuditStore.append``, so
every leaf, search row and tree node is written as in production; about 15 minutes for a million on a
busy 2-vCPU machine) and reused with ``--db``. Each figure is printed beside a baseline measured in the
same run on the same database (a primary-key SELECT for reads, a bare INSERT + COMMIT of the same bytes
for appends, reading the leaves and hashing them for verification) and beside the issue's target; the
results, with the machine's description and the load average before and after, are written to
``bench/results/audit_log-<date>.json`` (``--no-save`` to skip). Not a test: the numbers depend on the
machine, its disk and whatever else runs on it.

The entries follow the national workload: about 56,000 reports a year, some 18 audit entries per case,
spread over weeks; two or three people per case; five agencies, eight purposes, six information types,
four entry types; a year of timestamps; fresh trace ids and digests. Entries for the timed appends are
made before the clock starts (making them is the caller's work, not the log's).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import random
import resource
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rfc8785
import sqlalchemy as sa
from sqlalchemy import Engine, event

import audit
from bench._machine import describe, write_results

PG_URL = os.environ.get("AUDIT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AGENCIES = ["politie", "veilig_thuis", "om", "reclassering", "rvdk"]
PURPOSES = [
    "melding_behandelen",
    "veiligheid_beoordelen",
    "veiligheid_herstellen",
    "strafrechtelijk_onderzoek",
    "toezicht_uitvoeren",
    "advies_geven",
    "risico_taxeren",
    "zorg_organiseren",
]
INFO_TYPES = ["melding", "veiligheidsplan", "risicotaxatie", "strafblad", "zorgbeeld", "adviesrapport"]
TYPES = ["exchange"] * 12 + ["decision"] * 5 + ["case"] * 2 + ["delivery"]
ENTRIES_PER_CASE = 18
CASE_WINDOW = 36_000  # entries over which one case's entries are spread (about two weeks)
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SECONDS_PER_ENTRY = 365 * 24 * 3600 / 1_000_000  # a million entries is about one year


def case_of(n: int) -> int:
    """The case of entry ``n``: a window's cases interleave, each case has about 18 entries."""
    per_window = CASE_WINDOW // ENTRIES_PER_CASE
    return (n // CASE_WINDOW) * per_window + n % per_window


def subject(case: int, role: int) -> str:
    return hashlib.sha256(f"subject-{case}-{role}".encode()).hexdigest()


def time_of(n: int) -> dt.datetime:
    return START + dt.timedelta(seconds=n * SECONDS_PER_ENTRY)


def entry(n: int) -> dict[str, Any]:
    """A gateway-shaped entry (``gateway/trail.py``), deterministic in ``n`` except for its digests."""
    case = case_of(n)
    actor = AGENCIES[(n * 7 + case) % 5]
    purpose = PURPOSES[(case + n // 3) % len(PURPOSES)]
    allowed = n % 9 != 0
    return {
        "v": 1,
        "time": time_of(n).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "type": TYPES[n % len(TYPES)],
        "traceId": secrets.token_hex(16),
        "spanId": secrets.token_hex(8),
        "status": "ok",
        "actor": {"agency": actor, "clientId": f"{actor}-system"},
        "action": "share",
        "processingActivity": f"veilig-delen:{purpose}",
        "outcome": "authorised" if allowed else "refused",
        "caseId": f"case-{case:07d}",
        "step": "acuut/veiligheidsbeoordeling",
        "subjects": [subject(case, r) for r in range(2 + case % 2)],
        "informationType": INFO_TYPES[(n + case) % len(INFO_TYPES)],
        "purpose": purpose,
        "counterpart": AGENCIES[(n * 7 + case + 1 + n % 4) % 5],
        "decision": {
            "allowed": allowed,
            "reasons": [{"code": "participation", "message": "both take part in the step"}],
            "legalBasis": "Wmo 2015 art. 5.2.6",
            "policyRevision": "sha256:" + "3f" * 32,
        },
        "payloadDigest": "sha256:" + secrets.token_hex(32),
        "refs": {"shareId": f"{n:032x}"},
    }


# -- databases -------------------------------------------------------------------------------------


def sqlite_engine(path: Path) -> Engine:
    """As the gateway opens SQLite: WAL, synchronous=FULL, foreign keys."""
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    return engine


def open_store(engine: Engine, key_path: Path) -> audit.SqlAuditStore:
    """The tables as the gateway's migrations leave them, and a store with a kept key."""
    from gateway.migrations import upgrade

    upgrade(engine)
    key = audit.load_or_create_signing_key(key_path)
    return audit.SqlAuditStore(engine, audit.LogSigner(key, "bench.example/audit"))


# -- measuring ---------------------------------------------------------------------------------------


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f} ms"


def line(label: str, value: str, baseline: str = "") -> None:
    print(f"  {label:<66} {value:>14}   {baseline}")


FIGURES: list[dict[str, Any]] = []


def figure(
    name: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    baseline_what: str = "",
    target: str | None = None,
    met: bool | None = None,
) -> None:
    """Print one figure beside its baseline and target, and keep it for the JSON results."""
    shown = f"{value:10,.0f} {unit}" if unit.endswith("/s") else f"{value:9.3f} {unit}"
    base = ""
    if baseline is not None:
        base = (
            f"baseline {baseline:10,.0f} {unit}" if unit.endswith("/s") else f"baseline {baseline:.3f} {unit}"
        )
        base += f" ({baseline_what})" if baseline_what else ""
    goal = f"   target {target}: {'met' if met else 'NOT met'}" if target is not None else ""
    line(name, shown, base + goal)
    FIGURES.append(
        {
            "name": name,
            "value": round(value, 4),
            "unit": unit,
            "baseline": None if baseline is None else round(baseline, 4),
            "baselineWhat": baseline_what or None,
            "target": target,
            "met": met,
        }
    )


def heading(text: str) -> None:
    print(f"\n{text}")


# -- appends -----------------------------------------------------------------------------------------


@contextmanager
def scratch_table(engine: Engine) -> Iterator[sa.Table]:
    """A bare (idx, data) table: the baseline for appends, on the same database and disk."""
    md = sa.MetaData()
    table = sa.Table(
        f"bench_bare_{secrets.token_hex(3)}",
        md,
        sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    md.create_all(engine)
    try:
        yield table
    finally:
        md.drop_all(engine)


@contextmanager
def counting_commits(engine: Engine) -> Iterator[list[int]]:
    """Count the transactions committed on ``engine`` meanwhile (the group commit's batches)."""
    counted = [0]

    def count(_conn: Any) -> None:
        counted[0] += 1

    event.listen(engine, "commit", count)
    try:
        yield counted
    finally:
        event.remove(engine, "commit", count)


def bare_insert(engine: Engine, table: sa.Table, start: int, rows: list[bytes]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(table), [{"idx": start + i, "data": d} for i, d in enumerate(rows)])


def threaded(threads: int, calls: int, work: Callable[[int, int], None]) -> float:
    """``threads`` threads each call ``work(thread, call)`` ``calls`` times; returns the wall time."""
    barrier = threading.Barrier(threads + 1)

    def run(t: int) -> None:
        barrier.wait()
        for c in range(calls):
            work(t, c)

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    for p in pool:
        p.join()
    return time.perf_counter() - t0


def bench_appends(store: audit.SqlAuditStore, repeat: int) -> None:
    heading("Appends (each a durable commit; baseline: bare INSERT + COMMIT of the same bytes)")
    engine = store.engine
    counter = iter(range(10**9, 2 * 10**9))
    fresh = iter(range(5_000_000, 10**9))  # entry numbers: new traces, cases and times for every call
    with scratch_table(engine) as bare, scratch_table(engine) as mine:
        sample = [audit.canonical_json(entry(i)) for i in range(200)]

        made = [entry(next(fresh)) for _ in range(60 * repeat)]
        single = median_seconds(lambda: store.append([made.pop()]), 60 * repeat)
        base = median_seconds(lambda: bare_insert(engine, bare, next(counter), sample[:1]), 60 * repeat)
        figure("1 entry per call, 1 thread: median latency", single * 1e3, "ms", base * 1e3, "bare INSERT")

        calls = 3200
        for threads in (8, 32):
            per = calls // threads
            runs, bases = [], []
            commits: list[int] = []
            for _ in range(repeat):
                made = [entry(next(fresh)) for _ in range(per * threads)]
                with counting_commits(engine) as counted:
                    took = threaded(threads, per, lambda t, c, m=made, p=per: store.append([m[t * p + c]]))
                commits.append(counted[0])
                runs.append(per * threads / took)
                took = threaded(
                    threads, per, lambda _t, _c: bare_insert(engine, bare, next(counter), sample[:1])
                )
                bases.append(per * threads / took)
            goal = {"target": ">= 5,000/s", "met": statistics.median(runs) >= 5000} if threads == 32 else {}
            figure(
                f"1 entry per call, {threads} threads (group commit)",
                statistics.median(runs),
                "entries/s",
                statistics.median(bases),
                "a commit per row",
                **goal,  # type: ignore[arg-type]
            )
            figure(
                f"  entries per commit, {threads} threads",
                repeat * per * threads / max(1, sum(commits)),
                "entries",
            )

        # The gateway's way: each call also writes its own row in the same transaction.
        runs = []
        for _ in range(repeat):
            made = [entry(next(fresh)) for _ in range(calls)]

            def with_row(
                t: int,
                c: int,
                m: list[dict[str, Any]] = made,
                per: int = calls // 32,
            ) -> None:
                n = next(counter)
                store.append(
                    [m[t * per + c]],
                    writes=lambda conn: conn.execute(sa.insert(mine).values(idx=n, data=b"message")),
                )

            runs.append(calls / threaded(32, calls // 32, with_row))
        figure("1 entry + 1 own row per call (writes=), 32 threads", statistics.median(runs), "entries/s")

        batch = [entry(next(fresh)) for _ in range(100)]
        per_batch = median_seconds(lambda: store.append(batch), 10 * repeat)
        base_batch = median_seconds(
            lambda: bare_insert(engine, bare, next(counter) * 1000, sample[:100]), 10 * repeat
        )
        figure(
            "100 entries per call, 1 thread",
            100 / per_batch,
            "entries/s",
            100 / base_batch,
            "100 rows a commit",
        )

    from audit._internal.store import _prepare

    sqlite_time = store.engine.dialect.name == "sqlite"
    prep = median_seconds(lambda: [_prepare(e, sqlite_time) for e in batch], 5 * repeat)
    hashing = median_seconds(lambda: [hashlib.sha256(s).digest() for s in sample[:100]], 5 * repeat)
    reference = median_seconds(lambda: [rfc8785.dumps(e) for e in batch], 5 * repeat)
    figure(
        "prepare an entry (canonical JSON + leaf hash + columns)",
        100 / prep,
        "entries/s",
        100 / hashing,
        "SHA-256 of the bytes",
    )
    figure("  rfc8785.dumps alone (the reference implementation)", 100 / reference, "entries/s")


def build(store: audit.SqlAuditStore, size: int) -> None:
    have = store.size()
    if have >= size:
        print(f"reusing a log of {have:,} entries")
        return
    print(f"building a log of {size:,} entries (bulk appends of 2000) ...", flush=True)
    t0 = time.perf_counter()
    last = t0
    for start in range(have, size, 2000):
        store.append([entry(i) for i in range(start, min(start + 2000, size))])
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            print(f"  {start + 2000:,} entries, {(start + 2000 - have) / (last - t0):,.0f} /s", flush=True)
    took = time.perf_counter() - t0
    print(f"  built {size - have:,} entries in {took:.0f} s: {(size - have) / took:,.0f} entries/s (bulk)")
    store.checkpoint()


def settle(store: audit.SqlAuditStore) -> None:
    """Statistics (and on PostgreSQL the visibility map) as a running system has them.

    PostgreSQL's autovacuum analyses and vacuums an insert-only table on its own (since version 13);
    a table filled seconds ago has had neither, and index-only scans would still visit the heap.
    """
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE" if conn.dialect.name == "postgresql" else "ANALYZE")


# -- proofs ------------------------------------------------------------------------------------------


def bench_proofs(store: audit.SqlAuditStore, n: int, repeat: int, rng: random.Random) -> float:
    heading(f"Proofs at {n:,} entries (baseline: primary-key SELECT of one entry)")
    pk = median_seconds(lambda: store.entry(rng.randrange(n)), 200 * repeat)
    root = store.root(n)
    line("primary-key SELECT of one entry", fmt_ms(pk), "(the baseline)")

    inc = median_seconds(lambda: store.inclusion_proof(rng.randrange(n), n), 200 * repeat)
    figure(
        "inclusion proof (random index, tree size n)",
        inc * 1e3,
        "ms",
        pk * 1e3,
        "PK SELECT",
        "< 3 ms",
        inc < 0.003,
    )
    size1 = rng.randrange(1, n)
    cons = median_seconds(lambda: store.consistency_proof(rng.randrange(1, n), n), 200 * repeat)
    figure(
        "consistency proof (random size -> n)",
        cons * 1e3,
        "ms",
        pk * 1e3,
        "PK SELECT",
        "< 3 ms",
        cons < 0.003,
    )

    index = rng.randrange(n)
    proof = store.inclusion_proof(index, n)
    found = store.entry(index)
    assert found is not None
    leaf = audit.leaf_hash(found.leaf_data)
    check = median_seconds(lambda: audit.verify_inclusion(leaf, index, n, proof, root), 200 * repeat)
    joined = b"".join(proof)
    sha = median_seconds(lambda: hashlib.sha256(joined).digest(), 200 * repeat)
    line(
        f"verify an inclusion proof ({len(proof)} hashes)",
        fmt_ms(check),
        f"baseline {fmt_ms(sha)} (one SHA-256 over the proof)",
    )
    cproof = store.consistency_proof(size1, n)
    assert audit.verify_consistency(size1, n, cproof, store.root(size1), root)
    cp = median_seconds(lambda: (store.append([entry(0)]), store.checkpoint()), 20 * repeat)
    line("append 1 + sign a checkpoint", fmt_ms(cp), f"baseline {fmt_ms(pk)}")
    return pk


# -- privacy officers' queries -----------------------------------------------------------------------


def bench_queries(store: audit.SqlAuditStore, n: int, pk: float, repeat: int) -> None:
    heading(
        f"Privacy officers' queries at {n:,} entries, pages of 100, cursor paging "
        "(baseline: primary-key SELECT)"
    )
    deep = int(n * 0.9)
    case_early, case_deep = case_of(n // 10), case_of(deep)
    deep_actor = AGENCIES[(deep * 7 + case_deep) % 5]  # an agency named in that case's entries
    week = dt.timedelta(days=7)
    mid = time_of(n // 2)
    queries: list[tuple[str, audit.SearchFilters, int | None]] = [
        ("by case (auditor)", audit.SearchFilters(case_id=f"case-{case_early:07d}"), None),
        (
            "by case, officer of its agency",
            audit.SearchFilters(case_id=f"case-{case_deep:07d}", visible_to=deep_actor),
            None,
        ),
        ("by agency (officer: entries naming politie)", audit.SearchFilters(visible_to="politie"), deep),
        ("by agency + other agency (officer)", audit.SearchFilters(visible_to="om", agency="rvdk"), deep),
        ("by purpose (auditor)", audit.SearchFilters(purpose="risico_taxeren"), deep),
        (
            "by purpose (officer)",
            audit.SearchFilters(purpose="advies_geven", visible_to="reclassering"),
            deep,
        ),
        (
            "by information type + purpose",
            audit.SearchFilters(information_type="strafblad", purpose="advies_geven"),
            deep,
        ),
        ("by time range, one week (auditor)", audit.SearchFilters(time_from=mid, time_to=mid + week), None),
        (
            "by time range, one week (officer)",
            audit.SearchFilters(time_from=mid, time_to=mid + week, visible_to="rvdk"),
            None,
        ),
        ("by time range, from a date on (auditor)", audit.SearchFilters(time_from=mid), deep),
        ("by subject pseudonym (auditor)", audit.SearchFilters(subject=subject(case_early, 0)), None),
        (
            "by subject pseudonym (officer)",
            audit.SearchFilters(subject=subject(case_deep, 1), visible_to=deep_actor),
            None,
        ),
        ("no match: unknown case", audit.SearchFilters(case_id="case-none"), None),
        ("no match: unknown subject (officer)", audit.SearchFilters(subject="0" * 64, visible_to="om"), None),
    ]
    worst = 0.0
    for label, filters, deep_cursor in queries:
        found, next_cursor = store.search(filters, limit=100)
        first = median_seconds(lambda f=filters: store.search(f, limit=100), 10 * repeat)
        worst = max(worst, first)
        line(f"{label}: first page ({len(found)} hits)", fmt_ms(first), f"baseline {fmt_ms(pk)}")
        # A deep page: the cursor the API would hand out ~90% into the log (or the second page).
        cursor = str(deep_cursor) if deep_cursor is not None else next_cursor
        if cursor is not None:
            page, _ = store.search(filters, limit=100, cursor=cursor)
            took = median_seconds(
                lambda f=filters, c=cursor: store.search(f, limit=100, cursor=c), 10 * repeat
            )
            worst = max(worst, took)
            line(
                f"{label}: page at cursor {cursor} ({len(page)} hits)", fmt_ms(took), f"baseline {fmt_ms(pk)}"
            )
    report = median_seconds(
        lambda: audit.subject_report(store, subject(case_deep, 0), visible_to=None), 10 * repeat
    )
    worst = max(worst, report)
    line("subject-access report, one person (all pages)", fmt_ms(report), f"baseline {fmt_ms(pk)}")
    print(f"  slowest query: {worst * 1e3:.1f} ms")


def cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (a verify's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_verify(store: audit.SqlAuditStore, n: int, quick: bool) -> None:
    heading(f"Whole-log checks at {n:,} entries (baseline: read every leaf and SHA-256 it)")
    if quick:
        print("  (skipped with --quick)")
        return
    t0 = time.perf_counter()
    hashed = 0
    with store.engine.connect() as conn:
        dbapi: Any = conn.connection.dbapi_connection
        cur = dbapi.cursor()
        for low in range(0, n, 50_000):
            cur.execute(
                "SELECT leaf_data FROM audit_entries WHERE idx >= ? AND idx < ?"
                if conn.dialect.name == "sqlite"
                else "SELECT leaf_data FROM audit_entries WHERE idx >= %s AND idx < %s",
                (low, low + 50_000),
            )
            for (data,) in cur.fetchall():
                audit.leaf_hash(bytes(data))
                hashed += 1
        cur.close()
    floor = hashed / (time.perf_counter() - t0)
    for workers in (None, 1):
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        result = audit.verify_log(store, store.verifier_key(), workers=workers)
        took = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0
        assert result.ok, result.reason
        from audit._internal.verify import _processes

        count = _processes(workers, result.size)
        label = "one process" if count == 1 else f"{count} worker processes"
        label += " (the default)" if workers is None else ""
        # CPU time of this process and its (joined) workers: the work itself, less moved by whatever
        # else the machine runs than the wall-clock figure is.
        figure(f"verify_log, {label}: CPU time per entry", cpu / result.size * 1e6, "us")
        figure(
            f"verify_log, {label} ({took:.0f} s)",
            result.size / took,
            "entries/s",
            floor,
            "read + SHA-256 in one process",
            ">= 100,000/s" if workers is None else None,
            result.size / took >= 100_000 if workers is None else None,
        )
    note = store.checkpoint()
    t0 = time.perf_counter()
    exported = audit.verify_export(
        audit.export_lines(store.iter_entries(0, result.size)), note, store.verifier_key()
    )
    took = time.perf_counter() - t0
    assert exported.ok, exported.reason
    figure(f"export + verify_export, streamed ({took:.0f} s)", exported.size / took, "entries/s")


def run(name: str, engine: Engine, key_path: Path, size: int, repeat: int, quick: bool) -> None:
    print(f"== {name}")
    store = open_store(engine, key_path)
    build(store, size)
    settle(store)
    n = store.size()
    rng = random.Random(6962)
    pk = bench_proofs(store, n, repeat, rng)
    bench_queries(store, n, pk, repeat)
    bench_verify(store, store.size(), quick)
    bench_appends(store, repeat)


def machine() -> dict[str, Any]:
    """What the figures were measured on (bench._machine), with SQLite's own version."""
    return describe(["sqlalchemy"]) | {"sqlite": sqlite3.sqlite_version}


def save(
    name: str,
    settings: dict[str, Any],
    load_before: tuple[float, ...],
    previous: dict[str, Any] | None = None,
) -> Path:
    now = dt.datetime.now(dt.UTC)
    description = machine() | {"loadAverage": {"before": list(load_before), "after": list(os.getloadavg())}}
    document = {
        "bench": "audit_log",
        "date": now.isoformat(timespec="seconds"),
        "database": name,
        "machine": description,
        "settings": settings,
        "figures": FIGURES,
    }
    if previous is not None:
        document["previousCode"] = previous
    return write_results("audit_log", document)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="entries in the log (default 1,000,000)")
    parser.add_argument("--db", type=Path, help="SQLite file to build in and reuse (default: a temp dir)")
    parser.add_argument(
        "--pg", action="store_true", help="PostgreSQL at AUDIT_BENCH_PG_URL instead of SQLite"
    )
    parser.add_argument(
        "--pg-schema", help="with --pg: build in this schema, keep it, and reuse it next time"
    )
    parser.add_argument("--repeat", type=int, default=3, help="multiplier for the number of timed runs")
    parser.add_argument("--quick", action="store_true", help="skip the whole-log verification")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/audit_log-*.json")
    parser.add_argument(
        "--previous",
        type=Path,
        help="a checkout of earlier code (git worktree): its own bench runs first, on --previous-db, in "
        "the same run, and its output is kept in the results beside these figures",
    )
    parser.add_argument("--previous-db", type=Path, help="with --previous: the SQLite log it runs on")
    args = parser.parse_args()
    load_before = os.getloadavg()
    settings = {"size": args.size, "repeat": args.repeat, "quick": args.quick}
    previous = run_previous(args) if args.previous is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        if args.pg:
            # A named schema is kept (and reused by the next run); a scratch one is dropped after.
            schema = args.pg_schema or f"audit_bench_{secrets.token_hex(4)}"
            admin = sa.create_engine(PG_URL)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            engine = sa.create_engine(
                PG_URL, connect_args={"options": f"-c search_path={schema}"}, pool_size=40, max_overflow=10
            )
            key = Path(tmp) / "key.pem" if args.pg_schema is None else Path(f"/tmp/{schema}.key")
            name = f"PostgreSQL (schema {schema})"
            try:
                run(name, engine, key, args.size, args.repeat, args.quick)
            finally:
                engine.dispose()
                if args.pg_schema is None:
                    with admin.begin() as conn:
                        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                admin.dispose()
        else:
            db = args.db or Path(tmp) / "audit.db"
            db.parent.mkdir(parents=True, exist_ok=True)
            engine = sqlite_engine(db)
            name = "SQLite, WAL, synchronous=FULL"
            run(name, engine, db.with_suffix(".key"), args.size, args.repeat, args.quick)
            engine.dispose()
    if not args.no_save:
        print(f"\nresults: {save(name, settings, load_before, previous)}")


def run_previous(args: argparse.Namespace) -> dict[str, Any]:
    """Run the earlier code's own bench (its ``bench.audit_log``) on its own copy of the log; its output."""
    if args.previous_db is None:
        raise SystemExit("--previous needs --previous-db (a copy of the log at the schema that code knows)")
    import subprocess
    import sys

    command = [sys.executable, "-m", "bench.audit_log", "--db", str(args.previous_db), "--no-save"]
    command += ["--size", str(args.size), "--repeat", str(args.repeat)] + (["--quick"] if args.quick else [])
    commit = subprocess.run(
        ["git", "-C", str(args.previous), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"== the earlier code ({commit[:10] or args.previous}), same run", flush=True)
    load = os.getloadavg()
    # Its own directory first on the path: its audit and gateway packages, not these.
    done = subprocess.run(command, cwd=args.previous, capture_output=True, text=True, check=False)
    print(done.stdout, flush=True)
    if done.returncode:
        print(done.stderr[-2000:])
    return {
        "commit": commit or None,
        "loadAverage": {"before": list(load), "after": list(os.getloadavg())},
        "output": done.stdout.splitlines(),
    }


if __name__ == "__main__":
    main()
