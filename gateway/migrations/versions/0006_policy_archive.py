"""the policy archive and the recorded decision inputs

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 19:00:00.000000

Issue 11. Every revision that was ever activated is kept here, its files content-addressed by the
revision (``sha256:...`` over the files, as ``policy_revision`` computes it), so every replica and every
later ``gateway audit explain`` finds the exact Rego and data a decision was made with. Each decision's
input (identifiers and pseudonyms only, never payload content) is kept under the SHA-256 of its
canonical JSON; the audit entry's decision block names that digest (``inputDigest``), so identical
inputs are stored once and ``gateway policy impact`` can replay what was really decided.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from audit import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "policy_revisions",
        sa.Column("revision", sa.String(length=80), primary_key=True),
        # {relative path: file text} of every .rego and .json file of the revision, as canonical JSON.
        sa.Column("files", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        # The latest activation (a start or a reload, on any replica); the audit log has every reload.
        sa.Column("activated_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "decision_inputs",
        sa.Column("digest", sa.String(length=80), primary_key=True),
        sa.Column("input", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    with op.batch_alter_table("decision_inputs", schema=None) as batch_op:
        batch_op.create_index("ix_decision_inputs_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("decision_inputs", schema=None) as batch_op:
        batch_op.drop_index("ix_decision_inputs_created_at")
    op.drop_table("decision_inputs")
    op.drop_table("policy_revisions")
