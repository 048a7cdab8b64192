"""The change log: one row per memory write, in the write's own transaction.

Writers do not serialise on Postgres. Seqs come from the table's sequence in the order
they are allocated, so rows may commit out of seq order: seq 9 may still be in flight
when seq 10 is visible. A reader that went "seq > last" straight past 9 would never see
it. So every writer holds a *shared* advisory lock (shared locks never wait for each
other) from just before its seq is allocated to its commit, and ChangeCursor passes a
gap only once every writer that held that lock when the gap was seen has finished: by
then the row is either visible or was rolled back. SQLite commits one writer at a time,
in seq order, and needs none of this."""

from __future__ import annotations

import time

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from shared.db.bulk import insert_rows
from shared.db.models import ChangeLogEntry
from shared.db.types import utcnow

# Held in SHARE mode by every change-log writer from seq allocation to commit.
WRITER_LOCK = 7311003
_HOLDERS = text(
    "SELECT pid, virtualtransaction FROM pg_locks WHERE locktype = 'advisory'"
    " AND classid = 0 AND objid = :k AND objsubid = 1 AND granted"
)


def _pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def append(session: Session, tenant: str, memory_ids: list[int], op: str = "put") -> int:
    """Adds change-log rows as the last statement of a write; returns the highest seq."""
    if _pg(session):
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": WRITER_LOCK})
    rows = [ChangeLogEntry(tenant=tenant, memory_id=mid, op=op) for mid in memory_ids]
    session.add_all(rows)
    session.flush()
    return max(r.seq for r in rows)


def writers(session: Session) -> frozenset[tuple[int, str]]:
    """The change-log writers in flight now (pid, virtual transaction id)."""
    if not _pg(session):
        return frozenset()
    return frozenset((p, v) for p, v in session.execute(_HOLDERS, {"k": WRITER_LOCK}))


def append_each(session: Session, tenant: str, memory_ids: list[int], op: str = "put") -> list[int]:
    """append() for many distinct memories in one statement; returns each one's seq."""
    if _pg(session):
        session.execute(text("SELECT pg_advisory_xact_lock_shared(:k)"), {"k": WRITER_LOCK})
    same = {"tenant": tenant, "op": op, "create_time": utcnow()}
    rows = [(m,) for m in memory_ids]
    t = ChangeLogEntry.__table__
    got = dict(
        insert_rows(session.connection(), t, same, ("memory_id",), rows, ("memory_id", "seq"))
    )
    return [got[m] for m in memory_ids]  # memory ids are distinct: new rows


def last_seq(session: Session) -> int:
    return session.scalar(select(func.coalesce(func.max(ChangeLogEntry.seq), 0))) or 0


def stable_last_seq(session: Session, timeout: float = 30.0) -> int:
    """The highest seq such that every row at or below it is committed or rolled back
    (waits for the writers in flight to finish). Where a full load starts its catch-up."""
    top = last_seq(session)
    held = writers(session)
    end = time.monotonic() + timeout
    while held and held & writers(session) and time.monotonic() < end:
        time.sleep(0.01)
    return top


def read_after(session: Session, seq: int, limit: int = 2000) -> list[ChangeLogEntry]:
    """Rows after seq as visible now (may have gaps that later fill; see ChangeCursor)."""
    return list(
        session.scalars(
            select(ChangeLogEntry)
            .where(ChangeLogEntry.seq > seq)
            .order_by(ChangeLogEntry.seq)
            .limit(limit)
        )
    )


def _with_scope(upto: bool):
    """The statement of read_after_with_scope, built once (building it per call, ORM
    attributes and coercions, cost as much Python as running it)."""
    from sqlalchemy import bindparam

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
        .where(ChangeLogEntry.seq > bindparam("after"))
    )
    if upto:
        q = q.where(ChangeLogEntry.seq <= bindparam("upto"))
    return q.order_by(ChangeLogEntry.seq).limit(bindparam("limit"))


_SCOPED: dict[bool, object] = {}


def read_after_with_scope(session: Session, seq: int, limit: int = 2000, upto: int | None = None):
    """Like read_after, with each row's (tenant, user_id, agent_id) from the memory it
    names (None for a memory that no longer exists), so a reader can skip rows of scopes
    it does not hold before loading any memory. Rows: (seq, op, memory_id, tenant, user,
    agent)."""
    bounded = upto is not None
    stmt = _SCOPED.get(bounded)
    if stmt is None:
        stmt = _SCOPED[bounded] = _with_scope(bounded)
    params = {"after": seq, "limit": limit}
    if bounded:
        params["upto"] = upto
    return list(session.execute(stmt, params))


def _contiguous(rows: list, after: int, settled: int) -> list:
    """The rows up to the first gap above `settled` (gaps at or below it are final)."""
    out, expected = [], after + 1
    for r in rows:
        if r.seq != expected and r.seq - 1 > settled:
            break
        out.append(r)
        expected = r.seq + 1
    return out


class ChangeCursor:
    """Reads the change log in seq order and never passes a row that may still commit.

    Each statement of a Postgres read-committed session sees a fresh snapshot, so the
    order of the statements below is what makes this correct: rows are read, then the
    writers in flight are listed; a gap among the rows read belongs to one of those
    writers or to a transaction that already ended. Once none of them holds the writer
    lock any more, reading again shows every row up to what was seen, for good."""

    def __init__(self) -> None:
        self._settled = 0  # every gap at or below this seq is final
        self._wait: tuple[int, frozenset] | None = None  # (highest seq seen, writers)

    @property
    def waiting(self) -> bool:
        """A gap is waiting for writers in flight: reading again may show more rows."""
        return self._wait is not None

    def read(self, session: Session, after: int, limit: int = 2000, fetch=None) -> list:
        """fetch(session, after, limit): read_after (default) or read_after_with_scope;
        any rows with a .seq."""
        fetch = fetch or read_after
        rows = fetch(session, after, limit)
        if not rows or not _pg(session):
            return rows
        if self._wait is not None:
            upto, held = self._wait
            if held & writers(session):
                return _contiguous(rows, after, self._settled)
            self._wait = None
            self._settled = max(self._settled, upto)
            rows = fetch(session, after, limit)
        out = _contiguous(rows, after, self._settled)
        if len(out) < len(rows):  # a gap with later rows visible
            upto, held = rows[-1].seq, writers(session)
            if held:
                self._wait = (upto, held)
            else:  # every writer that could fill it has finished: read once more
                self._settled = max(self._settled, upto)
                out = _contiguous(fetch(session, after, limit), after, self._settled)
        return out
