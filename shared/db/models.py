"""Tables. Every table carries the tenant and every query filters by it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    LargeBinary,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db.types import BigId, UTCDateTime, utcnow

TENANT = String(128)
SCOPE_ID = String(256)


class Base(DeclarativeBase):
    pass


class MemoryRecord(Base):
    """One memory item (or one revision of a keyed item). The source of truth."""

    __tablename__ = "memories"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    type: Mapped[int] = mapped_column(SmallInteger)  # memlake.v1.MemoryType value
    user_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    agent_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    session_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    # BACKGROUND/REFLECTION key, SKILL name, FACT "subject|predicate"; else NULL.
    key: Mapped[str | None] = mapped_column(String(512))
    revision: Mapped[int] = mapped_column(default=1)
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    content: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    importance: Mapped[float] = mapped_column(Float, default=0.5)
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    occur_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expire_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    turn_index: Mapped[int | None] = mapped_column(BigId)
    etag: Mapped[str] = mapped_column(String(64))
    # float32 little-endian vector, so shards rebuild without re-embedding.
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    embed_model: Mapped[str | None] = mapped_column(String(128))
    # FACT only: memlake.v1.FactStatus value, and whether the key is conflicted.
    fact_status: Mapped[int | None] = mapped_column(SmallInteger)
    conflicted: Mapped[bool] = mapped_column(Boolean, default=False)

    __table_args__ = (
        Index("ix_memories_scope", "tenant", "user_id", "type", "current"),
        Index("ix_memories_session", "tenant", "session_id", "turn_index"),
        # One current revision per keyed item; guards concurrent upserts.
        Index(
            "uq_memories_current_key",
            "tenant",
            "type",
            "user_id",
            "agent_id",
            "key",
            unique=True,
            postgresql_where=text("current AND type IN (1, 5, 6)"),
            sqlite_where=text("current AND type IN (1, 5, 6)"),
        ),
        # Turn order within a session is unique.
        Index(
            "uq_memories_turn",
            "tenant",
            "user_id",
            "agent_id",
            "session_id",
            "turn_index",
            unique=True,
            postgresql_where=text("turn_index IS NOT NULL"),
            sqlite_where=text("turn_index IS NOT NULL"),
        ),
    )


class ChangeLogEntry(Base):
    """Written in the same transaction as every memory write; retrieval tails it by seq."""

    __tablename__ = "change_log"

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    memory_id: Mapped[int] = mapped_column(BigId)
    op: Mapped[str] = mapped_column(String(8))  # "put" | "delete"
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyKey(Base):
    """A request_id seen before, with the serialized response it got."""

    __tablename__ = "idempotency_keys"

    tenant: Mapped[str] = mapped_column(TENANT, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What the request wrote, so Forget and EraseSubject find its stored response
    # (migration 0004; NULL on rows written before it).
    user_id: Mapped[str | None] = mapped_column(SCOPE_ID)
    agent_id: Mapped[str | None] = mapped_column(SCOPE_ID)
    memory_id: Mapped[int | None] = mapped_column(BigId)
    fact_key_id: Mapped[int | None] = mapped_column(BigId)

    __table_args__ = (Index("ix_idempotency_keys_memory", "tenant", "memory_id"),)


class FactKey(Base):
    """A normalised (scope, subject, predicate); the unit that is locked on assert."""

    __tablename__ = "fact_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    user_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    agent_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    subject_norm: Mapped[str] = mapped_column(String(512))
    predicate_norm: Mapped[str] = mapped_column(String(512))
    conflicted: Mapped[bool] = mapped_column(Boolean, default=False)
    lock_version: Mapped[int] = mapped_column(default=0)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index(
            "uq_fact_keys",
            "tenant",
            "user_id",
            "agent_id",
            "subject_norm",
            "predicate_norm",
            unique=True,
        ),
    )


class FactVersion(Base):
    """One bi-temporal version. Never updated in place except to close record/valid time."""

    __tablename__ = "fact_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    key_id: Mapped[int] = mapped_column(ForeignKey("fact_keys.id"), index=True)
    subject: Mapped[str] = mapped_column(String(512))
    predicate: Mapped[str] = mapped_column(String(512))
    value: Mapped[str] = mapped_column(Text)
    value_norm: Mapped[str] = mapped_column(Text)
    typed_value: Mapped[Any | None] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    record_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    record_end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[int] = mapped_column(SmallInteger)  # memlake.v1.FactStatus
    sources: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    memory_id: Mapped[int | None] = mapped_column(BigId)
    importance: Mapped[float] = mapped_column(Float, default=0.5)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)

    __table_args__ = (Index("ix_fact_versions_memory_id", "memory_id"),)


class FactConflict(Base):
    __tablename__ = "fact_conflicts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    user_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    agent_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    key_id: Mapped[int] = mapped_column(ForeignKey("fact_keys.id"), index=True)
    kind: Mapped[int] = mapped_column(SmallInteger)  # memlake.v1.ConflictKind
    status: Mapped[int] = mapped_column(SmallInteger)  # memlake.v1.ConflictStatus
    version_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    similarity: Mapped[float | None] = mapped_column(Float)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolve_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_by: Mapped[str | None] = mapped_column(String(256))
    resolution: Mapped[int | None] = mapped_column(SmallInteger)
    resolution_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_fact_conflicts_scope_status", "tenant", "user_id", "agent_id", "status"),
    )


class SubjectAlias(Base):
    __tablename__ = "subject_aliases"

    tenant: Mapped[str] = mapped_column(TENANT, primary_key=True)
    user_id: Mapped[str] = mapped_column(SCOPE_ID, primary_key=True, default="")
    agent_id: Mapped[str] = mapped_column(SCOPE_ID, primary_key=True, default="")
    alias_norm: Mapped[str] = mapped_column(String(512), primary_key=True)
    subject_norm: Mapped[str] = mapped_column(String(512))
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    """Append-only log of fact changes: who, when, what, why. The database refuses DELETE,
    and UPDATE except a redaction by a running erasure job (migration 0004)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    user_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    agent_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(256), default="")
    action: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[int | None] = mapped_column(BigId, index=True)
    fact_key: Mapped[str] = mapped_column(String(1024), default="")
    fact_id: Mapped[int | None] = mapped_column(BigId)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The erasure job that blanked this row's content (user, agent, key, reason, details).
    redacted_by: Mapped[int | None] = mapped_column(BigId)

    __table_args__ = (Index("ix_audit_events_tenant", "tenant", "id"),)


