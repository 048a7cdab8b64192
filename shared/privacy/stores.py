"""One step per store. Each runs inside the caller's transaction and returns counts."""

from __future__ import annotations

import json
from collections import Counter

from sqlalchemy import case, delete, or_, select, update
from sqlalchemy.orm import Session

from memlake.v1 import memory_pb2 as pb
from shared import changelog
from shared.cache import Cache
from shared.db.models import (
    AccessEvent,
    ApiKeyRecord,
    AuditEvent,
    FactConflict,
    FactKey,
    FactVersion,
    IdempotencyKey,
    MemoryRecord,
)

# A fact key that only serialises free-text assertions of a subject (versioning_service).
SUBJECT_LOCK_PREDICATE = "~"


def delete_memories(s: Session, tenant: str, ids: list[int]) -> tuple[Counter, int]:
    """Deletes memory rows and writes a change-log "delete" per row, which makes the index
    drop the row's vector, postings and document. Returns counts and the last seq (0)."""
    counts: Counter = Counter()
    if not ids:
        return counts, 0
    rows = s.execute(
        select(MemoryRecord.id, MemoryRecord.current).where(
            MemoryRecord.tenant == tenant, MemoryRecord.id.in_(ids)
        )
    ).all()
    found = [r.id for r in rows]
    counts["memories"] = sum(1 for r in rows if r.current)
    counts["revisions"] = len(rows) - counts["memories"]
    if not found:
        return counts, 0
    s.execute(delete(MemoryRecord).where(MemoryRecord.id.in_(found)))
    seq = changelog.append(s, tenant, found, op="delete")
    counts["index_deletes"] = len(found)
    return counts, seq


def redact_idempotency(s: Session, tenant: str, *, memory_ids=(), fact_key_ids=()) -> int:
    """Forget: the stored responses of the requests that wrote these items are emptied;
    a retry of such a request_id gets FAILED_PRECONDITION (REQUEST_FORGOTTEN), never the
    forgotten content and never a second copy."""
    conds = []
    if memory_ids:
        conds.append(IdempotencyKey.memory_id.in_(list(memory_ids)))
    if fact_key_ids:
        conds.append(IdempotencyKey.fact_key_id.in_(list(fact_key_ids)))
    if not conds:
        return 0
    res = s.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.tenant == tenant, or_(*conds), IdempotencyKey.response != b"")
        .values(response=b"")
    )
    return res.rowcount or 0


def delete_idempotency(s: Session, tenant: str, *conds) -> int:
    q = delete(IdempotencyKey).where(IdempotencyKey.tenant == tenant)
    if conds:
        q = q.where(or_(*conds))
    return s.execute(q).rowcount or 0


def delete_legacy_idempotency(s: Session, tenant: str, kind: str, subject: str) -> int:
    """Rows written before migration 0004 name nothing in columns: their stored response
    (a RememberResponse, or an Assert/RetractFactResponse) is read for its scope."""
    from memlake.v1 import ingest_service_pb2 as ipb
    from memlake.v1 import versioning_service_pb2 as vpb

    gone = []
    rows = s.execute(
        select(IdempotencyKey.request_id, IdempotencyKey.response).where(
            IdempotencyKey.tenant == tenant,
            IdempotencyKey.user_id.is_(None),
            IdempotencyKey.agent_id.is_(None),
            IdempotencyKey.memory_id.is_(None),
            IdempotencyKey.fact_key_id.is_(None),
        )
    ).all()
    for request_id, data in rows:
        scopes = []
        for parse, get in (
            (ipb.RememberResponse.FromString, lambda m: m.memory.scope),
            (vpb.AssertFactResponse.FromString, lambda m: m.fact.scope),
        ):
            try:
                scopes.append(get(parse(data)))
            except Exception:  # noqa: BLE001 - not this message type
                continue
        field = "user_id" if kind == "user" else "agent_id"
        if any(getattr(sc, field) == subject for sc in scopes):
            gone.append(request_id)
    if gone:
        s.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.tenant == tenant, IdempotencyKey.request_id.in_(gone)
            )
        )
    return len(gone)


