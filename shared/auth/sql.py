"""Grants as SQL over memory records, for reads that filter in the database."""

from __future__ import annotations

from sqlalchemy import and_, false, or_

from shared.db.models import MemoryRecord


def granted_sql(grants):
    """SQL for "one of these read grants allows this row" (True when grants is None: the
    caller may read everything)."""
    if grants is None:
        return MemoryRecord.id.is_not(None)
    clauses = []
    for g in grants:
        parts = []
        if g.types:
            parts.append(MemoryRecord.type.in_(sorted(g.types)))
        for values, col in (
            (g.users, MemoryRecord.user_id),
            (g.agents, MemoryRecord.agent_id),
            (g.sessions, MemoryRecord.session_id),
        ):
            if values:
                parts.append(col.in_(sorted(values)))
        clauses.append(and_(*parts) if parts else MemoryRecord.id.is_not(None))
    return or_(*clauses) if clauses else false()
