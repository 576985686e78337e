"""sealed identities and messages, case keys, shares and the delivery outbox

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 16:00:00.000000

Issue 9. Subjects get their BSN sealed with a per-case key (``subjects.identity``), whose wrapped form
lives in ``case_keys`` (the key that unwraps it lives outside the database). Messages get their content
sealed (``messages.sealed``); ``messages.payload`` stays for rows stored before this revision and is
emptied when the gateway seals them. ``shares`` keeps each share's recipients for
``GET /v1/shares/{shareId}``; ``outbox`` holds one row per push, written in the share's transaction.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identities_erased_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity", sa.LargeBinary(), nullable=True))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.alter_column("payload", existing_type=sa.JSON(), nullable=True)
        batch_op.add_column(sa.Column("sealed", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("retain_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "case_keys",
        sa.Column("case_id", sa.String(length=64), sa.ForeignKey("cases.case_id"), primary_key=True),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "shares",
        sa.Column("share_id", sa.String(length=64), primary_key=True),
        sa.Column("case_id", sa.String(length=64), sa.ForeignKey("cases.case_id"), nullable=False),
        sa.Column("sender", sa.String(length=32), nullable=False),
        sa.Column("information_type", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(length=64), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_shares_case_id", "shares", ["case_id"])
    op.create_table(
        "outbox",
        sa.Column("message_id", sa.String(length=64), sa.ForeignKey("messages.message_id"), primary_key=True),
        sa.Column("share_id", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=200), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_outbox_share_id", "outbox", ["share_id"])
    op.create_index("ix_outbox_status_next", "outbox", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_status_next", table_name="outbox")
    op.drop_index("ix_outbox_share_id", table_name="outbox")
    op.drop_table("outbox")
    op.drop_index("ix_shares_case_id", table_name="shares")
    op.drop_table("shares")
    op.drop_table("case_keys")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
        batch_op.drop_column("retain_until")
        batch_op.drop_column("sealed")
        batch_op.alter_column("payload", existing_type=sa.JSON(), nullable=False)
    with op.batch_alter_table("subjects", schema=None) as batch_op:
        batch_op.drop_column("identity")
    with op.batch_alter_table("cases", schema=None) as batch_op:
        batch_op.drop_column("identities_erased_at")
