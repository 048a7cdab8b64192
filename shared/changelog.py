"""The change log: one row per memory write, in the write's own transaction."""

from __future__ import annotations

from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from shared.db.models import ChangeLogEntry
from shared.db.types import utcnow

# Held from the change-log insert to commit, so on Postgres rows commit in seq order and
# a tailer reading "seq > last" never skips a row that commits late.
_SEQ_LOCK = 7311002


def append(session: Session, tenant: str, memory_ids: list[int], op: str = "put") -> int:
    """Adds change-log rows as the last statement of a write; returns the highest seq."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SEQ_LOCK})
    rows = [ChangeLogEntry(tenant=tenant, memory_id=mid, op=op) for mid in memory_ids]
    session.add_all(rows)
    session.flush()
    return max(r.seq for r in rows)


def append_each(session: Session, tenant: str, memory_ids: list[int], op: str = "put") -> list[int]:
    """append() for many distinct memories in one statement; returns each one's seq."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SEQ_LOCK})
    now = utcnow()
    t = ChangeLogEntry.__table__
    got = dict(
        session.connection()
        .execute(
            insert(t).returning(t.c.memory_id, t.c.seq),
            [dict(tenant=tenant, memory_id=m, op=op, create_time=now) for m in memory_ids],
        )
        .all()
    )
    return [got[m] for m in memory_ids]  # memory ids are distinct: new rows


def last_seq(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.max(ChangeLogEntry.seq), 0))) or 0


def read_after(session: Session, seq: int, limit: int = 2000) -> list[ChangeLogEntry]:
    return list(
        session.scalars(
            select(ChangeLogEntry)
            .where(ChangeLogEntry.seq > seq)
            .order_by(ChangeLogEntry.seq)
            .limit(limit)
        )
    )


def read_after_with_scope(session: Session, seq: int, limit: int = 2000, upto: int | None = None):
    """Like read_after, with each row's (tenant, user_id, agent_id) from the memory it
    names (None for a memory that no longer exists), so a reader can skip rows of scopes
    it does not hold before loading any memory. Rows: (seq, op, memory_id, tenant, user,
    agent)."""
    from shared.db.models import MemoryRecord

    q = (
        select(
            ChangeLogEntry.seq,
            ChangeLogEntry.op,
            ChangeLogEntry.memory_id,
            MemoryRecord.tenant,
            MemoryRecord.user_id,
            MemoryRecord.agent_id,
        )
        .outerjoin(MemoryRecord, MemoryRecord.id == ChangeLogEntry.memory_id)
        .where(ChangeLogEntry.seq > seq)
    )
    if upto is not None:
        q = q.where(ChangeLogEntry.seq <= upto)
    return list(session.execute(q.order_by(ChangeLogEntry.seq).limit(limit)))
