"""cosignatures of the log's checkpoints by the agencies' witnesses

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 19:00:00.000000

Issue 12. The log submits each new checkpoint to its witnesses (C2SP tlog-witness ``add-checkpoint``);
each witness answers with a C2SP tlog-cosignature line, verified against the witness's pinned key
before it is kept here. ``GET /v1/audit/checkpoint`` serves a checkpoint with the cosignature lines
kept for it; the quorum policy counts them. Rows are only ever added.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from audit import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_cosignatures",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(length=32), nullable=False),
        # The witness's key name (the verifier key's name, e.g. ``witness.om.example``).
        sa.Column("witness", sa.String(length=255), nullable=False),
        # The whole signature line as it appears in the note: "— <name> <base64(keyid || sig)>".
        sa.Column("signature_line", sa.Text(), nullable=False),
        # The cosignature's own timestamp (seconds since the epoch), part of what it signs.
        sa.Column("cosigned_at", sa.BigInteger(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "tree_size", "root_hash", "witness", name="uq_audit_cosignatures_checkpoint_witness"
        ),
    )


def downgrade() -> None:
    op.drop_table("audit_cosignatures")
