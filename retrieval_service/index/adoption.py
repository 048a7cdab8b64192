"""Ownership moves for IndexManager m: building partitions from the database by scope
(not by replaying the whole log) when this replica starts owning them, and dropping
the ones it no longer owns once a grace has passed (peers still routing by the previous
ring reach this replica meanwhile, and it still answers).

What this replica holds is m.ring (ownership.View): what it owns in the serving ring or
in the target ring. retrieval_service/membership.py swaps the view in and calls rehome."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from sqlalchemy import select

from retrieval_service.index import snapshots
from retrieval_service.index.partition import Partition, partition_key
from shared import changelog
from shared.db.models import MemoryRecord

log = logging.getLogger("memlake.index")


def scope_query(key: tuple[str, str]):
    tenant, k = key
    q = select(MemoryRecord).where(MemoryRecord.tenant == tenant)
    if k.startswith("u:"):
        return q.where(MemoryRecord.user_id == k[2:])
    q = q.where(MemoryRecord.user_id == "")
    return q.where(MemoryRecord.agent_id == (k[2:] if k.startswith("a:") else ""))


def discover(m) -> set[tuple[str, str]]:
    """Every partition key the database has memories for."""
    with m.db.read() as s:
        rows = s.execute(
            select(MemoryRecord.tenant, MemoryRecord.user_id, MemoryRecord.agent_id).distinct()
        )
        return {partition_key(t, u, a) for t, u, a in rows}


def adopt(m, keys: Iterable[tuple[str, str]], held: bool = False) -> int:
    """Builds partitions from the database by scope, outside the apply lock; then under it
    installs them and replays the log rows that arrived meanwhile. A copy the tail started
    meanwhile (the view already said this replica holds the key, so new rows went there)
    is replaced: the built one has every row. Rows seen twice are harmless: a put re-reads
    the memory. held: building what the view says this replica holds, so a key the view
    no longer gives it (the rings moved on during a long build) is skipped."""
    keys = [k for k in keys if k not in m.partitions and k not in m._stored]
    if not keys:
        return 0
    with m.db.read() as s:
        seq0 = changelog.stable_last_seq(s)  # nothing at or below it still in flight
    built: dict[tuple[str, str], Partition | bytes] = {}
    for key in keys:
        if held and not m.ring.owns(key):
            continue
        p = m._new_partition()
        with m.db.read() as s:
            recs = list(s.scalars(scope_query(key).order_by(MemoryRecord.id)))
        for rec in sorted(recs, key=lambda r: (r.session_id, r.turn_index or 0, r.id)):
            vec = m._vector(rec)
            if vec is not None:
                p.put(rec, vec)
        built[key] = snapshots.pack(p) if m._packable(p) else p  # small: packed at once
    if not built:
        return 0
    with m._apply_lock, m._load_lock:  # the order _remove takes them in
        for key, p in built.items():
            old = m.partitions.get(key)
            if old is not None:
                for mid in old.row_of:
                    m.where.pop(mid, None)
            with m._load_lock:
                m._forget_packed(key)  # a copy the tail started and packed meanwhile
                m.partitions.pop(key, None)
                if isinstance(p, bytes):
                    m._stored[key] = m._arena.put(p)
                    ids = snapshots.packed_ids(p).tolist()
                else:
                    m.partitions[key] = p
                    ids = p.row_of
            for mid in ids:
                m.where[mid] = key
            m._dirty.add(key)
        pos = seq0
        while pos < m.applied_seq:
            with m.db.read() as s:
                rows = changelog.read_after_with_scope(s, pos, upto=m.applied_seq)
                recs = m._records_for(s, rows, lambda k: k in built)
            if not rows:
                break
            for r in rows:
                rec = recs.get(r.memory_id) if r.op == "put" else None
                if rec is not None:
                    m._put(rec)
                elif (r.op != "put" or r.tenant is None) and m.where.get(r.memory_id) in built:
                    m._remove(r.memory_id)
            pos = rows[-1].seq
        m._pack(list(built))  # built cold: small ones are kept packed until used
    log.info("built %d index partitions from the database", len(built))
    return len(built)


def rehome(m) -> int:
    """Builds every partition the current view says this replica holds and it lacks."""
    view = m.ring
    missing = {
        k for k in discover(m) if view.owns(k) and k not in m.partitions and k not in m._stored
    }
    return adopt(m, missing, held=True) if missing else 0


def release(m, grace_s: float) -> int:
    """Drops the partitions this replica no longer holds (not owned in either ring, not
    borrowed) once they have been so for grace_s; returns how many it dropped."""
    now = time.monotonic()
    view = m.ring
    held = [k for k in [*m.partitions, *m._stored] if not view.owns(k) and k not in m._used]
    since = m._unowned_since
    for k in [k for k in since if k not in held]:
        del since[k]  # owned again, or already gone
    due = []
    for k in held:
        t = since.setdefault(k, now)
        if now - t >= grace_s:
            due.append(k)
    if not due:
        return 0
    with m._apply_lock, m._load_lock:  # the order _remove takes them in
        for k in due:
            if m.ring.owns(k) or k in m._used:
                continue
            p = m.partitions.pop(k, None)
            m._forget_packed(k)
            m._stored.pop(k, None)
            m._hot.pop(k, None)
            since.pop(k, None)
            m._dirty.add(k)  # the next snapshot's manifest leaves it out
            if p is not None:
                for mid in p.row_of:
                    m.where.pop(mid, None)
    log.info("dropped %d index partitions now owned by other replicas", len(due))
    return len(due)
