"""Fixtures for the audit tests: real SQLite files in tmp_path, and PostgreSQL in a throwaway schema.

The PostgreSQL tests fail when no server answers (tests/databases.py, `require_postgresql`); they
run at ``AUDIT_TEST_PG_URL`` (default: the local trust-auth server), each test in its own schema,
dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, event

import audit
from tests.databases import require_postgresql

PG_URL = os.environ.get("AUDIT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ORIGIN = "test.veilig-delen.example/audit"


def sqlite_engine(path: Path) -> Engine:
    """A file SQLite engine set up as the gateway's: WAL, full sync, foreign keys, busy timeout."""
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def create_log(engine: Engine) -> Engine:
    """Create the audit tables and their append-only triggers, as the gateway's migration does."""
    audit.metadata.create_all(engine)
    with engine.begin() as conn:
        audit.install_append_only_triggers(conn)
    return engine


def pg_engine(schema: str) -> Engine:
    """An engine whose unqualified names resolve in ``schema`` (so audit's DDL and triggers land there)."""
    return sa.create_engine(PG_URL, connect_args={"options": f"-c search_path={schema}"}, pool_size=10)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped after the test."""
    require_postgresql()  # fails, not skips, without the server (tests/databases.py)
    schema = f"audit_test_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def signer() -> audit.LogSigner:
    """A log signer with a fresh key."""
    return audit.LogSigner(Ed25519PrivateKey.generate(), ORIGIN)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine with the audit tables and triggers: SQLite in tmp_path, then PostgreSQL."""
    if request.param == "sqlite":
        eng = create_log(sqlite_engine(tmp_path / "audit.db"))
    else:
        eng = create_log(pg_engine(request.getfixturevalue("pg_schema")))
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_log(tmp_path: Path) -> Iterator[Engine]:
    """SQLite only: for tests that tamper with rows directly."""
    eng = create_log(sqlite_engine(tmp_path / "audit.db"))
    yield eng
    eng.dispose()


@pytest.fixture
def store(engine: Engine, signer: audit.LogSigner) -> audit.SqlAuditStore:
    """A store on each database."""
    return audit.SqlAuditStore(engine, signer)


def make_entry(n: int, **overrides: Any) -> dict[str, Any]:
    """A gateway-shaped audit entry, varied by ``n``."""
    agencies = ["politie", "veilig_thuis", "om", "reclassering", "rvdk"]
    entry: dict[str, Any] = {
        "v": 1,
        "time": f"2026-11-28T18:{n // 60 % 60:02d}:{n % 60:02d}.123456Z",
        "type": "exchange" if n % 3 else "case",
        "traceId": f"{n:032x}",
        "spanId": f"{n:016x}",
        "actor": {"agency": agencies[n % 5], "clientId": f"{agencies[n % 5]}-bv"},
        "action": "share",
        "caseId": f"case-{n % 7}",
        "subjects": [f"{n % 4:064x}", f"{100 + n % 3:064x}"],
        "informationType": "melding" if n % 2 else "veiligheidsplan",
        "purpose": "melding_behandelen" if n % 2 else "veiligheid_beoordelen",
        "counterpart": agencies[(n + 1) % 5],
        "decision": {
            "allowed": n % 5 != 0,
            "reasons": [{"code": "participation", "message": "both take part"}],
            "legalBasis": "Wmo 2015 art. 5.2.6",
            "policyRevision": "rev-1",
        },
        "outcome": "delivered",
        "payloadDigest": "sha256:" + "ab" * 32,
    }
    entry.update(overrides)
    return entry
