"""The audit tables, on the package's own ``MetaData``, and the triggers that keep them append-only."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
"""The audit tables. Create them with ``metadata.create_all(engine)`` (or in a migration), then call
``install_append_only_triggers``."""


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored in UTC and returned timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are refused: store UTC")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# INTEGER (not BIGINT) on SQLite makes the primary key an alias of the rowid: one b-tree, not two.
LogIndex = BigInteger().with_variant(Integer(), "sqlite")

entries = Table(
    "audit_entries",
    metadata,
    Column("idx", LogIndex, primary_key=True, autoincrement=False),
    # The exact canonical JSON bytes that were hashed; everything else in this row is derived.
    Column("leaf_data", LargeBinary, nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    # Search columns, extracted from the entry when present and well-formed, else NULL.
    Column("entry_time", UTCDateTime()),
    Column("entry_type", String(64)),
    Column("case_id", String(128)),
    Column("purpose", String(64)),
    Column("information_type", String(64)),
    Column("actor_agency", String(64)),
    Column("actor_client", String(128)),
    Column("counterpart_agency", String(64)),
    Column("trace_id", String(64)),
    CheckConstraint("idx >= 0", name="idx_not_negative"),
)
# (column, idx) so that a filtered page in index order is one range scan. Only the columns a search
# filters on: every index is written at every append (a search by agency reads audit_entry_agencies).
for _col in ("case_id", "entry_type", "purpose", "information_type"):
    Index(f"ix_audit_entries_{_col}_idx", entries.c[_col], entries.c.idx)
# (entry_time, idx): a time range's lowest and highest index are read from this index alone.
Index("ix_audit_entries_entry_time_idx", entries.c.entry_time, entries.c.idx)

entry_agencies = Table(
    "audit_entry_agencies",
    metadata,
    Column("idx", LogIndex, ForeignKey(entries.c.idx), primary_key=True),
    Column("agency", String(64), primary_key=True),
    Column("role", String(16), primary_key=True),  # 'actor' or 'counterpart'
    Index("ix_audit_entry_agencies_agency_idx", "agency", "idx"),
    # On SQLite the table is its primary key's b-tree, not a rowid table beside a key index: one b-tree
    # fewer written per row (migration 0008).
    sqlite_with_rowid=False,
)

entry_subjects = Table(
    "audit_entry_subjects",
    metadata,
    Column("idx", LogIndex, ForeignKey(entries.c.idx), primary_key=True),
    Column("pseudonym", String(128), primary_key=True),
    # No (pseudonym, idx) index: its random keys made every append write a page per subject row, more
    # than half of a commit (migration 0009). A search by person reads ``subject_runs`` instead.
    sqlite_with_rowid=False,
)

subject_runs = Table(
    "audit_subject_runs",
    metadata,
    # The subject rows of entries [run_end - SUBJECT_RUN, run_end), written once, sorted by person,
    # when the log has grown past run_end: a person's entries in a run are one range of this key, and
    # the run is written as consecutive pages at the table's end, not one random page per row. The
    # entries after the last run_end are found in audit_entry_subjects by index (SUBJECT_RUN at most).
    Column("run_end", LogIndex, primary_key=True, autoincrement=False),
    Column("pseudonym", String(128), primary_key=True),
    Column("idx", LogIndex, primary_key=True, autoincrement=False),
    CheckConstraint("idx >= 0 AND idx < run_end", name="idx_in_run"),
    sqlite_with_rowid=False,
)

SUBJECT_RUN = 4096
"""Entries a run of ``audit_subject_runs`` covers: the log seals one each time its size passes a
multiple of this. A search by person scans the subject rows of the unsealed entries (fewer than this,
some 10,000 rows) and seeks once in each run."""

nodes = Table(
    "audit_nodes",
    metadata,
    # The hash of the perfect subtree of 2**level leaves starting at leaf idx << level. Level 0 (the
    # leaf hashes) lives in audit_entries; a proof reads O(log n) of these rows.
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    CheckConstraint("level BETWEEN 1 AND 63", name="level_range"),
    sqlite_with_rowid=False,
)

checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", BigInteger, nullable=False, index=True),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
)

cosignatures = Table(
    "audit_cosignatures",
    metadata,
    # A witness's C2SP tlog-cosignature of one checkpoint, verified against its pinned key when received.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", BigInteger, nullable=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("witness", String(255), nullable=False),
    Column("signature_line", Text, nullable=False),
    Column("cosigned_at", BigInteger, nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tree_size", "root_hash", "witness", name="uq_audit_cosignatures_checkpoint_witness"),
)

APPEND_ONLY_TABLES = (
    entries.name,
    entry_agencies.name,
    entry_subjects.name,
    nodes.name,
    checkpoints.name,
    subject_runs.name,
)
_PG_FUNCTION = "audit_refuse_change"


def _qualify(name: str, schema: str | None) -> str:
    return f'"{schema}"."{name}"' if schema else f'"{name}"'


def append_only_ddl(
    dialect: str, schema: str | None = None, tables: Sequence[str] = APPEND_ONLY_TABLES
) -> list[str]:
    """The statements that make the audit tables refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL).

    Idempotent. ``dialect`` is ``"sqlite"`` or ``"postgresql"``; ``tables`` are the audit tables to
    guard (default: all of them).
    """
    statements: list[str] = []
    if dialect == "sqlite":
        prefix = f'"{schema}".' if schema else ""
        for table in tables:
            for op in ("UPDATE", "DELETE"):
                name = f'{prefix}"{table}_no_{op.lower()}"'
                statements.append(
                    f'CREATE TRIGGER IF NOT EXISTS {name} BEFORE {op} ON "{table}" '
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END"
                )
        return statements
    if dialect == "postgresql":
        fn = _qualify(_PG_FUNCTION, schema)
        statements.append(
            f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            # No '%' placeholders: drivers with the pyformat paramstyle would read them as parameters.
            "BEGIN RAISE EXCEPTION USING "
            "MESSAGE = TG_TABLE_NAME || ' is append-only: ' || TG_OP || ' refused', "
            "ERRCODE = 'insufficient_privilege'; END $$"
        )
        for table in tables:
            qualified = _qualify(table, schema)
            statements.append(
                f'CREATE OR REPLACE TRIGGER "{table}_append_only" BEFORE UPDATE OR DELETE ON {qualified} '
                f"FOR EACH ROW EXECUTE FUNCTION {fn}()"
            )
            # Row triggers do not fire on TRUNCATE; it needs its own statement-level trigger.
            statements.append(
                f'CREATE OR REPLACE TRIGGER "{table}_no_truncate" BEFORE TRUNCATE ON {qualified} '
                f"FOR EACH STATEMENT EXECUTE FUNCTION {fn}()"
            )
        return statements
    raise NotImplementedError(f"no append-only triggers for the {dialect} dialect")


def drop_append_only_ddl(
    dialect: str,
    schema: str | None = None,
    tables: Sequence[str] = APPEND_ONLY_TABLES,
    *,
    function: bool = True,
) -> list[str]:
    """The statements that remove the append-only triggers (for a migration's downgrade).

    ``function``: on PostgreSQL also drop the trigger function (only once no audit table's trigger
    uses it any more).
    """
    if dialect == "sqlite":
        prefix = f'"{schema}".' if schema else ""
        return [
            f'DROP TRIGGER IF EXISTS {prefix}"{table}_no_{op}"'
            for table in tables
            for op in ("update", "delete")
        ]
    if dialect == "postgresql":
        statements = [
            f'DROP TRIGGER IF EXISTS "{table}_{kind}" ON {_qualify(table, schema)}'
            for table in tables
            for kind in ("append_only", "no_truncate")
        ]
        if function:
            statements.append(f"DROP FUNCTION IF EXISTS {_qualify(_PG_FUNCTION, schema)}()")
        return statements
    raise NotImplementedError(f"no append-only triggers for the {dialect} dialect")


def _existing(connection: Connection, schema: str | None) -> list[str]:
    """The audit tables that exist in the database (a migration before 0009 has no subject runs yet)."""
    present = set(inspect(connection).get_table_names(schema=schema))
    return [table for table in APPEND_ONLY_TABLES if table in present]


def install_append_only_triggers(
    connection: Connection, *, schema: str | None = None, tables: Sequence[str] | None = None
) -> None:
    """Make the audit tables refuse UPDATE, DELETE (and TRUNCATE on PostgreSQL) on this connection's DB.

    Call it right after creating the tables, in the same migration. It runs in the caller's
    transaction and does not commit. Triggers only make tampering harder; the Merkle tree and signed
    checkpoints are what make it evident. ``tables``: default every audit table the database has.
    """
    chosen = _existing(connection, schema) if tables is None else tables
    for statement in append_only_ddl(connection.dialect.name, schema, chosen):
        connection.exec_driver_sql(statement)


def remove_append_only_triggers(
    connection: Connection, *, schema: str | None = None, tables: Sequence[str] | None = None
) -> None:
    """UNSAFE: drop the append-only triggers. Only for a migration's downgrade or a tampering test.

    ``tables``: default every audit table the database has (and, on PostgreSQL, the trigger function).
    """
    chosen = _existing(connection, schema) if tables is None else tables
    for statement in drop_append_only_ddl(connection.dialect.name, schema, chosen, function=tables is None):
        connection.exec_driver_sql(statement)
