"""protobuf <-> domain for VersioningService."""

from __future__ import annotations

from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb
from memlake.v1 import versioning_service_pb2_grpc as vpb_grpc
from shared.auth.grants import READ, WRITE
from shared.auth.identity import caller
from shared.auth.redact import blank_fact, reads_facts, writer_error
from shared.convert import decode_page_token, encode_page_token, msg_to_dict, token_int, ts_to_dt
from shared.db.models import FactConflict
from shared.errors import AlreadyExists, FailedPrecondition
from shared.idempotency import Replay, fingerprint
from shared.tenancy import check_scope_tenant
from versioning_service.convert import audit_to_proto, conflict_to_proto, fact_to_proto
from versioning_service.facts import AssertResult, FactIn, FactStore, page_limit


def _after(token: str) -> int:
    if not token:
        return 0
    return token_int(decode_page_token(token), "after")


def _next_token(after: int | None) -> str:
    return encode_page_token({"after": after}) if after is not None else ""


def assert_response(res: AssertResult, tenant: str) -> vpb.AssertFactResponse:
    resp = vpb.AssertFactResponse(
        fact=fact_to_proto(res.version, res.key, tenant), outcome=res.outcome, seq=res.seq
    )
    if res.previous is not None and res.previous is not res.version:
        resp.previous.CopyFrom(fact_to_proto(res.previous, res.key, tenant))
    if res.conflict_id:
        resp.conflict_id = str(res.conflict_id)
    return resp


