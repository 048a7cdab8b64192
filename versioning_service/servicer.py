"""protobuf <-> domain for VersioningService."""

from __future__ import annotations

from google.protobuf import json_format

from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb
from memlake.v1 import versioning_service_pb2_grpc as vpb_grpc
from shared.convert import dt_to_ts, msg_to_dict, ts_to_dt
from shared.db.models import FactKey, FactVersion
from shared.errors import InvalidArgument
from shared.tenancy import check_scope_tenant, tenant_from_metadata
from versioning_service.facts import FactIn, FactStore


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
    if key is not None:
        f.scope.user_id, f.scope.agent_id = key.user_id, key.agent_id
        f.key = f"{key.subject_norm}|{key.predicate_norm}"
    f.scope.tenant = tenant
    if v.typed_value is not None:
        json_format.ParseDict(v.typed_value, f.typed_value)
    dt_to_ts(v.valid_from, f.valid_from)
    dt_to_ts(v.valid_to, f.valid_to)
    dt_to_ts(v.record_time, f.record_time)
    dt_to_ts(v.record_end_time, f.record_end_time)
    for src in v.sources or []:
        json_format.ParseDict(src, f.sources.add(), ignore_unknown_fields=True)
    return f


class VersioningServicer(vpb_grpc.VersioningServiceServicer):
    def __init__(self, store: FactStore, default_tenant: str) -> None:
        self.store = store
        self.default_tenant = default_tenant

    def _tenant(self, context) -> str:
        return tenant_from_metadata(context.invocation_metadata(), self.default_tenant)

    def _key(self, request, context):
        tenant = self._tenant(context)
        k = request.key
        check_scope_tenant(k.scope.tenant, tenant, "key.scope.tenant")
        return tenant, k.scope.user_id, k.scope.agent_id, k.subject, k.predicate

    def AssertFact(self, request, context):
        tenant = self._tenant(context)
        check_scope_tenant(request.scope.tenant, tenant)
        if request.policy not in (pb.CONFLICT_POLICY_UNSPECIFIED, pb.CONFLICT_POLICY_SUPERSEDE):
            raise InvalidArgument("policy", "only SUPERSEDE is implemented so far")
        f = FactIn(
            user_id=request.scope.user_id,
            agent_id=request.scope.agent_id,
            subject=request.subject,
            predicate=request.predicate,
            value=request.value,
            typed_value=msg_to_dict(request.typed_value)
            if request.HasField("typed_value")
            else None,
            confidence=request.confidence or 1.0,
            valid_from=ts_to_dt(request.valid_from, has=request.HasField("valid_from")),
            valid_to=ts_to_dt(request.valid_to, has=request.HasField("valid_to")),
            source=msg_to_dict(request.source) if request.HasField("source") else None,
            actor=request.source.actor,
            importance=request.importance,
        )
        res = self.store.assert_fact(tenant, f)
        resp = vpb.AssertFactResponse(
            fact=fact_to_proto(res.version, None, tenant), outcome=res.outcome, seq=res.seq
        )
        resp.fact.scope.user_id, resp.fact.scope.agent_id = f.user_id, f.agent_id
        if res.previous is not None and res.previous is not res.version:
            resp.previous.CopyFrom(fact_to_proto(res.previous, None, tenant))
        if res.conflict_id:
            resp.conflict_id = str(res.conflict_id)
        return resp

    def GetFact(self, request, context):
        tenant, *k = self._key(request, context)
        key, cur, conflicting = self.store.current(tenant, *k)
        resp = vpb.GetFactResponse(conflicted=bool(conflicting))
        if cur is not None:
            resp.fact.CopyFrom(fact_to_proto(cur, key, tenant))
        resp.conflicting.extend(fact_to_proto(v, key, tenant) for v in conflicting)
        return resp

    def GetFactHistory(self, request, context):
        tenant, *k = self._key(request, context)
        versions = self.store.history(tenant, *k)
        key_proto = None
        resp = vpb.GetFactHistoryResponse()
        for v in versions:
            p = fact_to_proto(v, key_proto, tenant)
            p.scope.user_id, p.scope.agent_id = k[0], k[1]
            resp.versions.append(p)
        return resp
