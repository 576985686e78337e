"""Migration 0008 (fewer b-trees per append) on a log with entries, up and down, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from audit import LogSigner, SqlAuditStore, verify_log
from gateway.db import make_engine
from gateway.migrations import alembic_config, upgrade
from tests.audit.conftest import ORIGIN, make_entry
from tests.databases import DIALECTS, fresh_pg_database

SIDE_TABLES = ("audit_entry_agencies", "audit_entry_subjects", "audit_nodes")


@contextmanager
def database(dialect: str, directory: Path) -> Iterator[Engine]:
    if dialect == "sqlite":
        engine = make_engine(f"sqlite:///{directory / 'gateway.db'}")
        try:
            yield engine
        finally:
            engine.dispose()
        return
    with fresh_pg_database("vd_audit_0008") as (url, _admin, _name):
        engine = make_engine(url)
        try:
            yield engine
        finally:
            engine.dispose()


def indexes(engine: Engine) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(engine).get_indexes("audit_entries")}


def without_rowid(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
    return {name for name, ddl in rows if name in SIDE_TABLES and ddl.rstrip().endswith("WITHOUT ROWID")}


def same_log(store: SqlAuditStore, size: int) -> None:
    """Every entry, proof and search row still there and verifying; the triggers still refuse."""
    assert store.size() == size
    assert verify_log(store, store.verifier_key()).ok
    found, _ = store.search({"subject": f"{1:064x}"}, limit=100)
    assert [e.index for e in found] == [i for i in range(size) if i % 4 == 1]
    found, _ = store.search({"agency": "om"}, limit=100)
    assert [e.index for e in found] == [i for i in range(size) if "om" in {_actor(i), _counterpart(i)}]
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM audit_entry_subjects")


def _actor(i: int) -> str:
    return str(make_entry(i)["actor"]["agency"])


def _counterpart(i: int) -> str:
    return str(make_entry(i)["counterpart"])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_0008_keeps_the_log_and_drops_only_unread_indexes(dialect: str, tmp_path: Path) -> None:
    with database(dialect, tmp_path) as engine:
        upgrade(engine, "0007")
        store = SqlAuditStore(engine, LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
        store.append([make_entry(i) for i in range(37)])
        store.checkpoint()
        assert "ix_audit_entries_actor_agency_idx" in indexes(engine)

        upgrade(engine)
        gone = {
            "ix_audit_entries_actor_agency_idx",
            "ix_audit_entries_counterpart_agency_idx",
            "ix_audit_entries_trace_id",
        }
        assert not indexes(engine) & gone
        assert "ix_audit_entries_case_id_idx" in indexes(engine)
        if dialect == "sqlite":
            assert without_rowid(engine) == set(SIDE_TABLES)
        same_log(store, 37)
        # Appends go on where the log was, through the rebuilt tables.
        assert store.append([make_entry(i) for i in range(37, 45)]) == list(range(37, 45))
        same_log(store, 45)

        command.downgrade(alembic_config(engine), "0007")
        assert gone <= indexes(engine)
        if dialect == "sqlite":
            assert without_rowid(engine) == set()
        same_log(store, 45)
