"""protobuf <-> shared.auth for AdminService."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from memlake.v1 import admin_service_pb2 as apb
from memlake.v1 import admin_service_pb2_grpc as apb_grpc
from shared.auth.grants import Grant
from shared.auth.identity import caller
from shared.auth.store import KeyStore
from shared.convert import decode_page_token, encode_page_token, ts_to_dt
from shared.db.models import AccessEvent, ApiKeyRecord, TenantRecord
from shared.errors import InvalidArgument
from shared.tenancy import check_tenant_name

MAX_PAGE = 1000


def _ts(msg, dt: datetime | None) -> None:
    if dt is not None:
        msg.FromDatetime(dt)


def key_to_proto(rec: ApiKeyRecord) -> apb.ApiKey:
    k = apb.ApiKey(
        key_id=rec.key_id,
        tenant=rec.tenant,
        name=rec.name,
        role=rec.role,
        grants=[Grant.from_json(g).to_proto() for g in rec.grants or ()],
        parent_key_id=rec.parent_key_id or "",
    )
    _ts(k.create_time, rec.create_time)
    if rec.expire_time is not None:
        _ts(k.expire_time, rec.expire_time)
    if rec.revoke_time is not None:
        _ts(k.revoke_time, rec.revoke_time)
    return k


def tenant_to_proto(rec: TenantRecord) -> apb.Tenant:
    t = apb.Tenant(name=rec.name, audit_reads=rec.audit_reads)
    _ts(t.create_time, rec.create_time)
    return t


def _size(page_size: int) -> int:
    if page_size < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(page_size or 100, MAX_PAGE)


def _after(token: str, kind: type):
    if not token:
        return kind()
    after = decode_page_token(token).get("after")
    if not isinstance(after, kind):
        raise InvalidArgument("page_token", "not a token this service issued")
    return after


def _next(rows: list, size: int, attr: str) -> str:
    return encode_page_token({"after": getattr(rows[-1], attr)}) if len(rows) == size else ""


class AdminServicer(apb_grpc.AdminServiceServicer):
    def __init__(self, store: KeyStore) -> None:
        self.store = store

    def CreateTenant(self, request, context):
        caller().require_operator()
        rec = self.store.create_tenant(request.name, request.audit_reads)
        resp = apb.CreateTenantResponse(tenant=tenant_to_proto(rec))
        if request.create_admin_key:
            key, secret = self.store.create_key(
                caller(),
                tenant=rec.name,
                name=f"{rec.name} admin",
                role=apb.KEY_ROLE_ADMIN,
                grants=[],
                expire_time=None,
            )
            resp.admin_key.CopyFrom(key_to_proto(key))
            resp.admin_secret = secret
        return resp

    def ListTenants(self, request, context):
        caller().require_operator()
        size = _size(request.page_size)
        rows = self.store.list_tenants(_after(request.page_token, str), size)
        return apb.ListTenantsResponse(
            tenants=[tenant_to_proto(r) for r in rows], next_page_token=_next(rows, size, "name")
        )

    def UpdateTenant(self, request, context):
        check_tenant_name(request.name, "name")
        caller().require_admin(request.name)
        rec = self.store.update_tenant(request.name, request.audit_reads)
        return apb.UpdateTenantResponse(tenant=tenant_to_proto(rec))

    def CreateApiKey(self, request, context):
        if request.tenant:
            check_tenant_name(request.tenant)
        if request.ttl_seconds < 0:
            raise InvalidArgument("ttl_seconds", "must not be negative")
        if request.ttl_seconds and request.HasField("expire_time"):
            raise InvalidArgument("ttl_seconds", "give expire_time or ttl_seconds, not both")
        expire = ts_to_dt(request.expire_time, has=request.HasField("expire_time"))
        if request.ttl_seconds:
            if request.ttl_seconds > 10 * 365 * 86400:
                raise InvalidArgument("ttl_seconds", "at most ten years")
            expire = datetime.now(UTC) + timedelta(seconds=request.ttl_seconds)
        grants = [Grant.from_proto(g, f"grants[{i}]") for i, g in enumerate(request.grants)]
        rec, secret = self.store.create_key(
            caller(),
            tenant=request.tenant,
            name=request.name,
            role=request.role,
            grants=grants,
            expire_time=expire,
        )
        return apb.CreateApiKeyResponse(key=key_to_proto(rec), secret=secret)

    def ListApiKeys(self, request, context):
        size = _size(request.page_size)
        rows = self.store.list_keys(
            caller(),
            request.tenant,
            request.include_revoked,
            _after(request.page_token, str),
            size,
        )
        return apb.ListApiKeysResponse(
            keys=[key_to_proto(r) for r in rows], next_page_token=_next(rows, size, "key_id")
        )

    def RevokeApiKey(self, request, context):
        if not request.key_id:
            raise InvalidArgument("key_id", "is required")
        rec, children = self.store.revoke(caller(), request.key_id)
        return apb.RevokeApiKeyResponse(key=key_to_proto(rec), revoked_children=children)

    def GetCaller(self, request, context):
        ident = caller()
        resp = apb.GetCallerResponse(tenant=ident.tenant, method=ident.method)
        resp.key.key_id = ident.key_id
        resp.key.tenant = ident.tenant
        resp.key.role = ident.role
        resp.key.grants.extend(ident.to_proto_grants())
        if ident.expire_time is not None:
            resp.key.expire_time.FromDatetime(ident.expire_time)
        return resp

    def ListAccessEvents(self, request, context):
        tenant = request.tenant or caller().tenant
        caller().require_admin(tenant)
        size = _size(request.page_size)
        q = select(AccessEvent).where(
            AccessEvent.tenant == tenant, AccessEvent.id > _after(request.page_token, int)
        )
        if request.key_id:
            q = q.where(AccessEvent.key_id == request.key_id)
        with self.store.db.read() as s:
            rows = list(s.scalars(q.order_by(AccessEvent.id).limit(size)))
        resp = apb.ListAccessEventsResponse(next_page_token=_next(rows, size, "id"))
        for r in rows:
            e = resp.events.add(
                id=str(r.id),
                tenant=r.tenant,
                key_id=r.key_id,
                method=r.method,
                action=r.action,
                code=r.code,
                user_id=r.user_id,
                agent_id=r.agent_id,
                session_id=r.session_id,
                target_ids=r.target_ids,
                request_id=r.request_id,
                peer=r.peer,
            )
            e.time.FromDatetime(r.time)
        return resp
