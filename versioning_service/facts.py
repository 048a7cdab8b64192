"""Bi-temporal fact versions. No grpc here.

A version row is never changed except to end its record time (memlake stops believing
it in that form). Closing a version's valid time is done by ending its record time and
writing a copy with the closed valid_to, so "as of record time R" sees what was believed.
Every fact value has one memory record (memory_id), shared by its copies, that carries it
into search with its current status.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memlake.v1 import memory_pb2 as pb
from shared import changelog
from shared.db.engine import Database
from shared.db.models import AuditEvent, FactKey, FactVersion, MemoryRecord, SubjectAlias
from shared.db.types import utcnow
from shared.embedding import Embedder, to_bytes
from shared.errors import InvalidArgument, NotFound

_WS = re.compile(r"\s+")
CURRENT, SUPERSEDED, CONFLICTED, RETRACTED = (
    pb.FACT_STATUS_CURRENT,
    pb.FACT_STATUS_SUPERSEDED,
    pb.FACT_STATUS_CONFLICTED,
    pb.FACT_STATUS_RETRACTED,
)


def norm(s: str) -> str:
    return _WS.sub(" ", s.strip().lower())


def norm_predicate(s: str) -> str:
    return norm(s).replace(" ", "_")


@dataclass
class FactIn:
    user_id: str
    agent_id: str
    subject: str
    predicate: str
    value: str
    typed_value: Any = None
    confidence: float = 1.0
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    source: dict[str, Any] | None = None
    actor: str = ""
    importance: float = 0.5


@dataclass
class AssertResult:
    version: FactVersion
    outcome: int
    previous: FactVersion | None
    seq: int
    conflict_id: int | None = None


def validate(f: FactIn) -> None:
    if not f.subject.strip():
        raise InvalidArgument("subject", "is required")
    if not f.value.strip():
        raise InvalidArgument("value", "is required")
    if not 0.0 <= f.confidence <= 1.0:
        raise InvalidArgument("confidence", "must be within [0, 1]")
    if f.valid_from and f.valid_to and f.valid_to <= f.valid_from:
        raise InvalidArgument("valid_to", "must be after valid_from")
    if len(f.subject) > 512 or len(f.predicate) > 512:
        raise InvalidArgument("subject", "subject and predicate are at most 512 characters")


def fact_text(subject: str, predicate: str, value: str) -> str:
    pred = predicate.replace("_", " ").strip()
    return " ".join(p for p in (subject.strip(), pred, value.strip()) if p)


class FactStore:
    def __init__(self, db: Database, embedder: Embedder, notify: Callable[[int], None]) -> None:
        self.db = db
        self.embedder = embedder
        self.notify = notify

    # -- keys -----------------------------------------------------------------------------

    def resolve_subject(self, s: Session, tenant: str, user_id: str, agent_id: str, subject: str):
        n = norm(subject)
        alias = s.get(SubjectAlias, (tenant, user_id, agent_id, n))
        return alias.subject_norm if alias else n

    def find_key(
        self, s: Session, tenant: str, user_id: str, agent_id: str, subject: str, predicate: str
    ) -> FactKey | None:
        subj = self.resolve_subject(s, tenant, user_id, agent_id, subject)
        return s.scalar(
            select(FactKey).where(
                FactKey.tenant == tenant,
                FactKey.user_id == user_id,
                FactKey.agent_id == agent_id,
                FactKey.subject_norm == subj,
                FactKey.predicate_norm == norm_predicate(predicate),
            )
        )

    def lock_key(self, s: Session, tenant: str, f: FactIn) -> FactKey:
        """Gets or creates the key row and locks it for this transaction."""
        subj = self.resolve_subject(s, tenant, f.user_id, f.agent_id, f.subject)
        pred = norm_predicate(f.predicate)
        for _ in range(3):
            key = s.scalar(
                select(FactKey)
                .where(
                    FactKey.tenant == tenant,
                    FactKey.user_id == f.user_id,
                    FactKey.agent_id == f.agent_id,
                    FactKey.subject_norm == subj,
                    FactKey.predicate_norm == pred,
                )
                .with_for_update()
            )
            if key is not None:
                return key
            try:
                with s.begin_nested():
                    key = FactKey(
                        tenant=tenant,
                        user_id=f.user_id,
                        agent_id=f.agent_id,
                        subject_norm=subj,
                        predicate_norm=pred,
                    )
                    s.add(key)
                    s.flush()
                return key
            except IntegrityError:
                continue  # a concurrent assert created it; lock theirs
        raise RuntimeError("could not create or lock the fact key")

    @staticmethod
    def believed(s: Session, key_id: int) -> list[FactVersion]:
        """Versions memlake believes now (record time open), oldest valid_from first."""
        return list(
            s.scalars(
                select(FactVersion)
                .where(FactVersion.key_id == key_id, FactVersion.record_end_time.is_(None))
                .order_by(FactVersion.valid_from, FactVersion.id)
            )
        )

    # -- assert ---------------------------------------------------------------------------

    def assert_fact(self, tenant: str, f: FactIn) -> AssertResult:
        validate(f)
        now = utcnow()
        valid_from = f.valid_from or now
        with self.db.write() as s:
            key = self.lock_key(s, tenant, f)
            key_str = f"{key.subject_norm}|{key.predicate_norm}"
            believed = self.believed(s, key.id)
            current = next((v for v in believed if v.status == CURRENT), None)
            value_norm = norm(f.value)
            if current is not None and current.value_norm == value_norm:
                if f.source:
                    current.sources = [*current.sources, f.source]
                self._audit(s, tenant, key, key_str, "DUPLICATE", current, f, {})
                return AssertResult(current, pb.WRITE_OUTCOME_DUPLICATE, current, 0)
            touched: list[int] = []
            if current is None:
                new = self._new_version(s, tenant, key, f, valid_from, CURRENT, now)
                touched.append(new.memory_id)
                outcome, action = pb.WRITE_OUTCOME_CREATED, "ASSERT"
            elif valid_from >= current.valid_from:
                # The later valid time wins: close the current version's valid time.
                self._close(s, current, valid_from, SUPERSEDED, now)
                new = self._new_version(s, tenant, key, f, valid_from, CURRENT, now)
                touched += [current.memory_id, new.memory_id]
                outcome, action = pb.WRITE_OUTCOME_UPDATED, "SUPERSEDE"
            else:
                # Older than what is current: recorded as history, valid until the next one.
                later = [v for v in believed if v.valid_from > valid_from]
                end = min(v.valid_from for v in later)
                if f.valid_to is None or f.valid_to > end:
                    f.valid_to = end
                new = self._new_version(s, tenant, key, f, valid_from, SUPERSEDED, now)
                touched.append(new.memory_id)
                outcome, action = pb.WRITE_OUTCOME_RECORDED_AS_HISTORY, "RECORD_HISTORY"
            self._audit(
                s,
                tenant,
                key,
                key_str,
                action,
                new,
                f,
                {
                    "previous_id": current.id if current else None,
                    "previous_value": current.value if current else None,
                    "value": new.value,
                },
            )
            seq = changelog.append(s, tenant, touched)
        self.notify(seq)
        return AssertResult(new, outcome, current, seq)

    def _new_version(
        self, s: Session, tenant: str, key: FactKey, f: FactIn, valid_from, status, now
    ) -> FactVersion:
        content = fact_text(f.subject, f.predicate, f.value)
        vec = self.embedder.embed_one(content)
        rec = MemoryRecord(
            tenant=tenant,
            type=pb.MEMORY_TYPE_FACT,
            user_id=f.user_id,
            agent_id=f.agent_id,
            session_id=(f.source or {}).get("session_id", ""),
            key=f"{key.subject_norm}|{key.predicate_norm}",
            content=content,
            attributes={},
            importance=f.importance or 0.5,
            source=f.source or {},
            create_time=now,
            update_time=now,
            occur_time=valid_from,
            etag=uuid.uuid4().hex[:16],
            embedding=to_bytes(vec),
            embed_model=self.embedder.name,
            current=status == CURRENT,
            fact_status=status,
        )
        s.add(rec)
        s.flush()
        v = FactVersion(
            tenant=tenant,
            key_id=key.id,
            subject=f.subject.strip(),
            predicate=f.predicate.strip(),
            value=f.value.strip(),
            value_norm=norm(f.value),
            typed_value=f.typed_value,
            confidence=f.confidence,
            valid_from=valid_from,
            valid_to=f.valid_to,
            record_time=now,
            status=status,
            sources=[f.source] if f.source else [],
            memory_id=rec.id,
            importance=f.importance or 0.5,
            embedding=rec.embedding,
        )
        s.add(v)
        s.flush()
        self._sync_record(rec, v)
        return v

    def _close(self, s: Session, v: FactVersion, valid_to, status: int, now) -> FactVersion:
        """Ends belief in v as it stands and records a copy with new valid_to/status."""
        v.record_end_time = now
        copy = FactVersion(
            tenant=v.tenant,
            key_id=v.key_id,
            subject=v.subject,
            predicate=v.predicate,
            value=v.value,
            value_norm=v.value_norm,
            typed_value=v.typed_value,
            confidence=v.confidence,
            valid_from=v.valid_from,
            valid_to=valid_to if valid_to is not None else v.valid_to,
            record_time=now,
            status=status,
            sources=list(v.sources),
            memory_id=v.memory_id,
            importance=v.importance,
            embedding=v.embedding,
        )
        s.add(copy)
        s.flush()
        rec = s.get(MemoryRecord, v.memory_id)
        if rec is not None:
            self._sync_record(rec, copy)
            rec.update_time = now
            rec.etag = uuid.uuid4().hex[:16]
        return copy

    @staticmethod
    def _sync_record(rec: MemoryRecord, v: FactVersion) -> None:
        attrs: dict[str, Any] = {
            "subject": v.subject,
            "predicate": v.predicate,
            "value": v.value,
            "confidence": v.confidence,
            "valid_from": v.valid_from.isoformat().replace("+00:00", "Z"),
            "fact_version_id": str(v.id),
        }
        if v.valid_to is not None:
            attrs["valid_to"] = v.valid_to.isoformat().replace("+00:00", "Z")
        if v.typed_value is not None:
            attrs["typed_value"] = v.typed_value
        rec.attributes = attrs
        rec.fact_status = v.status
        rec.current = v.status in (CURRENT, CONFLICTED)

    def _audit(self, s, tenant, key: FactKey, key_str, action, v, f: FactIn | None, details):
        s.add(
            AuditEvent(
                tenant=tenant,
                user_id=key.user_id,
                agent_id=key.agent_id,
                actor=(f.actor if f else "") or ((f.source or {}).get("actor", "") if f else ""),
                action=action,
                key_id=key.id,
                fact_key=key_str,
                fact_id=v.id if v is not None else None,
                reason="",
                details={k: val for k, val in details.items() if val is not None},
            )
        )

    # -- reads ----------------------------------------------------------------------------

    def _key_or_404(self, s, tenant, user_id, agent_id, subject, predicate) -> FactKey:
        if not subject.strip():
            raise InvalidArgument("key.subject", "is required")
        key = self.find_key(s, tenant, user_id, agent_id, subject, predicate)
        if key is None:
            raise NotFound(f"no fact for subject {subject!r} predicate {predicate!r}")
        return key

    def current(self, tenant, user_id, agent_id, subject, predicate):
        with self.db.read() as s:
            key = self._key_or_404(s, tenant, user_id, agent_id, subject, predicate)
            believed = self.believed(s, key.id)
            cur = next((v for v in believed if v.status == CURRENT), None)
            conflicting = [v for v in believed if v.status == CONFLICTED]
            if cur is None and not conflicting:
                raise NotFound(f"fact {subject!r} {predicate!r} has no current version")
            return key, cur, conflicting

    def history(self, tenant, user_id, agent_id, subject, predicate) -> list[FactVersion]:
        with self.db.read() as s:
            key = self._key_or_404(s, tenant, user_id, agent_id, subject, predicate)
            return list(
                s.scalars(
                    select(FactVersion)
                    .where(FactVersion.key_id == key.id)
                    .order_by(FactVersion.record_time, FactVersion.id)
                )
            )
