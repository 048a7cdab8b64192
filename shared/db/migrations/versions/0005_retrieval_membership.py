"""retrieval membership: the replicas sharing index partitions and the ring they serve

- retrieval_members: one row per retrieval replica (ordinal, address, heartbeat, the ring
  epoch it is ready for, leaving);
- retrieval_ring: one row, the serving and the target ring (epochs and member ordinals).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "retrieval_members",
        sa.Column("ordinal", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("incarnation", sa.String(length=32), nullable=False),
        sa.Column("heartbeat", sa.Float(), nullable=False),
        sa.Column("ready_epoch", BigId, nullable=False),
        sa.Column("leaving", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "retrieval_ring",
        sa.Column("id", sa.SmallInteger(), primary_key=True, autoincrement=False),
        sa.Column("serving_epoch", BigId, nullable=False),
        sa.Column("serving", sa.Text(), nullable=False),
        sa.Column("target_epoch", BigId, nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("retrieval_ring")
    op.drop_table("retrieval_members")
