"""audit: a person's entries found through sealed runs, not a per-append random index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 15:00:00.000000

Issue 8 (durable appends at 5,000/s). ``ix_audit_entry_subjects_pseudonym_idx`` put each of an entry's
two or three subject rows at a random place of a b-tree of millions of rows: a dirty page each, more
than half of the pages a commit wrote and fsynced (with it 32 writers got about 2,000 entries/s, without
it about 4,800/s on the same log). It is dropped. ``audit_subject_runs`` holds the same rows, keyed by
(run_end, pseudonym, idx), for the entries before the last ``run_end``: the log writes a run, sorted
by person, each time its size passes a multiple of ``SUBJECT_RUN`` (``audit._internal.schema``),
consecutive pages at the table's end. A search by person seeks once in each run and scans the few
thousand subject rows of the entries after the last run by their index.

This migration writes the history before the last multiple of ``SUBJECT_RUN`` as runs of
``SUBJECT_RUN`` entries each (about ten seconds for a million entries on SQLite), as the log seals
them: each run lies within one of the verifier's chunks, which checks it there.
``audit_entry_subjects`` is unchanged: the rows the verifier checks stay where they are.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from audit import install_append_only_triggers, remove_append_only_triggers
from audit._internal import schema

# Runs of schema.SUBJECT_RUN entries, each ending at a multiple of it, as the store seals them.

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_LOG_INDEX = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TABLE = "audit_subject_runs"
_INDEX = "ix_audit_entry_subjects_pseudonym_idx"


def _atomic_on_sqlite() -> None:
    """pysqlite begins a transaction at the first INSERT only: begin it now, so this is all or none."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and not bind.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        bind.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade() -> None:
    _atomic_on_sqlite()
    bind = op.get_bind()
    op.create_table(
        _TABLE,
        sa.Column("run_end", _LOG_INDEX, autoincrement=False, nullable=False),
        sa.Column("pseudonym", sa.String(length=128), nullable=False),
        sa.Column("idx", _LOG_INDEX, autoincrement=False, nullable=False),
        sa.CheckConstraint("idx >= 0 AND idx < run_end", name="ck_audit_subject_runs_idx_in_run"),
        sa.PrimaryKeyConstraint("run_end", "pseudonym", "idx", name="pk_audit_subject_runs"),
        sqlite_with_rowid=False,
    )
    size = bind.exec_driver_sql("SELECT coalesce(max(idx) + 1, 0) FROM audit_entries").scalar() or 0
    run = schema.SUBJECT_RUN
    end = int(size) // run * run
    if end:
        bind.exec_driver_sql(
            f"INSERT INTO {_TABLE} (run_end, pseudonym, idx) "  # noqa: S608 (constants only)
            f"SELECT (idx / {run} + 1) * {run}, pseudonym, idx FROM audit_entry_subjects "
            f"WHERE idx < {end} ORDER BY 1, pseudonym, idx"
        )
    install_append_only_triggers(bind, tables=[_TABLE])
    op.drop_index(_INDEX, table_name="audit_entry_subjects")


def downgrade() -> None:
    _atomic_on_sqlite()
    op.create_index(_INDEX, "audit_entry_subjects", ["pseudonym", "idx"], unique=False)
    remove_append_only_triggers(op.get_bind(), tables=[_TABLE])
    op.drop_table(_TABLE)
