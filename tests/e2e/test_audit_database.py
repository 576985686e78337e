"""The audit tables as the migrations leave them, and the append-only PostgreSQL role of docs/audit.md.

The role test runs the GRANT block of docs/audit.md, unchanged except for the role and schema names,
on the real PostgreSQL server (skipped only when none answers), with a uniquely named role and schema
that are dropped afterwards.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

import audit
from audit import LogSigner, SqlAuditStore, verify_log
from gateway.db import make_engine
from gateway.migrations import alembic_config, upgrade
from tests.audit.conftest import ORIGIN, PG_URL, make_entry
from tests.databases import require_postgresql

DOCS = Path(__file__).resolve().parents[2] / "docs" / "audit.md"
# Each audit table, with a column to try an UPDATE on.
AUDIT_TABLES = {
    "audit_entries": "case_id",
    "audit_entry_agencies": "role",
    "audit_entry_subjects": "pseudonym",
    "audit_nodes": "hash",
    "audit_checkpoints": "note",
}


def documented_grants() -> str:
    text = DOCS.read_text()
    block = re.search(r"<!-- grants:begin -->\s*```sql\n(.*?)```\s*<!-- grants:end -->", text, re.S)
    assert block, "docs/audit.md lost its grants block"
    return block.group(1)


def audit_diffs(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), audit.metadata)
    return [d for d in diffs if "audit_" in repr(d)]


def test_sqlite_migrations_build_exactly_the_audit_schema(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    upgrade(engine)
    assert audit_diffs(engine) == []
    store = SqlAuditStore(engine, LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
    store.append([make_entry(i) for i in range(5)])
    # Down to the first migration and up again with entries present: nothing lost, triggers intact.
    command.downgrade(alembic_config(engine), "0001")
    upgrade(engine)
    assert audit_diffs(engine) == []
    assert verify_log(store, store.verifier_key()).ok
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE audit_entries SET case_id = 'x'")
    engine.dispose()


# -- PostgreSQL ---------------------------------------------------------------------------------------


@dataclass
class PgSetup:
    schema: str
    role: str
    owner: Engine
    app: Engine


def _engine(url: str, schema: str) -> Engine:
    return sa.create_engine(url, connect_args={"options": f"-c search_path={schema}"})


@pytest.fixture
def pg() -> Iterator[PgSetup]:
    """A schema migrated by the superuser (the owner), and a LOGIN role granted what the docs say."""
    require_postgresql()  # fails, not skips, without the server (tests/databases.py)
    suffix = secrets.token_hex(5)
    schema, role = f"audit_role_{suffix}", f"audit_app_{suffix}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    owner = _engine(PG_URL, schema)
    url = sa.make_url(PG_URL).set(username=role)
    app = _engine(url.render_as_string(hide_password=False), schema)
    try:
        upgrade(owner)
        grants = documented_grants().replace("veilig_delen_app", f'"{role}"')
        grants = grants.replace("SCHEMA public", f'SCHEMA "{schema}"').replace("public.", f'"{schema}".')
        with owner.begin() as conn:
            conn.exec_driver_sql(grants)
        yield PgSetup(schema, role, owner, app)
    finally:
        app.dispose()
        owner.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        admin.dispose()


def refused(engine: Engine, statement: str) -> str:
    """Run ``statement``; it must fail. Returns the database's message."""
    with pytest.raises(DBAPIError) as caught, engine.begin() as conn:
        conn.exec_driver_sql(statement)
    return str(caught.value.orig)


def test_postgresql_migrations_build_exactly_the_audit_schema(pg: PgSetup) -> None:
    assert audit_diffs(pg.owner) == []


def test_the_documented_role_appends_and_reads_but_cannot_change_the_log(pg: PgSetup) -> None:
    upgrade(pg.app)  # the gateway's start: the schema is current, the role changes nothing
    store = SqlAuditStore(pg.app, LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
    assert store.append([make_entry(i) for i in range(12)]) == list(range(12))
    store.checkpoint()
    store.append([make_entry(12)])
    assert store.checkpoint().splitlines()[1] == "13"
    assert [e.index for e in store.search({"case_id": "case-5"})[0]] == [5, 12]
    assert len(store.inclusion_proof(3, 13)) == 4
    assert verify_log(store, store.verifier_key()).ok

    for table, column in AUDIT_TABLES.items():
        update = f"UPDATE {table} SET {column} = {column}"
        for statement in (update, f"DELETE FROM {table}", f"TRUNCATE {table}"):
            assert "permission denied" in refused(pg.app, statement), statement
        # Not the owner: the triggers cannot be dropped, nor the table altered.
        assert "must be owner" in refused(pg.app, f'DROP TRIGGER "{table}_append_only" ON {table}')
        assert "must be owner" in refused(pg.app, f"ALTER TABLE {table} DISABLE TRIGGER ALL")
    assert "permission denied" in refused(pg.app, "CREATE TABLE scratch (x int)")


def test_the_privileges_hold_even_without_the_triggers(pg: PgSetup) -> None:
    store = SqlAuditStore(pg.app, LogSigner(Ed25519PrivateKey.generate(), ORIGIN))
    store.append([make_entry(i) for i in range(3)])
    with pg.owner.begin() as conn:
        audit.remove_append_only_triggers(conn)  # the owner can; the gateway's role cannot
    for statement in (
        "UPDATE audit_entries SET case_id = 'x'",
        "DELETE FROM audit_nodes",
        "TRUNCATE audit_checkpoints",
    ):
        assert "permission denied" in refused(pg.app, statement)
    assert verify_log(store, store.verifier_key()).ok


def test_the_role_runs_the_gateways_own_tables(pg: PgSetup) -> None:
    with pg.app.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO used_assertions (jti_key, expires_at) VALUES ('k', now() - interval '1 hour')"
        )
        assert conn.exec_driver_sql("DELETE FROM used_assertions WHERE expires_at < now()").rowcount == 1
        version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
