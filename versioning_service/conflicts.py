"""The conflict review queue: queueing, settling, resolving, and semantic candidates.
No grpc.

A conflict names its facts by version id; since a version's status change writes a copy,
the members are tracked by memory_id (shared by a value's copies). A version is CONFLICTED
exactly while it is a member of an OPEN conflict. When an open conflict is left with fewer
than two believed CONFLICTED members (a later assertion superseded one, or one was
retracted), it is closed as RESOLVED automatically and audited.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from memlake.v1 import versioning_service_pb2 as vpb
from shared.db.models import FactConflict, FactKey, FactVersion
from shared.embedding import from_bytes
from versioning_service import audit
from versioning_service.versions import (
    CONFLICTED,
    CURRENT,
    RETRACTED,
    SUPERSEDED,
    Tx,
    earliest,
    live,
    nonempty,
    rewrite,
)

OPEN, RESOLVED, DISMISSED = (
    vpb.CONFLICT_STATUS_OPEN,
    vpb.CONFLICT_STATUS_RESOLVED,
    vpb.CONFLICT_STATUS_DISMISSED,
)
VALUE, SEMANTIC = vpb.CONFLICT_KIND_VALUE, vpb.CONFLICT_KIND_SEMANTIC
KEEP_ONE, KEEP_BOTH, DISMISS = (
    vpb.CONFLICT_RESOLUTION_KEEP_ONE,
    vpb.CONFLICT_RESOLUTION_KEEP_BOTH,
    vpb.CONFLICT_RESOLUTION_DISMISS,
)


def member_memory_ids(s: Session, c: FactConflict) -> set[int]:
    if not c.version_ids:
        return set()
    return set(
        s.scalars(
            select(FactVersion.memory_id).where(FactVersion.id.in_([int(i) for i in c.version_ids]))
        )
    )


def open_conflicts(s: Session, tenant: str, user_id: str, agent_id: str) -> list[FactConflict]:
    return list(
        s.scalars(
            select(FactConflict)
            .where(
                FactConflict.tenant == tenant,
                FactConflict.user_id == user_id,
                FactConflict.agent_id == agent_id,
                FactConflict.status == OPEN,
            )
            .order_by(FactConflict.id)
        )
    )


def live_members(s: Session, c: FactConflict, *, conflicted_only: bool = True) -> list[FactVersion]:
    mids = member_memory_ids(s, c)
    if not mids:
        return []
    q = select(FactVersion).where(
        FactVersion.memory_id.in_(mids),
        FactVersion.record_end_time.is_(None),
        FactVersion.status != RETRACTED,
    )
    if conflicted_only:
        q = q.where(FactVersion.status == CONFLICTED)
    return list(s.scalars(q.order_by(FactVersion.valid_from, FactVersion.record_time)))


def latest_rows(s: Session, c: FactConflict) -> list[FactVersion]:
    """Per member value, its newest version row (the believed one while it is believed)."""
    mids = member_memory_ids(s, c)
    rows = list(
        s.scalars(
            select(FactVersion).where(FactVersion.memory_id.in_(mids)).order_by(FactVersion.id)
        )
    )
    newest: dict[int, FactVersion] = {}
    for r in rows:
        newest[r.memory_id] = r
    return sorted(newest.values(), key=lambda v: (v.valid_from, v.id))


def queue(
    tx: Tx,
    kind: int,
    key: FactKey,
    members: list[FactVersion],
    similarity: float | None = None,
) -> FactConflict:
    """Adds members to the key's open conflict of this kind, or opens one."""
    c = None
    if kind == VALUE:
        c = next(
            (
                x
                for x in open_conflicts(tx.s, tx.tenant, key.user_id, key.agent_id)
                if x.kind == VALUE and x.key_id == key.id
            ),
            None,
        )
    if c is None:
        c = FactConflict(
            tenant=tx.tenant,
            user_id=key.user_id,
            agent_id=key.agent_id,
            key_id=key.id,
            kind=kind,
            status=OPEN,
            version_ids=[],
            similarity=similarity,
            create_time=tx.now,
        )
        tx.s.add(c)
    known = member_memory_ids(tx.s, c)
    ids = list(c.version_ids or [])
    for v in members:
        if v.memory_id not in known:
            ids.append(v.id)
            known.add(v.memory_id)
    c.version_ids = ids
    if similarity is not None:
        c.similarity = max(similarity, c.similarity or 0.0)
    tx.s.flush()
    return c


