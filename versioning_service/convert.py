"""Stored fact rows -> protobuf messages. No grpc (the REJECT error carries a Fact)."""

from __future__ import annotations

from google.protobuf import json_format

from memlake.v1 import versioning_service_pb2 as vpb
from shared.convert import dt_to_ts
from shared.db.models import AuditEvent, FactConflict, FactKey, FactVersion


def fact_to_proto(v: FactVersion, key: FactKey | None, tenant: str) -> vpb.Fact:
    f = vpb.Fact(
        id=str(v.id),
        subject=v.subject,
        predicate=v.predicate,
        value=v.value,
        confidence=v.confidence,
        status=v.status,
        memory_id=str(v.memory_id or ""),
    )
    f.scope.tenant = tenant
    if key is not None:
        f.scope.user_id, f.scope.agent_id = key.user_id, key.agent_id
        f.key = f"{key.subject_norm}|{key.predicate_norm}"
    if v.typed_value is not None:
        json_format.ParseDict(v.typed_value, f.typed_value)
    dt_to_ts(v.valid_from, f.valid_from)
    dt_to_ts(v.valid_to, f.valid_to)
    dt_to_ts(v.record_time, f.record_time)
    dt_to_ts(v.record_end_time, f.record_end_time)
    for src in v.sources or []:
        json_format.ParseDict(src, f.sources.add(), ignore_unknown_fields=True)
    return f


def conflict_to_proto(
    c: FactConflict, facts: list[FactVersion], keys: dict[int, FactKey], tenant: str
) -> vpb.Conflict:
    out = vpb.Conflict(
        id=str(c.id),
        kind=c.kind,
        status=c.status,
        similarity=c.similarity or 0.0,
        resolved_by=c.resolved_by or "",
        resolution_reason=c.resolution_reason or "",
        resolution=c.resolution or 0,
    )
    out.scope.tenant, out.scope.user_id, out.scope.agent_id = tenant, c.user_id, c.agent_id
    dt_to_ts(c.create_time, out.create_time)
    dt_to_ts(c.resolve_time, out.resolve_time)
    out.facts.extend(fact_to_proto(v, keys.get(v.key_id), tenant) for v in facts)
    return out


def audit_to_proto(e: AuditEvent, tenant: str) -> vpb.AuditEvent:
    out = vpb.AuditEvent(
        id=str(e.id),
        actor=e.actor,
        action=e.action,
        fact_key=e.fact_key,
        fact_id=str(e.fact_id) if e.fact_id is not None else "",
        reason=e.reason,
    )
    out.scope.tenant, out.scope.user_id, out.scope.agent_id = tenant, e.user_id, e.agent_id
    dt_to_ts(e.time, out.time)
    if e.details:
        json_format.ParseDict(e.details, out.details)
    return out
