"""audit: fewer b-trees written per append

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 12:30:00.000000

Issue 8 (durable appends at 5,000/s). Every entry inserted into each index of the audit tables, and a
commit writes every page those inserts dirtied:

- ``ix_audit_entries_actor_agency_idx`` and ``ix_audit_entries_counterpart_agency_idx`` are dropped:
  no search reads them (a search by agency reads ``audit_entry_agencies``, which names the actor and
  every counterpart). ``ix_audit_entries_trace_id`` too: no route, console page or command searches by
  trace, and its random keys cost about 1.6 dirty pages an entry, a fifth of a commit (a library
  search by ``trace_id`` still works, by reading the log). The columns stay: they are search columns
  the verifier checks.
- On SQLite, ``audit_entry_agencies``, ``audit_entry_subjects`` and ``audit_nodes`` become WITHOUT
  ROWID tables: their primary key was a second b-tree beside the rowid table; now the table is that
  b-tree. The rows are copied in primary-key order, the other index and the append-only triggers
  recreated. PostgreSQL has no such thing; there only the two indexes go.

Rows are only copied, never changed: the leaves, the tree and the search rows are the same after. On
SQLite the copy takes about half a minute for a million entries (27 s on the 2-vCPU test machine),
once, in one transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from audit import install_append_only_triggers

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LOG_INDEX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# (table, its columns, primary key, its other index (name, columns) or None)
_TABLES: list[tuple[str, list[str], list[str], tuple[str, list[str]] | None]] = [
    (
        "audit_entry_agencies",
        ["idx", "agency", "role"],
        ["idx", "agency", "role"],
        ("ix_audit_entry_agencies_agency_idx", ["agency", "idx"]),
    ),
    (
        "audit_entry_subjects",
        ["idx", "pseudonym"],
        ["idx", "pseudonym"],
        ("ix_audit_entry_subjects_pseudonym_idx", ["pseudonym", "idx"]),
    ),
    ("audit_nodes", ["level", "idx", "hash"], ["level", "idx"], None),
]


def _columns(table: str) -> list[sa.schema.SchemaItem]:
    """The table's columns and constraints as 0001 made them."""
    if table == "audit_entry_agencies":
        return [
            sa.Column("idx", _LOG_INDEX, nullable=False),
            sa.Column("agency", sa.String(length=64), nullable=False),
            sa.Column("role", sa.String(length=16), nullable=False),
            sa.ForeignKeyConstraint(
                ["idx"], ["audit_entries.idx"], name="fk_audit_entry_agencies_idx_audit_entries"
            ),
            sa.PrimaryKeyConstraint("idx", "agency", "role", name="pk_audit_entry_agencies"),
        ]
    if table == "audit_entry_subjects":
        return [
            sa.Column("idx", _LOG_INDEX, nullable=False),
            sa.Column("pseudonym", sa.String(length=128), nullable=False),
            sa.ForeignKeyConstraint(
                ["idx"], ["audit_entries.idx"], name="fk_audit_entry_subjects_idx_audit_entries"
            ),
            sa.PrimaryKeyConstraint("idx", "pseudonym", name="pk_audit_entry_subjects"),
        ]
    return [
        sa.Column("level", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("hash", sa.LargeBinary(length=32), nullable=False),
        sa.CheckConstraint("level BETWEEN 1 AND 63", name="ck_audit_nodes_level_range"),
        sa.PrimaryKeyConstraint("level", "idx", name="pk_audit_nodes"),
    ]


def _rebuild_sqlite(with_rowid: bool) -> None:
    """Recreate the side tables with or without a rowid, copying their rows in primary-key order."""
    bind = op.get_bind()
    for table, columns, key, index in _TABLES:
        for operation in ("update", "delete"):
            bind.exec_driver_sql(f'DROP TRIGGER IF EXISTS "{table}_no_{operation}"')
        if index is not None:
            op.drop_index(index[0], table_name=table)
        old = f"{table}_before_0008"
        op.rename_table(table, old)
        op.create_table(table, *_columns(table), sqlite_with_rowid=with_rowid)
        names = ", ".join(columns)
        bind.exec_driver_sql(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {old} ORDER BY {', '.join(key)}"  # noqa: S608
        )
        op.drop_table(old)
        if index is not None:
            op.create_index(index[0], table, index[1], unique=False)
    install_append_only_triggers(bind)


def _atomic_on_sqlite() -> None:
    """pysqlite begins a transaction at the first INSERT only: begin it now, so the rebuild is all or none."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and not bind.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        bind.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade() -> None:
    _atomic_on_sqlite()
    op.drop_index("ix_audit_entries_actor_agency_idx", table_name="audit_entries")
    op.drop_index("ix_audit_entries_counterpart_agency_idx", table_name="audit_entries")
    op.drop_index("ix_audit_entries_trace_id", table_name="audit_entries")
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(with_rowid=False)


def downgrade() -> None:
    _atomic_on_sqlite()
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(with_rowid=True)
    op.create_index("ix_audit_entries_trace_id", "audit_entries", ["trace_id"], unique=False)
    op.create_index(
        "ix_audit_entries_actor_agency_idx", "audit_entries", ["actor_agency", "idx"], unique=False
    )
    op.create_index(
        "ix_audit_entries_counterpart_agency_idx",
        "audit_entries",
        ["counterpart_agency", "idx"],
        unique=False,
    )
