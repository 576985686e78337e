"""one-time login links of the privacy officers' console

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 17:00:00.000000

Issue 10. ``gateway console-link`` mints a link whose token is stored here only as its SHA-256, with an
expiry of a few minutes; the first visit spends it (``used_at``), in one conditional UPDATE, so two
gateway processes cannot both accept it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "console_login_links",
        sa.Column("token_hash", sa.String(length=64), primary_key=True),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("console_login_links")