def erase_fact_keys(s: Session, tenant: str, key_ids: list[int]) -> tuple[Counter, list[int]]:
    """Every version, conflict and key row of these keys. Returns counts and the ids of the
    memory records the versions were searchable as (the caller deletes them)."""
    counts: Counter = Counter()
    if not key_ids:
        return counts, []
    versions = s.execute(
        select(FactVersion.id, FactVersion.memory_id).where(FactVersion.key_id.in_(key_ids))
    ).all()
    version_ids = {v.id for v in versions}
    memory_ids = {v.memory_id for v in versions if v.memory_id is not None}
    keys = list(s.scalars(select(FactKey).where(FactKey.id.in_(key_ids))))
    for k in keys:  # the records of the key, whatever version they were written for
        memory_ids.update(
            s.scalars(
                select(MemoryRecord.id).where(
                    MemoryRecord.tenant == tenant,
                    MemoryRecord.type == pb.MEMORY_TYPE_FACT,
                    MemoryRecord.user_id == k.user_id,
                    MemoryRecord.agent_id == k.agent_id,
                    MemoryRecord.key == f"{k.subject_norm}|{k.predicate_norm}",
                )
            )
        )
    # Conflicts of these keys, and semantic conflicts naming one of their versions.
    scopes = {(k.user_id, k.agent_id) for k in keys}
    conflict_ids = set()
    for user_id, agent_id in scopes:
        for c in s.scalars(
            select(FactConflict).where(
                FactConflict.tenant == tenant,
                FactConflict.user_id == user_id,
                FactConflict.agent_id == agent_id,
            )
        ):
            if c.key_id in key_ids or version_ids & set(c.version_ids or []):
                conflict_ids.add(c.id)
    if conflict_ids:
        s.execute(delete(FactConflict).where(FactConflict.id.in_(conflict_ids)))
    s.execute(delete(FactVersion).where(FactVersion.key_id.in_(key_ids)))
    s.execute(delete(FactKey).where(FactKey.id.in_(key_ids)))
    counts.update(
        fact_versions=len(version_ids), fact_conflicts=len(conflict_ids), fact_keys=len(keys)
    )
    # A free-text subject's lock key names the subject: gone with its last key.
    for k in keys:
        if k.predicate_norm == SUBJECT_LOCK_PREDICATE:
            continue
        others = s.scalar(
            select(FactKey.id)
            .where(
                FactKey.tenant == tenant,
                FactKey.user_id == k.user_id,
                FactKey.agent_id == k.agent_id,
                FactKey.subject_norm == k.subject_norm,
                FactKey.predicate_norm != SUBJECT_LOCK_PREDICATE,
            )
            .limit(1)
        )
        if others is None:
            lock = select(FactKey.id).where(
                FactKey.tenant == tenant,
                FactKey.user_id == k.user_id,
                FactKey.agent_id == k.agent_id,
                FactKey.subject_norm == k.subject_norm,
                FactKey.predicate_norm == SUBJECT_LOCK_PREDICATE,
            )
            lock_ids = list(s.scalars(lock))
            if lock_ids and not s.scalar(
                select(FactVersion.id).where(FactVersion.key_id.in_(lock_ids)).limit(1)
            ):
                s.execute(delete(FactKey).where(FactKey.id.in_(lock_ids)))
                counts["fact_keys"] += len(lock_ids)
    return counts, sorted(memory_ids)


def redact_audit(s: Session, tenant: str, job_id: int, *conds, actor: str = "") -> int:
    """Blanks the content of matching audit rows (who it was about, the fact key, reason,
    details) and marks them redacted by the job; the action, time, ids and, unless it is
    the erased subject, the actor stay. The database allows this UPDATE only for a running
    erasure job of the tenant (migration 0004)."""
    q = update(AuditEvent).where(
        AuditEvent.tenant == tenant,
        AuditEvent.redacted_by.is_(None),
        AuditEvent.action != "ERASE",  # erasure records name no one
    )
    if conds:
        q = q.where(or_(*conds))
    values = dict(user_id="", agent_id="", fact_key="", reason="", details={}, redacted_by=job_id)
    if actor:
        values["actor"] = case((AuditEvent.actor == actor, ""), else_=AuditEvent.actor)
    return s.execute(q.values(**values)).rowcount or 0


def redact_access_events(s: Session, tenant: str, kind: str, subject: str) -> int:
    """The access audit names whom a call was about (user, agent, session ids; never
    content): a row about the subject loses that scope; who called, what, when and the
    outcome stay."""
    q = update(AccessEvent).where(AccessEvent.tenant == tenant)
    if kind == "user":
        q = q.where(AccessEvent.user_id == subject)
    elif kind == "agent":
        q = q.where(AccessEvent.agent_id == subject)
    else:
        q = q.where(
            or_(AccessEvent.user_id != "", AccessEvent.agent_id != "", AccessEvent.session_id != "")
        )
    return s.execute(q.values(user_id="", agent_id="", session_id="")).rowcount or 0


def revoke_keys_naming(s: Session, tenant: str, kind: str, subject: str, now) -> int:
    """API keys whose grants name the erased user or agent are revoked, and the name is
    replaced in their grants (a grant never widens: its list is not emptied)."""
    field = "users" if kind == "user" else "agents"
    n = 0
    for k in s.scalars(select(ApiKeyRecord).where(ApiKeyRecord.tenant == tenant)):
        grants = [dict(g) for g in k.grants or []]
        hit = False
        for g in grants:
            if subject in (g.get(field) or []):
                g[field] = sorted({x if x != subject else "~erased" for x in g[field]})
                hit = True
        if hit or (subject and subject in (k.name or "")):
            k.grants = grants
            k.name = "" if subject in (k.name or "") else k.name
            if k.revoke_time is None:
                k.revoke_time = now
            n += 1
    return n


def drop_tails(cache: Cache, tenant: str, user_id: str = "", agent_id: str = "") -> int:
    """Deletes cached session tails of the tenant (of one user or agent if given). The
    keys are found in the cache itself, so a rerun after a crash finds them too."""

    def match(key: str) -> bool:
        try:
            t, u, a, _ = json.loads(key)
        except (ValueError, TypeError):
            return False
        return t == tenant and (not user_id or u == user_id) and (not agent_id or a == agent_id)

    return cache.delete_tails(match)
