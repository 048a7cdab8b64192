"""Forget of a fact, EraseSubject and the expiry sweep.

EraseSubject is a job: a row in erasure_jobs is committed first, then each store is
cleared in its own transactions (memories in batches), each adding its counts to the job's
receipt in the same transaction, and a last transaction writes an ERASE audit row and marks
the job done (forgetting whom it erased). A crash leaves a running job; the next call for
the same subject, or `resume_all`, continues it. Every step deletes what is left, so a rerun
is harmless.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from memlake.v1 import memory_pb2 as pb
from shared.cache import Cache, safe
from shared.db.engine import Database
from shared.db.models import (
    AuditEvent,
    ErasureJob,
    FactConflict,
    FactKey,
    IdempotencyKey,
    MemoryRecord,
    SubjectAlias,
    TenantSetting,
)
from shared.db.types import utcnow
from shared.errors import InvalidArgument
from shared.privacy import stores
from shared.tails import session_tail_key

log = logging.getLogger("memlake.privacy")

KINDS = ("user", "agent", "tenant")
BATCH = 500
# Every store a receipt counts, in the order the steps run.
STORES = (
    "memories",
    "revisions",
    "index_deletes",
    "fact_versions",
    "fact_conflicts",
    "fact_keys",
    "subject_aliases",
    "idempotency_records",
    "audit_redacted",
    "access_events_redacted",
    "api_keys_revoked",
    "tenant_settings",
    "cache_keys",
)


@dataclass
class Receipt:
    job_id: int
    kind: str
    counts: dict[str, int] = field(default_factory=dict)
    seq: int = 0  # the change-log seq of the last index delete (0: none)
    resumed: bool = False  # this call finished a job an earlier call had begun
    finish_time: datetime | None = None


def _scope_cond(column_user, column_agent, kind: str, subject: str):
    if kind == "user":
        return (column_user == subject,)
    if kind == "agent":
        return (column_agent == subject,)
    return ()


def _add(job: ErasureJob, counts: Counter, seq: int = 0) -> None:
    r = dict(job.receipt or {})
    for k, v in counts.items():
        if v:
            r[k] = int(r.get(k, 0)) + int(v)
    if seq:
        r["seq"] = max(int(r.get("seq", 0)), seq)
    job.receipt = r


class Eraser:
    def __init__(self, db: Database, cache: Cache, notify: Callable[[int], None]) -> None:
        self.db, self.cache, self.notify = db, cache, notify

    # -- one fact key (Forget of a FACT memory) ---------------------------------------------

    def forget_fact(self, s: Session, tenant: str, rec: MemoryRecord) -> tuple[Counter, int]:
        """Inside the caller's transaction: erases the key of this FACT record (every
        version, its conflicts and records), redacts its audit rows and the stored
        responses of the requests that asserted it. A job row makes the audit redaction
        allowed; it is done when the transaction commits, so there is nothing to resume."""
        subject, _, predicate = (rec.key or "").partition("|")
        key = s.scalar(
            select(FactKey)
            .where(
                FactKey.tenant == tenant,
                FactKey.user_id == rec.user_id,
                FactKey.agent_id == rec.agent_id,
                FactKey.subject_norm == subject,
                FactKey.predicate_norm == predicate,
            )
            .with_for_update()
        )
        job = ErasureJob(tenant=tenant, kind="fact", subject="", state="running", receipt={})
        s.add(job)
        s.flush()
        counts: Counter = Counter()
        memory_ids = [rec.id]
        if key is not None:
            c, memory_ids = stores.erase_fact_keys(s, tenant, [key.id])
            counts.update(c)
            memory_ids = sorted(set(memory_ids) | {rec.id})
            counts["audit_redacted"] = stores.redact_audit(
                s, tenant, job.id, AuditEvent.key_id == key.id
            )
            counts["idempotency_records"] = stores.redact_idempotency(
                s, tenant, fact_key_ids=[key.id], memory_ids=memory_ids
            )
        else:
            counts["idempotency_records"] = stores.redact_idempotency(
                s, tenant, memory_ids=memory_ids
            )
        c, seq = stores.delete_memories(s, tenant, memory_ids)
        counts.update(c)
        self._finish(s, job, counts, seq)
        return counts, seq

    # -- a subject -------------------------------------------------------------------------

    def erase(self, tenant: str, kind: str, subject: str = "") -> Receipt:
        if kind not in KINDS:
            raise InvalidArgument("subject", f"kind must be one of {', '.join(KINDS)}")
        if kind != "tenant" and not subject:
            raise InvalidArgument(f"subject.{kind}_id", "must not be empty")
        subject = subject if kind != "tenant" else ""
        with self.db.write() as s:
            job = s.scalar(
                select(ErasureJob)
                .where(
                    ErasureJob.tenant == tenant,
                    ErasureJob.state == "running",
                    ErasureJob.kind == kind,
                    ErasureJob.subject == subject,
                )
                .order_by(ErasureJob.id)
                .limit(1)
            )
            resumed = job is not None
            if job is None:
                job = ErasureJob(tenant=tenant, kind=kind, subject=subject, receipt={})
                s.add(job)
                s.flush()
            job_id = job.id
        if resumed:
            log.info("erasure job %d: resuming", job_id)
        receipt = self._run(job_id)
        receipt.resumed = resumed
        return receipt

    def resume_all(self) -> list[Receipt]:
        """Finishes every job an interrupted process left running."""
        with self.db.read() as s:
            ids = list(
                s.scalars(
                    select(ErasureJob.id)
                    .where(ErasureJob.state == "running", ErasureJob.kind.in_(KINDS))
                    .order_by(ErasureJob.id)
                )
            )
        return [self._run(i) for i in ids]

    def _run(self, job_id: int) -> Receipt:
        with self.db.read() as s:
            job = s.get(ErasureJob, job_id)
            tenant, kind, subject = job.tenant, job.kind, job.subject
        for step in (self._memories, self._facts, self._rest):
            step(job_id, tenant, kind, subject)
        dropped = safe(
            stores.drop_tails,
            self.cache,
            tenant,
            subject if kind == "user" else "",
            subject if kind == "agent" else "",
            default=0,
        )
        with self.db.write() as s:
            job = s.get(ErasureJob, job_id)
            counts = Counter({"cache_keys": dropped or 0})
            self._finish(s, job, counts, 0)
            receipt = Receipt(job.id, kind, dict(job.receipt), int(job.receipt.get("seq", 0)))
            receipt.finish_time = job.finish_time
        receipt.counts.pop("seq", None)
        if receipt.seq:
            self.notify(receipt.seq)
        self.db.rebuild_indexes()  # SQLite: no erased key left as an index divider
        self.db.truncate_wal()
        log.info("erasure job %d (%s) done: %s", job_id, kind, receipt.counts)
        return receipt

    def _memories(self, job_id: int, tenant: str, kind: str, subject: str) -> None:
        cond = _scope_cond(MemoryRecord.user_id, MemoryRecord.agent_id, kind, subject)
        while True:
            with self.db.write() as s:
                ids = list(
                    s.scalars(
                        select(MemoryRecord.id)
                        .where(MemoryRecord.tenant == tenant, *cond)
                        .order_by(MemoryRecord.id)
                        .limit(BATCH)
                    )
                )
                if not ids:
                    return
                counts, seq = stores.delete_memories(s, tenant, ids)
                counts["idempotency_records"] = stores.delete_idempotency(
                    s, tenant, IdempotencyKey.memory_id.in_(ids)
                )
                _add(s.get(ErasureJob, job_id), counts, seq)
            self.notify(seq)

    def _facts(self, job_id: int, tenant: str, kind: str, subject: str) -> None:
        cond = _scope_cond(FactKey.user_id, FactKey.agent_id, kind, subject)
        while True:
            with self.db.write() as s:
                keys = list(
                    s.scalars(
                        select(FactKey.id)
                        .where(FactKey.tenant == tenant, *cond)
                        .order_by(FactKey.id)
                        .limit(BATCH)
                    )
                )
                if not keys:
                    return
                counts, memory_ids = stores.erase_fact_keys(s, tenant, keys)
                c, seq = stores.delete_memories(s, tenant, memory_ids)
                counts.update(c)
                counts["idempotency_records"] = stores.delete_idempotency(
                    s, tenant, IdempotencyKey.fact_key_id.in_(keys)
                )
                _add(s.get(ErasureJob, job_id), counts, seq)

    def _rest(self, job_id: int, tenant: str, kind: str, subject: str) -> None:
        with self.db.write() as s:
            counts: Counter = Counter()
            cond = _scope_cond(FactConflict.user_id, FactConflict.agent_id, kind, subject)
            counts["fact_conflicts"] = (
                s.execute(delete(FactConflict).where(FactConflict.tenant == tenant, *cond)).rowcount
                or 0
            )
            cond = _scope_cond(SubjectAlias.user_id, SubjectAlias.agent_id, kind, subject)
            counts["subject_aliases"] = (
                s.execute(delete(SubjectAlias).where(SubjectAlias.tenant == tenant, *cond)).rowcount
                or 0
            )
            cond = _scope_cond(IdempotencyKey.user_id, IdempotencyKey.agent_id, kind, subject)
            counts["idempotency_records"] = stores.delete_idempotency(s, tenant, *cond)
            if kind != "tenant":
                counts["idempotency_records"] += stores.delete_legacy_idempotency(
                    s, tenant, kind, subject
                )
            cond = _scope_cond(AuditEvent.user_id, AuditEvent.agent_id, kind, subject)
            counts["audit_redacted"] = stores.redact_audit(s, tenant, job_id, *cond, actor=subject)
            counts["access_events_redacted"] = stores.redact_access_events(s, tenant, kind, subject)
            if kind != "tenant":
                counts["api_keys_revoked"] = stores.revoke_keys_naming(
                    s, tenant, kind, subject, utcnow()
                )
            if kind == "tenant":
                counts["tenant_settings"] = (
                    s.execute(delete(TenantSetting).where(TenantSetting.tenant == tenant)).rowcount
                    or 0
                )
            _add(s.get(ErasureJob, job_id), counts)

    @staticmethod
    def _finish(s: Session, job: ErasureJob, counts: Counter, seq: int) -> None:
        """The ERASE audit row (that it happened, what kind, how much; never whom) and the
        job marked done, in one transaction."""
        _add(job, counts, seq)
        job.state, job.subject, job.finish_time = "done", "", utcnow()
        summary = {k: v for k, v in job.receipt.items() if k != "seq"}
        s.add(
            AuditEvent(
                tenant=job.tenant,
                time=job.finish_time,
                action="ERASE",
                reason=f"erasure of a {job.kind}",
                details={"job_id": job.id, "kind": job.kind, "counts": summary},
            )
        )

    # -- expiry ----------------------------------------------------------------------------

    def sweep_expired(self, now: datetime | None = None) -> int:
        """Deletes memories whose expire_time has passed (all tenants, in batches), with
        the stored responses that echo them and their sessions' cached tails."""
        now = now or utcnow()
        total = 0
        while True:
            with self.db.write() as s:
                rows = s.execute(
                    select(
                        MemoryRecord.id,
                        MemoryRecord.tenant,
                        MemoryRecord.user_id,
                        MemoryRecord.agent_id,
                        MemoryRecord.session_id,
                        MemoryRecord.type,
                    )
                    .where(
                        MemoryRecord.expire_time.is_not(None),
                        MemoryRecord.expire_time <= now,
                        MemoryRecord.type != pb.MEMORY_TYPE_FACT,
                    )
                    .order_by(MemoryRecord.id)
                    .limit(BATCH)
                ).all()
                if not rows:
                    break
                by_tenant: dict[str, list[int]] = {}
                for r in rows:
                    by_tenant.setdefault(r.tenant, []).append(r.id)
                seq = 0
                for tenant, ids in by_tenant.items():
                    stores.redact_idempotency(s, tenant, memory_ids=ids)
                    _, seq = stores.delete_memories(s, tenant, ids)
            for key in {
                session_tail_key(r.tenant, r.user_id, r.agent_id, r.session_id)
                for r in rows
                if r.type == pb.MEMORY_TYPE_CONVERSATION
            }:
                safe(self.cache.delete, key)
            total += len(rows)
            self.notify(seq)
        if total:
            self.db.truncate_wal()
        return total
