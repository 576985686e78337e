"""messages: where shared-on data came from (based_on, origin)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 21:00:00.000000

A share may say which received messages its payload comes from (``basedOn``). The delivered message keeps
those ids and its lineage (purpose, information type and sender of every message it derives from), so
that sharing it on again is checked against every purpose the data was received for, not only the last.
Two nullable columns: existing messages derive from nothing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("based_on", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("origin", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("origin")
        batch_op.drop_column("based_on")