class VersioningServicer(vpb_grpc.VersioningServiceServicer):
    def __init__(self, store: FactStore) -> None:
        self.store = store

    def _tenant(self, context) -> str:
        return caller().tenant

    def _scoped(self, request, context, field: str = "scope", perm: int | None = None):
        """(tenant, user, agent). With perm, the caller must hold it on FACTs of the scope;
        without, a list call narrows its rows to the caller's grants (_visible)."""
        tenant = self._tenant(context)
        sc = getattr(request, field)
        check_scope_tenant(sc.tenant, tenant, f"{field}.tenant")
        if perm is not None:
            caller().require(perm, pb.MEMORY_TYPE_FACT, sc.user_id, sc.agent_id)
        return tenant, sc.user_id, sc.agent_id

    def _key(self, request, context, perm: int = READ):
        tenant = self._tenant(context)
        k = request.key
        check_scope_tenant(k.scope.tenant, tenant, "key.scope.tenant")
        caller().require(perm, pb.MEMORY_TYPE_FACT, k.scope.user_id, k.scope.agent_id)
        return tenant, k.scope.user_id, k.scope.agent_id, k.subject, k.predicate

    # -- writes ---------------------------------------------------------------------------

    def AssertFact(self, request, context):
        tenant, user_id, agent_id = self._scoped(request, context, perm=WRITE)
        f = FactIn(
            user_id=user_id,
            agent_id=agent_id,
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
            reason=request.reason,
            importance=request.importance,
        )
        readable = reads_facts(user_id, agent_id)
        try:
            res = self.store.assert_fact(
                tenant,
                f,
                policy=request.policy,
                request_id=request.request_id,
                fingerprint=fingerprint(request),
                encode=lambda r: assert_response(r, tenant).SerializeToString(),
            )
        except FailedPrecondition as exc:
            if readable or exc.reason != "FACT_CONFLICT":
                raise
            raise writer_error(
                exc,
                f"fact {request.subject!r} {request.predicate!r} holds another value and the "
                f"policy is REJECT ({caller().who} may not read it)",
            ) from None
        if isinstance(res, Replay):
            resp = vpb.AssertFactResponse.FromString(res.data)
        else:
            resp = assert_response(res, tenant)
        if not readable:  # what was believed before, and who else asserted it
            resp.ClearField("previous")
            del resp.fact.sources[:]
        return resp

    def RetractFact(self, request, context):
        tenant, *k = self._key(request, context, WRITE)

        def encode(out) -> bytes:
            v, key, seq = out
            return vpb.RetractFactResponse(
                fact=fact_to_proto(v, key, tenant), seq=seq
            ).SerializeToString()

        res = self.store.retract(
            tenant,
            *k,
            actor=request.actor,
            reason=request.reason,
            request_id=request.request_id,
            fingerprint=fingerprint(request),
            encode=encode,
        )
        if isinstance(res, Replay):
            resp = vpb.RetractFactResponse.FromString(res.data)
        else:
            v, key, seq = res
            resp = vpb.RetractFactResponse(fact=fact_to_proto(v, key, tenant), seq=seq)
        if not reads_facts(k[0], k[1]):
            blank_fact(resp.fact)
        return resp

    def ResolveConflict(self, request, context):
        tenant = self._tenant(context)
        if request.conflict_id.isdigit():
            with self.store.db.read() as s:
                c = s.get(FactConflict, int(request.conflict_id))
            if c is not None and c.tenant == tenant:
                caller().require(WRITE, pb.MEMORY_TYPE_FACT, c.user_id, c.agent_id)
        c, rows, keys, seq = self.store.resolve_conflict(
            tenant,
            request.conflict_id,
            request.resolution,
            request.keep_fact_id,
            actor=request.actor,
            reason=request.reason,
        )
        resp = vpb.ResolveConflictResponse(
            conflict=conflict_to_proto(c, rows, keys, tenant), seq=seq
        )
        if not reads_facts(c.user_id, c.agent_id):
            for f in resp.conflict.facts:
                blank_fact(f)
        return resp

    def AddSubjectAlias(self, request, context):
        tenant, user_id, agent_id = self._scoped(request, context, perm=WRITE)
        try:
            subject = self.store.add_alias(
                tenant,
                user_id,
                agent_id,
                request.alias,
                request.subject,
                actor=request.actor,
                reason=request.reason,
            )
        except AlreadyExists as exc:
            if reads_facts(user_id, agent_id):
                raise
            raise writer_error(
                exc, f"{request.alias!r} is already an alias of another subject"
            ) from None
        return vpb.AddSubjectAliasResponse(subject=subject)

    def GetConflictPolicy(self, request, context):
        policy, own = self.store.get_policy(self._tenant(context))
        return vpb.GetConflictPolicyResponse(policy=policy, tenant_default=own)

    def SetConflictPolicy(self, request, context):
        caller().require_admin()
        policy, own = self.store.set_policy(
            self._tenant(context), request.policy, actor=request.actor, reason=request.reason
        )
        return vpb.SetConflictPolicyResponse(policy=policy, tenant_default=own)

    # -- reads ----------------------------------------------------------------------------

    def GetFact(self, request, context):
        tenant, *k = self._key(request, context)
        cur, conflicting, keys = self.store.current(tenant, *k)
        resp = vpb.GetFactResponse(
            fact=fact_to_proto(cur, keys.get(cur.key_id), tenant), conflicted=bool(conflicting)
        )
        resp.conflicting.extend(fact_to_proto(v, keys.get(v.key_id), tenant) for v in conflicting)
        return resp

    def GetFactHistory(self, request, context):
        tenant, *k = self._key(request, context)
        rows, key = self.store.history(tenant, *k)
        return vpb.GetFactHistoryResponse(versions=[fact_to_proto(v, key, tenant) for v in rows])

    def GetFactAsOf(self, request, context):
        tenant, *k = self._key(request, context)
        v, key = self.store.as_of(
            tenant,
            *k,
            ts_to_dt(request.valid_time, has=request.HasField("valid_time")),
            ts_to_dt(request.record_time, has=request.HasField("record_time")),
        )
        return vpb.GetFactAsOfResponse(fact=fact_to_proto(v, key, tenant))

    def ListFacts(self, request, context):
        tenant, user_id, agent_id = self._scoped(request, context)
        page = self.store.list_facts(
            tenant,
            user_id,
            agent_id,
            request.subject,
            request.include_history,
            _after(request.page_token),
            page_limit(request.page_size),
        )
        rows = [v for v in page.rows if _visible(page.keys.get(v.key_id))]
        return vpb.ListFactsResponse(
            facts=[fact_to_proto(v, page.keys.get(v.key_id), tenant) for v in rows],
            next_page_token=_next_token(page.next_after),
        )

    def ListConflicts(self, request, context):
        tenant, user_id, agent_id = self._scoped(request, context)
        page = self.store.list_conflicts(
            tenant,
            user_id,
            agent_id,
            request.status,
            _after(request.page_token),
            page_limit(request.page_size),
        )
        return vpb.ListConflictsResponse(
            conflicts=[
                conflict_to_proto(c, rows, page.keys, tenant)
                for c, rows in page.rows
                if _visible(c)
            ],
            next_page_token=_next_token(page.next_after),
        )

    def ListAuditEvents(self, request, context):
        tenant, user_id, agent_id = self._scoped(request, context)
        page = self.store.list_audit(
            tenant,
            user_id,
            agent_id,
            request.subject,
            request.predicate,
            _after(request.page_token),
            page_limit(request.page_size),
        )
        return vpb.ListAuditEventsResponse(
            events=[audit_to_proto(e, tenant) for e in page.events if _visible(e)],
            next_page_token=_next_token(page.next_after),
        )


def _visible(row) -> bool:
    """Whether the caller may read FACTs of this row's scope (rows of list calls)."""
    if row is None:
        return False
    return caller().can(READ, pb.MEMORY_TYPE_FACT, row.user_id, row.agent_id)
