"""Measure the audit log: append rate (with and without group commit), proofs, search, verification.

    .venv/bin/python -m bench.audit_log                   # SQLite (WAL, synchronous=FULL) in a temp dir
    .venv/bin/python -m bench.audit_log --pg              # also PostgreSQL (scratch schema, dropped after)
    .venv/bin/python -m bench.audit_log --size 200000     # a bigger log for the proof and verify figures

Prints one line per figure. Not a test: numbers depend on the machine and its disk.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, event

import audit

PG_URL = os.environ.get("AUDIT_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
AGENCIES = ["politie", "veilig_thuis", "om", "reclassering", "rvdk"]


def entry(n: int) -> dict[str, Any]:
    """A gateway-shaped entry."""
    return {
        "v": 1,
        "time": "2026-11-28T18:00:00.123456Z",
        "type": "exchange",
        "traceId": secrets.token_hex(16),
        "spanId": secrets.token_hex(8),
        "actor": {"agency": AGENCIES[n % 5], "clientId": f"{AGENCIES[n % 5]}-bv"},
        "action": "share",
        "caseId": f"case-{n % 997}",
        "subjects": [secrets.token_hex(32), secrets.token_hex(32)],
        "informationType": "melding",
        "purpose": "melding_behandelen",
        "counterpart": AGENCIES[(n + 1) % 5],
        "decision": {
            "allowed": True,
            "reasons": [{"code": "participation", "message": "both take part in the step"}],
            "legalBasis": "Wmo 2015 art. 5.2.6",
            "policyRevision": "rev-1",
        },
        "outcome": "delivered",
        "payloadDigest": "sha256:" + secrets.token_hex(32),
    }


def sqlite_engine(path: Path) -> Engine:
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    return engine


def fresh_store(engine: Engine) -> audit.SqlAuditStore:
    audit.metadata.create_all(engine)
    with engine.begin() as conn:
        audit.install_append_only_triggers(conn)
    return audit.SqlAuditStore(engine, audit.LogSigner(Ed25519PrivateKey.generate(), "bench.example/audit"))


def rate(label: str, n: int, seconds: float) -> None:
    print(f"{label:<58} {n / seconds:>10,.0f} entries/s  ({n} in {seconds:.2f} s)")


def appends(store: audit.SqlAuditStore, threads: int, calls: int, per_call: int) -> float:
    """``threads`` threads each make ``calls`` appends of ``per_call`` entries; returns seconds."""
    barrier = threading.Barrier(threads + 1)

    def work(t: int) -> None:
        barrier.wait()
        for c in range(calls):
            store.append([entry(t * 1_000_000 + c * per_call + k) for k in range(per_call)])

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    for p in pool:
        p.join()
    return time.perf_counter() - t0


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ms(label: str, fn: Callable[[], object], repeat: int) -> None:
    print(f"{label:<58} {timed(fn, repeat) * 1e3:>10.2f} ms  (median of {repeat})")


def run(name: str, make_engine: Callable[[], Engine], size: int) -> None:
    print(f"-- {name}")
    store = fresh_store(make_engine())
    rate("append, 1 thread, 1 entry per call (a commit each)", 500, appends(store, 1, 500, 1))
    for threads in (4, 16, 64):
        n = threads * (4000 // threads)
        rate(
            f"append, {threads} threads, 1 entry per call (group commit)",
            n,
            appends(store, threads, n // threads, 1),
        )
    rate("append, 1 thread, 100 entries per call", 5000, appends(store, 1, 50, 100))
    rate("prepare only: canonical JSON + hash + columns (1 thread)", 5000, _prepare_only(5000))

    have = store.size()
    t0 = time.perf_counter()
    for start in range(have, size, 2000):
        store.append([entry(i) for i in range(start, min(start + 2000, size))])
    if size > have:
        rate(f"bulk fill to {size:,} (2000 per call)", size - have, time.perf_counter() - t0)
    n = store.size()
    if store.engine.dialect.name == "postgresql":
        # A table filled seconds ago has no statistics yet; autovacuum would analyse it in production.
        with store.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    ms("inclusion proof (index n/3, tree size n)", lambda: store.inclusion_proof(n // 3, n), 200)
    ms("consistency proof (n/3 -> n)", lambda: store.consistency_proof(n // 3, n), 200)
    ms("root at size n", lambda: store.root(n), 200)
    ms("checkpoint (append 1, sign + record)", lambda: (store.append([entry(0)]), store.checkpoint()), 50)
    both = audit.SearchFilters(agency="om", case_id="case-5")
    ms("search page of 100 (agency + case)", lambda: store.search(both, limit=100), 20)
    agency = audit.SearchFilters(agency="rvdk")
    ms("search page of 100 (agency only)", lambda: store.search(agency, limit=100), 20)
    t0 = time.perf_counter()
    result = audit.verify_log(store, store.verifier_key())
    assert result.ok, result.reason
    rate("verify_log (leaves, columns, nodes, checkpoints)", result.size, time.perf_counter() - t0)
    note = store.checkpoint()
    lines = list(audit.export_lines(store.iter_entries(0, result.size + 51)))
    t0 = time.perf_counter()
    exported = audit.verify_export(lines, note, store.verifier_key())
    assert exported.ok, exported.reason
    rate("verify_export (in-memory NDJSON lines)", exported.size, time.perf_counter() - t0)


def _prepare_only(n: int) -> float:
    from audit._internal.store import _prepare

    batch = [entry(i) for i in range(n)]
    t0 = time.perf_counter()
    for e in batch:
        _prepare(e)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=100_000, help="log size for proofs, search and verify")
    parser.add_argument("--pg", action="store_true", help="also measure PostgreSQL at AUDIT_BENCH_PG_URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite, WAL, synchronous=FULL", lambda: sqlite_engine(Path(tmp) / "audit.db"), args.size)
    if args.pg:
        schema = f"audit_bench_{secrets.token_hex(4)}"
        admin = sa.create_engine(PG_URL)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            run(
                "PostgreSQL",
                lambda: sa.create_engine(
                    PG_URL,
                    connect_args={"options": f"-c search_path={schema}"},
                    pool_size=20,
                    max_overflow=50,
                ),
                args.size,
            )
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
