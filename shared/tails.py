"""An active session's hot tail: its last turns, kept in the cache by ingest (appended at
each write, loaded from the database when not cached) and read by GetContext."""

from __future__ import annotations

import json

from sqlalchemy import select

from memlake.v1 import memory_pb2 as pb
from shared.convert import record_to_proto
from shared.db.engine import Database
from shared.db.models import MemoryRecord


def session_tail_key(tenant: str, user_id: str, agent_id: str, session_id: str) -> str:
    return json.dumps([tenant, user_id, agent_id, session_id], separators=(",", ":"))


def load_session_tail(
    db: Database, tenant: str, user_id: str, agent_id: str, session_id: str, size: int
) -> list[pb.Memory]:
    """The session's last `size` turns from the database, oldest first."""
    with db.read() as s:
        recs = list(
            s.scalars(
                select(MemoryRecord)
                .where(
                    MemoryRecord.tenant == tenant,
                    MemoryRecord.user_id == user_id,
                    MemoryRecord.agent_id == agent_id,
                    MemoryRecord.session_id == session_id,
                    MemoryRecord.type == pb.MEMORY_TYPE_CONVERSATION,
                )
                .order_by(MemoryRecord.turn_index.desc())
                .limit(size)
            )
        )
    return [record_to_proto(r) for r in reversed(recs)]


def refill_session_tail(
    cache,
    db: Database,
    tenant: str,
    user_id: str,
    agent_id: str,
    session_id: str,
    size: int,
    ttl_s: int,
) -> list[pb.Memory]:
    """Loads the session's tail from the database and caches it (when it has turns)."""
    from shared.cache import safe

    tail = load_session_tail(db, tenant, user_id, agent_id, session_id, size)
    if tail:
        key = session_tail_key(tenant, user_id, agent_id, session_id)
        safe(cache.set_tail, key, [m.SerializeToString() for m in tail], size, ttl_s)
    return tail
