"""fact versioning: lookup indexes, and an append-only audit log

- fact_versions.memory_id: a value's copies are found by the memory record they share
  (conflict members, GetFact on a conflicted key);
- fact_conflicts (tenant, user_id, agent_id, status): the review queue of a scope;
- audit_events (tenant, id): ListAuditEvents pages by id within a tenant;
- triggers that make the database refuse UPDATE and DELETE on audit_events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 06:00:00
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION memlake_audit_events_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql
"""


def upgrade() -> None:
    with op.batch_alter_table("fact_versions", schema=None) as batch_op:
        batch_op.create_index("ix_fact_versions_memory_id", ["memory_id"], unique=False)
    with op.batch_alter_table("fact_conflicts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_fact_conflicts_scope_status",
            ["tenant", "user_id", "agent_id", "status"],
            unique=False,
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.create_index("ix_audit_events_tenant", ["tenant", "id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION memlake_audit_events_append_only()"
        )
    else:
        for what in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{what.lower()} BEFORE {what} ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS memlake_audit_events_append_only()")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_tenant")
    with op.batch_alter_table("fact_conflicts", schema=None) as batch_op:
        batch_op.drop_index("ix_fact_conflicts_scope_status")
    with op.batch_alter_table("fact_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_fact_versions_memory_id")