def normalize(tx: Tx, key_id: int) -> None:
    """Makes a key's believed chain consistent after a conflict closed: versions that are no
    longer in an open conflict take their place by valid_from (an earlier one's valid_to is
    closed at the next one's valid_from) and the latest is CURRENT."""
    tx.lock_keys([key_id])
    key = tx.keys[key_id]
    in_open: set[int] = set()
    for c in open_conflicts(tx.s, tx.tenant, key.user_id, key.agent_id):
        in_open |= member_memory_ids(tx.s, c)
    versions = live(tx.s, key_id)
    chain = [
        v
        for v in versions
        if nonempty(v) and not (v.status == CONFLICTED and v.memory_id in in_open)
    ]
    for i, v in enumerate(chain):
        nxt = chain[i + 1] if i + 1 < len(chain) else None
        new_to = v.valid_to
        if nxt is not None:
            new_to = earliest(v.valid_to, nxt.valid_from)
        if v.status == CONFLICTED:
            new_status = CURRENT if nxt is None else SUPERSEDED
        elif v.status == CURRENT and nxt is not None:
            new_status = SUPERSEDED
        else:
            new_status = v.status
        rewrite(tx, v, status=new_status, valid_to=new_to)
    for v in versions:
        if not nonempty(v) and v.status == CONFLICTED and v.memory_id not in in_open:
            rewrite(tx, v, status=SUPERSEDED)


def settle(tx: Tx, why: str) -> list[FactConflict]:
    """Closes open conflicts that lost members in this transaction (fewer than two left)."""
    closed: list[FactConflict] = []
    while tx.unconflicted:
        gone = set(tx.unconflicted)
        tx.unconflicted.clear()
        scopes = {(tx.keys[k].user_id, tx.keys[k].agent_id) for k in list(tx.keys) if k in tx.keys}
        for user_id, agent_id in scopes:
            for c in open_conflicts(tx.s, tx.tenant, user_id, agent_id):
                mids = member_memory_ids(tx.s, c)
                if not mids & gone:
                    continue
                left = live_members(tx.s, c)
                if len(left) >= 2:
                    continue
                c.status, c.resolve_time = RESOLVED, tx.now
                c.resolved_by, c.resolution_reason = tx.actor or "", why
                tx.s.flush()
                tx.lock_keys(v.key_id for v in left)
                for v in left:
                    normalize(tx, v.key_id)
                audit.record(
                    tx,
                    "RESOLVE",
                    tx.keys.get(c.key_id) or tx.s.get(FactKey, c.key_id),
                    left[0] if left else None,
                    {"conflict_id": c.id, "automatic": True, "why": why},
                )
                closed.append(c)
    return closed


def resolve(
    tx: Tx, c: FactConflict, resolution: int, keep_memory_id: int | None
) -> list[FactVersion]:
    """Applies a reviewer's decision to an OPEN conflict whose keys tx has locked. Returns
    the members' believed rows afterwards."""
    members = live_members(tx.s, c)
    c.status = DISMISSED if resolution == DISMISS else RESOLVED
    c.resolution, c.resolve_time = resolution, tx.now
    c.resolved_by, c.resolution_reason = tx.actor or "", tx.reason or ""
    tx.s.flush()
    if resolution == KEEP_ONE:
        keep = next(v for v in members if v.memory_id == keep_memory_id)
        for v in members:
            if v is keep:
                continue
            if v.valid_from < keep.valid_from:
                # True until the kept value began.
                rewrite(tx, v, status=SUPERSEDED, valid_to=earliest(v.valid_to, keep.valid_from))
            else:
                # Not believed for any valid time any more.
                rewrite(tx, v, status=SUPERSEDED, valid_to=v.valid_from)
    elif resolution == KEEP_BOTH:
        for v, nxt in zip(members, members[1:], strict=False):
            rewrite(tx, v, status=SUPERSEDED, valid_to=earliest(v.valid_to, nxt.valid_from))
    for key_id in sorted({v.key_id for v in members}):
        normalize(tx, key_id)
    return members


# -- semantic candidates for free-text facts ------------------------------------------------


def semantic_near(
    vec: np.ndarray, candidates: Iterable[FactVersion], value_norm: str, threshold: float
) -> list[tuple[FactVersion, float]]:
    """Believed versions close in meaning (cosine >= threshold) but not the same statement."""
    out = []
    for v in candidates:
        if not v.embedding or v.value_norm == value_norm:
            continue
        other = from_bytes(v.embedding)
        if other.shape != vec.shape:
            continue  # embedded by another model
        sim = float(np.dot(vec, other))
        if sim >= threshold:
            out.append((v, sim))
    return sorted(out, key=lambda p: -p[1])
