"""Bi-temporal version rows and the memory records that carry them into search. No grpc.

A version row is never changed except to end its record time (memlake stops believing it
in that form). Changing a version's valid time or status is done by ending its record time
and writing a copy with the new valid_to/status, so "as of record time R" sees exactly what
was believed at R. Two exceptions, neither of which changes a belief: a duplicate
assertion adds its source to the believed version's sources, and a row written earlier in
the same transaction (never visible to anyone) is changed in place.

Every fact value has one memory record (memory_id), shared by its copies, that carries it
into search: current=True for CURRENT and CONFLICTED versions, conflicted=True for
CONFLICTED ones. Every record changed here is collected in Tx.touched for the change log.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from memlake.v1 import memory_pb2 as pb
from shared.db.models import FactKey, FactVersion, MemoryRecord
from shared.embedding import to_bytes

CURRENT, SUPERSEDED, CONFLICTED, RETRACTED = (
    pb.FACT_STATUS_CURRENT,
    pb.FACT_STATUS_SUPERSEDED,
    pb.FACT_STATUS_CONFLICTED,
    pb.FACT_STATUS_RETRACTED,
)
# Free-text facts (no predicate) are keyed by their value: predicate_norm is this prefix and
# a hash of the normalised value, so each distinct statement has its own chain.
FREE_TEXT_PREFIX = "~"
# The fact_keys row (subject, "~") is locked by free-text asserts of that subject, so two of
# them never miss each other in the semantic check.
SUBJECT_LOCK_PREDICATE = "~"

_WS = re.compile(r"\s+")
_KEEP: Any = object()


def norm(s: str) -> str:
    return _WS.sub(" ", s.strip().lower())


def norm_predicate(s: str) -> str:
    return norm(s).replace(" ", "_")


def free_text_predicate(value_norm: str) -> str:
    return FREE_TEXT_PREFIX + hashlib.sha256(value_norm.encode()).hexdigest()[:24]


def statement_text(subject: str, predicate: str, value: str) -> str:
    """The text a fact is embedded and searched by: "subject predicate value", or for a
    free-text fact the statement itself."""
    if not predicate.strip():
        return value.strip()
    pred = predicate.replace("_", " ").strip()
    return " ".join(p for p in (subject.strip(), pred, value.strip()) if p)


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat().replace("+00:00", "Z") if dt is not None else None


# -- valid-time intervals: [valid_from, valid_to), valid_to None = open ---------------------


def nonempty(v: FactVersion) -> bool:
    return v.valid_to is None or v.valid_to > v.valid_from


def contains(v: FactVersion, t: datetime) -> bool:
    return nonempty(v) and v.valid_from <= t and (v.valid_to is None or t < v.valid_to)


def overlaps(v: FactVersion, start: datetime, end: datetime | None) -> bool:
    return (
        nonempty(v)
        and (end is None or v.valid_from < end)
        and (v.valid_to is None or v.valid_to > start)
    )


def earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    """min() where None means open-ended (later than anything)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


# -- one write transaction ------------------------------------------------------------------


@dataclass
class Tx:
    s: Session
    tenant: str
    now: datetime
    actor: str = ""
    reason: str = ""
    keys: dict[int, FactKey] = field(default_factory=dict)  # locked in this transaction
    touched: set[int] = field(default_factory=set)  # memory ids changed
    created: set[int] = field(default_factory=set)  # version ids written here
    unconflicted: set[int] = field(default_factory=set)  # memory ids that left CONFLICTED
    conflicts_changed: bool = False  # a version entered or left CONFLICTED
    audit_ids: list[int] = field(default_factory=list)

    def lock_keys(self, key_ids) -> None:
        """Locks key rows (ascending id, so two writers never wait on each other in a cycle)."""
        todo = sorted(set(key_ids) - set(self.keys))
        if not todo:
            return
        for k in self.s.scalars(
            select(FactKey).where(FactKey.id.in_(todo)).order_by(FactKey.id).with_for_update()
        ):
            self.keys[k.id] = k


def believed(s: Session, key_id: int) -> list[FactVersion]:
    """Rows with an open record time (RETRACTED markers included); by valid_from. The
    latest record time on a key is always on one of these: every change writes one."""
    return list(
        s.scalars(
            select(FactVersion)
            .where(FactVersion.key_id == key_id, FactVersion.record_end_time.is_(None))
            .order_by(FactVersion.valid_from, FactVersion.record_time, FactVersion.id)
        )
    )


def live(s: Session, key_id: int) -> list[FactVersion]:
    """Versions memlake believes now (record time open), not retracted; by valid_from."""
    return [v for v in believed(s, key_id) if v.status != RETRACTED]


def last_record_time(s: Session, key_ids) -> datetime | None:
    """The latest record time written on these keys (record time must never go back)."""
    return s.scalar(
        select(func.max(FactVersion.record_time)).where(FactVersion.key_id.in_(list(key_ids)))
    )


