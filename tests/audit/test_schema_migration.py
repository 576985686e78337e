"""Migrations 0008 (fewer b-trees per append) and 0009 (subject runs) on a log with entries, up and down."""

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


def same_log(store: SqlAuditStore, size: int, *, runs: bool = True) -> None:
    """Every entry, proof and search row still there and verifying; the triggers still refuse.

    ``runs``: the schema has 0009's subject runs, so this code's search by person works on it; before
    that, the person's rows are checked in the table itself.
    """
    assert store.size() == size
    assert verify_log(store, store.verifier_key()).ok
    person = [i for i in range(size) if i % 4 == 1]
    if runs:
        found, _ = store.search({"subject": f"{1:064x}"}, limit=100)
        assert [e.index for e in found] == person
    else:
        with store.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT idx FROM audit_entry_subjects WHERE pseudonym = '{1:064x}' ORDER BY idx"
            )
            assert [i for (i,) in rows] == person
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

        upgrade(engine, "0008")
        gone = {
            "ix_audit_entries_actor_agency_idx",
            "ix_audit_entries_counterpart_agency_idx",
            "ix_audit_entries_trace_id",
        }
        assert not indexes(engine) & gone
        assert "ix_audit_entries_case_id_idx" in indexes(engine)
        if dialect == "sqlite":
            assert without_rowid(engine) == set(SIDE_TABLES)
        same_log(store, 37, runs=False)

        command.downgrade(alembic_config(engine), "0007")
        assert gone <= indexes(engine)
        if dialect == "sqlite":
            assert without_rowid(engine) == set()
        same_log(store, 37, runs=False)
        # On to the newest: appends go on where the log was, through the rebuilt tables.
        upgrade(engine)
        assert store.append([make_entry(i) for i in range(37, 45)]) == list(range(37, 45))
        same_log(store, 45)


def runs(engine: Engine) -> list[tuple[int, str, int]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT run_end, pseudonym, idx FROM audit_subject_runs")
        return [(int(e), str(p), int(i)) for e, p, i in rows]


def subject_rows(engine: Engine, below: int) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT pseudonym, idx FROM audit_entry_subjects WHERE idx < {below}")
        return sorted((str(p), int(i)) for p, i in rows)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_0009_seals_the_history_in_runs_and_drops_the_person_index(
    dialect: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from audit._internal import schema

    with database(dialect, tmp_path) as engine:
        upgrade(engine, "0008")
        store = SqlAuditStore(engine, LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
        store.append([make_entry(i) for i in range(37)])  # (no run sealed: 0008 has no table for it)
        store.checkpoint()
        monkeypatch.setattr(schema, "SUBJECT_RUN", 16)
        upgrade(engine)
        # Entries 0..31 (two multiples of 16) in two runs, ending at 16 and 32, each its 16 entries' rows.
        sealed = runs(engine)
        assert {e for e, _p, _i in sealed} == {16, 32}
        assert all(e - 16 <= i < e for e, _p, i in sealed)
        assert sorted((p, i) for _e, p, i in sealed) == subject_rows(engine, 32)
        subject_indexes = {str(ix["name"]) for ix in sa.inspect(engine).get_indexes("audit_entry_subjects")}
        assert "ix_audit_entry_subjects_pseudonym_idx" not in subject_indexes
        same_log(store, 37)
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM audit_subject_runs")

        command.downgrade(alembic_config(engine), "0008")
        assert "audit_subject_runs" not in sa.inspect(engine).get_table_names()
        subject_indexes = {str(ix["name"]) for ix in sa.inspect(engine).get_indexes("audit_entry_subjects")}
        assert "ix_audit_entry_subjects_pseudonym_idx" in subject_indexes
        same_log(store, 37, runs=False)
