"""audit: index entry_time together with idx

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 20:10:00.000000

A time-range search first reads the lowest and highest log index of the entries in the range. With
(entry_time) alone PostgreSQL fetches every row in the range from the table for its idx (and both
databases preferred walking the primary key); with (entry_time, idx) the range is read from the index
alone, so a one-week range on a million-entry log takes milliseconds rather than most of a second.
On SQLite the new index holds the same as the old one (the rowid is the idx); it is renamed for one
schema on both. Index changes only: the append-only triggers are untouched.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_entries_entry_time_idx", "audit_entries", ["entry_time", "idx"], unique=False)
    op.drop_index("ix_audit_entries_entry_time", table_name="audit_entries")


def downgrade() -> None:
    op.create_index("ix_audit_entries_entry_time", "audit_entries", ["entry_time"], unique=False)
    op.drop_index("ix_audit_entries_entry_time_idx", table_name="audit_entries")
