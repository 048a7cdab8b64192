"""The append-only audit log of fact changes: who, when, what and why. No grpc.

Rows are only ever inserted (migration 0002 makes the database refuse UPDATE and DELETE on
audit_events). Each change is written in the transaction that makes it; a rejected
assertion is audited in a transaction of its own that writes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from shared.db.models import AuditEvent, FactKey, FactVersion
from versioning_service.versions import Tx

ACTIONS = (
    "ASSERT",
    "DUPLICATE",
    "SUPERSEDE",
    "RECORD_HISTORY",
    "CONFLICT",
    "REJECT",
    "RETRACT",
    "RESOLVE",
    "ALIAS",
    "POLICY",
)


def key_str(key: FactKey | None) -> str:
    return f"{key.subject_norm}|{key.predicate_norm}" if key is not None else ""


def record(
    tx: Tx,
    action: str,
    key: FactKey | None,
    version: FactVersion | None = None,
    details: dict[str, Any] | None = None,
    *,
    user_id: str | None = None,
    agent_id: str | None = None,
    fact_key: str | None = None,
) -> AuditEvent:
    assert action in ACTIONS, action
    e = AuditEvent(
        tenant=tx.tenant,
        user_id=key.user_id if key is not None else (user_id or ""),
        agent_id=key.agent_id if key is not None else (agent_id or ""),
        time=tx.now,
        actor=tx.actor or "",
        action=action,
        key_id=key.id if key is not None else None,
        fact_key=fact_key if fact_key is not None else key_str(key),
        fact_id=version.id if version is not None else None,
        reason=tx.reason or "",
        details={k: v for k, v in (details or {}).items() if v is not None},
    )
    tx.s.add(e)
    return e


@dataclass
class AuditPage:
    events: list[AuditEvent]
    next_after: int | None


def list_events(
    s: Session,
    tenant: str,
    *,
    user_id: str,
    agent_id: str,
    subject_norm: str | None,
    predicate_norm: str | None,
    after: int,
    limit: int,
) -> AuditPage:
    q = select(AuditEvent).where(AuditEvent.tenant == tenant, AuditEvent.id > after)
    if user_id:
        q = q.where(AuditEvent.user_id == user_id)
    if agent_id:
        q = q.where(AuditEvent.agent_id == agent_id)
    if subject_norm is not None:
        keys = select(FactKey.id).where(
            FactKey.tenant == tenant, FactKey.subject_norm == subject_norm
        )
        if user_id:
            keys = keys.where(FactKey.user_id == user_id)
        if agent_id:
            keys = keys.where(FactKey.agent_id == agent_id)
        if predicate_norm is not None:
            keys = keys.where(FactKey.predicate_norm == predicate_norm)
            q = q.where(AuditEvent.key_id.in_(keys))
        else:
            # Alias registrations name the subject but no key.
            q = q.where(
                or_(
                    AuditEvent.key_id.in_(keys),
                    (AuditEvent.key_id.is_(None)) & (AuditEvent.fact_key == f"{subject_norm}|"),
                )
            )
    rows = list(s.scalars(q.order_by(AuditEvent.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows, rows[-1].id if more and rows else None)
