"""authentication: tenants, API keys (hashed), and the access audit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 05:00:00
"""

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TIME = shared.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("audit_reads", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("role", sa.SmallInteger(), nullable=False),
        sa.Column("grants", sa.JSON(), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("hash_params", sa.String(length=64), nullable=False),
        sa.Column("parent_key_id", sa.String(length=64), nullable=True),
        sa.Column("create_time", _TIME, nullable=False),
        sa.Column("expire_time", _TIME, nullable=True),
        sa.Column("revoke_time", _TIME, nullable=True),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.create_index("ix_api_keys_tenant", "api_keys", ["tenant"])
    op.create_index("ix_api_keys_parent_key_id", "api_keys", ["parent_key_id"])
    op.create_table(
        "access_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("time", _TIME, nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=256), nullable=False),
        sa.Column("agent_id", sa.String(length=256), nullable=False),
        sa.Column("session_id", sa.String(length=256), nullable=False),
        sa.Column("target_ids", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=256), nullable=False),
        sa.Column("peer", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_access_events_tenant", "access_events", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_access_events_tenant", table_name="access_events")
    op.drop_table("access_events")
    op.drop_index("ix_api_keys_parent_key_id", table_name="api_keys")
    op.drop_index("ix_api_keys_tenant", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