class ErasureJob(Base):
    """One erasure (a subject, a forgotten fact, expired items). Written before the work and
    marked done after it, so a rerun finishes an interrupted job. A done job keeps its
    receipt but not whom it erased."""

    __tablename__ = "erasure_jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    kind: Mapped[str] = mapped_column(String(16))  # user | agent | tenant | fact
    subject: Mapped[str] = mapped_column(String(512), default="")  # '' once done
    state: Mapped[str] = mapped_column(String(16), default="running")  # running | done
    receipt: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finish_time: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_erasure_jobs_state", "tenant", "state"),)


class TenantSetting(Base):
    __tablename__ = "tenant_settings"

    tenant: Mapped[str] = mapped_column(TENANT, primary_key=True)
    conflict_policy: Mapped[int | None] = mapped_column(SmallInteger)


class TenantRecord(Base):
    """A tenant: the hard partition every other row carries."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(TENANT, primary_key=True)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    audit_reads: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKeyRecord(Base):
    """An API key: its public id, its tenant, role and grants, and a salted scrypt hash of
    its secret (the secret itself is never stored)."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(TENANT, index=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    role: Mapped[int] = mapped_column(SmallInteger)  # memlake.v1.KeyRole
    grants: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary)
    hash_params: Mapped[str] = mapped_column(String(64))  # "scrypt:n=16384,r=8,p=1"
    parent_key_id: Mapped[str | None] = mapped_column(String(64), index=True)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expire_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_time: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AccessEvent(Base):
    """Who called what: every write and admin call, and reads where the tenant asks."""

    __tablename__ = "access_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(TENANT)
    time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    key_id: Mapped[str] = mapped_column(String(64), default="")
    method: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(8))  # read | write | admin
    code: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    agent_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    session_id: Mapped[str] = mapped_column(SCOPE_ID, default="")
    target_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    request_id: Mapped[str] = mapped_column(String(256), default="")
    peer: Mapped[str] = mapped_column(String(256), default="")

    __table_args__ = (Index("ix_access_events_tenant", "tenant", "id"),)


class RetrievalMember(Base):
    """A retrieval replica taking part in partition ownership (retrieval_service/
    membership.py): its address, a heartbeat it renews, the ring epoch whose partitions it
    holds caught up, and whether it is leaving. Not tenant data: one row per replica."""

    __tablename__ = "retrieval_members"

    ordinal: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    address: Mapped[str] = mapped_column(String(256))
    incarnation: Mapped[str] = mapped_column(String(32))  # one per process start
    heartbeat: Mapped[float] = mapped_column(Float)  # epoch seconds, the replica's clock
    ready_epoch: Mapped[int] = mapped_column(BigId, default=0)
    leaving: Mapped[bool] = mapped_column(Boolean, default=False)


class RetrievalRing(Base):
    """The one row saying which replicas own partitions: the serving ring (queries are
    routed by it) and the target ring (the live members; each builds what it will own).
    The target becomes the serving ring once every target member is ready for its epoch."""

    __tablename__ = "retrieval_ring"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    serving_epoch: Mapped[int] = mapped_column(BigId)
    serving: Mapped[str] = mapped_column(Text)  # ordinals, comma-separated
    target_epoch: Mapped[int] = mapped_column(BigId)
    target: Mapped[str] = mapped_column(Text)
