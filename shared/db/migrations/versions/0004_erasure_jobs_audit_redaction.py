"""erasure: jobs, audit redaction by a running job only, idempotency rows findable by item

- erasure_jobs: one row per erasure, written before the work and marked done after it;
- audit_events.redacted_by: the job that blanked a row; the triggers now allow exactly one
  UPDATE per row, by a running job of the row's tenant, that blanks user_id, agent_id,
  fact_key, reason and details and changes nothing else. DELETE stays refused;
- idempotency_keys.user_id, agent_id, memory_id, fact_key_id: what a request wrote, so
  Forget redacts and EraseSubject deletes its stored response.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 05:10:00
"""

import sqlalchemy as sa
from alembic import op

import shared.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The one UPDATE allowed on audit_events (NEW/OLD as in a row trigger).
_REDACTION = """
    OLD.redacted_by IS NULL AND NEW.redacted_by IS NOT NULL
    AND NEW.id = OLD.id AND NEW.tenant = OLD.tenant AND NEW.time = OLD.time
    AND NEW.action = OLD.action AND (NEW.actor = OLD.actor OR NEW.actor = '')
    AND NEW.key_id IS NOT DISTINCT FROM OLD.key_id
    AND NEW.fact_id IS NOT DISTINCT FROM OLD.fact_id
    AND NEW.user_id = '' AND NEW.agent_id = '' AND NEW.fact_key = '' AND NEW.reason = ''
    AND NEW.details{cast} = '{{}}'
    AND EXISTS (SELECT 1 FROM erasure_jobs j WHERE j.id = NEW.redacted_by
                AND j.tenant = OLD.tenant AND j.state = 'running')
"""

_PG_FUNCTION = (
    """
CREATE OR REPLACE FUNCTION memlake_audit_events_append_only() RETURNS trigger AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND ("""
    + _REDACTION.format(cast="::text")
    + """) THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_events is append-only (only an erasure job may redact a row)';
END;
$$ LANGUAGE plpgsql
"""
)

_PG_FUNCTION_0002 = """
CREATE OR REPLACE FUNCTION memlake_audit_events_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    op.create_table(
        "erasure_jobs",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("receipt", sa.JSON(), nullable=False),
        sa.Column("create_time", shared.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finish_time", shared.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_erasure_jobs_state", "erasure_jobs", ["tenant", "state"])
    # Plain ADD COLUMN (no batch copy), so SQLite keeps the table and its triggers.
    op.add_column("audit_events", sa.Column("redacted_by", BigId, nullable=True))
    for name, type_ in (
        ("user_id", sa.String(length=256)),
        ("agent_id", sa.String(length=256)),
        ("memory_id", BigId),
        ("fact_key_id", BigId),
    ):
        op.add_column("idempotency_keys", sa.Column(name, type_, nullable=True))
    op.create_index("ix_idempotency_keys_memory", "idempotency_keys", ["tenant", "memory_id"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)  # the 0002 trigger calls it for UPDATE and DELETE
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute(
            "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            "WHEN NOT ("
            + _REDACTION.format(cast="").replace("IS NOT DISTINCT FROM", "IS")
            + ") BEGIN SELECT RAISE(ABORT, 'audit_events is append-only "
            "(only an erasure job may redact a row)'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION_0002)
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute(
            "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
        )
    op.drop_index("ix_idempotency_keys_memory", table_name="idempotency_keys")
    with op.batch_alter_table("idempotency_keys") as batch_op:
        for name in ("fact_key_id", "memory_id", "agent_id", "user_id"):
            batch_op.drop_column(name)
    op.drop_column("audit_events", "redacted_by")
    op.drop_index("ix_erasure_jobs_state", table_name="erasure_jobs")
    op.drop_table("erasure_jobs")