def new_version(
    tx: Tx,
    key: FactKey,
    *,
    subject: str,
    predicate: str,
    value: str,
    typed_value: Any,
    confidence: float,
    valid_from: datetime,
    valid_to: datetime | None,
    status: int,
    source: dict[str, Any] | None,
    importance: float,
    vec: np.ndarray,
    embed_model: str,
) -> FactVersion:
    content = statement_text(subject, predicate, value)
    emb = to_bytes(vec)
    rec = MemoryRecord(
        tenant=tx.tenant,
        type=pb.MEMORY_TYPE_FACT,
        user_id=key.user_id,
        agent_id=key.agent_id,
        session_id=(source or {}).get("session_id", ""),
        key=f"{key.subject_norm}|{key.predicate_norm}",
        content=content,
        attributes={},
        importance=importance or 0.5,
        source=source or {},
        create_time=tx.now,
        update_time=tx.now,
        occur_time=valid_from,
        etag=uuid.uuid4().hex[:16],
        embedding=emb,
        embed_model=embed_model,
        current=status in (CURRENT, CONFLICTED),
        fact_status=status,
        conflicted=status == CONFLICTED,
    )
    tx.s.add(rec)
    tx.s.flush()
    v = FactVersion(
        tenant=tx.tenant,
        key_id=key.id,
        subject=subject.strip(),
        predicate=predicate.strip(),
        value=value.strip(),
        value_norm=norm(value),
        typed_value=typed_value,
        confidence=confidence,
        valid_from=valid_from,
        valid_to=valid_to,
        record_time=tx.now,
        status=status,
        sources=[source] if source else [],
        memory_id=rec.id,
        importance=importance or 0.5,
        embedding=emb,
    )
    tx.s.add(v)
    tx.s.flush()
    tx.created.add(v.id)
    tx.conflicts_changed |= status == CONFLICTED
    sync_record(tx, v, rec)
    return v


def _copy(tx: Tx, v: FactVersion, status: int, valid_to: datetime | None) -> FactVersion:
    c = FactVersion(
        tenant=v.tenant,
        key_id=v.key_id,
        subject=v.subject,
        predicate=v.predicate,
        value=v.value,
        value_norm=v.value_norm,
        typed_value=v.typed_value,
        confidence=v.confidence,
        valid_from=v.valid_from,
        valid_to=valid_to,
        record_time=tx.now,
        status=status,
        sources=list(v.sources or []),
        memory_id=v.memory_id,
        importance=v.importance,
        embedding=v.embedding,
    )
    tx.s.add(c)
    tx.s.flush()
    tx.created.add(c.id)
    return c


def rewrite(tx: Tx, v: FactVersion, *, status: int | None = None, valid_to=_KEEP) -> FactVersion:
    """Believes v with a new status and/or valid_to from now on; returns the believed row."""
    new_status = v.status if status is None else status
    new_to = v.valid_to if valid_to is _KEEP else valid_to
    if new_status == v.status and new_to == v.valid_to:
        return v
    if v.status == CONFLICTED and new_status != CONFLICTED:
        tx.unconflicted.add(v.memory_id)
    tx.conflicts_changed |= CONFLICTED in (v.status, new_status)
    if v.id in tx.created:
        v.status, v.valid_to = new_status, new_to
        tx.s.flush()
        sync_record(tx, v)
        return v
    v.record_end_time = tx.now
    c = _copy(tx, v, new_status, new_to)
    sync_record(tx, c)
    return c


def retract(tx: Tx, v: FactVersion) -> FactVersion:
    """Ends belief in v and records its retraction (a RETRACTED row)."""
    if v.status == CONFLICTED:
        tx.unconflicted.add(v.memory_id)
        tx.conflicts_changed = True
    v.record_end_time = tx.now
    marker = _copy(tx, v, RETRACTED, v.valid_to)
    sync_record(tx, marker)
    return marker


def sync_record(tx: Tx, v: FactVersion, rec: MemoryRecord | None = None) -> None:
    rec = rec if rec is not None else tx.s.get(MemoryRecord, v.memory_id)
    if rec is None:
        return
    attrs: dict[str, Any] = {
        "subject": v.subject,
        "predicate": v.predicate,
        "value": v.value,
        "confidence": v.confidence,
        "valid_from": iso(v.valid_from),
        "fact_version_id": str(v.id),
    }
    if v.valid_to is not None:
        attrs["valid_to"] = iso(v.valid_to)
    if v.typed_value is not None:
        attrs["typed_value"] = v.typed_value
    rec.attributes = attrs
    rec.fact_status = v.status
    rec.current = v.status in (CURRENT, CONFLICTED)
    rec.conflicted = v.status == CONFLICTED
    rec.update_time = tx.now
    rec.etag = uuid.uuid4().hex[:16]
    tx.touched.add(rec.id)
