"""A small typed client over the generated stubs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from memlake.v1 import admin_service_pb2 as apb
from memlake.v1 import admin_service_pb2_grpc as apb_grpc
from memlake.v1 import ingest_service_pb2 as ipb
from memlake.v1 import ingest_service_pb2_grpc as ipb_grpc
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import privacy_service_pb2 as ppb
from memlake.v1 import privacy_service_pb2_grpc as ppb_grpc
from memlake.v1 import retrieval_service_pb2 as rpb
from memlake.v1 import retrieval_service_pb2_grpc as rpb_grpc
from memlake.v1 import versioning_service_pb2 as vpb
from memlake.v1 import versioning_service_pb2_grpc as vpb_grpc

# A request header naming the index partition a scoped query reads (the same name as
# retrieval_service.ownership.PARTITION_HEADER; the SDK does not import the services).
PARTITION_HEADER = "x-memlake-partition"

TYPES = {
    name.removeprefix("MEMORY_TYPE_").lower(): value
    for name, value in pb.MemoryType.items()
    if value
}
POLICIES = {
    name.removeprefix("CONFLICT_POLICY_").lower(): value
    for name, value in pb.ConflictPolicy.items()
    if value
}

RESOLUTIONS = {
    name.removeprefix("CONFLICT_RESOLUTION_").lower().replace("_", "-"): value
    for name, value in vpb.ConflictResolution.items()
    if value
}
CONFLICT_STATUSES = {
    name.removeprefix("CONFLICT_STATUS_").lower(): value
    for name, value in vpb.ConflictStatus.items()
    if value
}


# The servers' message-size limit (MEMLAKE_MAX_MESSAGE_BYTES default), both ways.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]


class MemlakeError(Exception):
    """A failed call: code is the gRPC status code name, field the offending field."""

    def __init__(self, code: str, message: str, field: str = "", reason: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.field, self.reason = code, message, field, reason


def _wrap(exc: grpc.RpcError) -> MemlakeError:
    field = reason = ""
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status

        status = rpc_status.from_call(exc)
        for d in status.details if status else []:
            info = error_details_pb2.ErrorInfo()
            if d.Unpack(info):
                reason, field = info.reason, info.metadata.get("field", "")
    except Exception:  # noqa: BLE001 - details are optional
        pass
    return MemlakeError(exc.code().name, exc.details() or "", field, reason)


def _pages(list_page, field: str, **kw) -> Iterator:
    """Every item of a paginated List call, page after page."""
    token = ""
    while True:
        resp = list_page(page_token=token, **kw)
        yield from getattr(resp, field)
        token = resp.next_page_token
        if not token:
            return


def ts(dt: datetime | None) -> Timestamp | None:
    if dt is None:
        return None
    t = Timestamp()
    t.FromDatetime(dt)
    return t


def scope(user_id: str = "", agent_id: str = "", session_id: str = "") -> pb.Scope:
    return pb.Scope(user_id=user_id, agent_id=agent_id, session_id=session_id)


def grant(
    *,
    users: Sequence[str] = (),
    agents: Sequence[str] = (),
    sessions: Sequence[str] = (),
    types: Sequence[int | str] = (),
    read: bool = False,
    write: bool = False,
) -> apb.Grant:
    """grant(users=["42"], read=True, write=True); types by value or name ("fact")."""
    perms = [p for p, on in ((apb.PERMISSION_READ, read), (apb.PERMISSION_WRITE, write)) if on]
    return apb.Grant(
        user_ids=users,
        agent_ids=agents,
        session_ids=sessions,
        types=[TYPES[t] if isinstance(t, str) else t for t in types],
        permissions=perms,
    )


def find_api_key() -> str:
    """MEMLAKE_API_KEY, else the file MEMLAKE_API_KEY_FILE names, else the bootstrap key a
    local `memlake serve` stored in its data directory (MEMLAKE_DATA_DIR, default .memlake)."""
    if os.environ.get("MEMLAKE_API_KEY"):
        return os.environ["MEMLAKE_API_KEY"].strip()
    path = os.environ.get("MEMLAKE_API_KEY_FILE") or str(
        Path(os.environ.get("MEMLAKE_DATA_DIR", ".memlake")) / "admin.key"
    )
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _channel(addr: str, tls: bool, ca_file: str, cert_file: str, key_file: str) -> grpc.Channel:
    if not (tls or ca_file or cert_file):
        return grpc.insecure_channel(addr, options=_CHANNEL_OPTIONS)

    def read(p: str) -> bytes | None:
        return Path(p).read_bytes() if p else None

    creds = grpc.ssl_channel_credentials(read(ca_file), read(key_file), read(cert_file))
    return grpc.secure_channel(addr, creds, options=_CHANNEL_OPTIONS)


class MemlakeClient:
    """client = MemlakeClient("127.0.0.1:50051", api_key="mlk_...")

    The key names the tenant; without api_key, find_api_key() looks in the environment and
    in the local server's data directory. tenant= is only for servers run with
    authentication off (sent as x-memlake-tenant; with a key it must match the key's
    tenant). With the all-in-one server one address serves everything; with separate
    services pass retrieval_addr and versioning_addr too. TLS: tls=True (system roots) or
    ca_file; mutual TLS adds cert_file and key_file (MEMLAKE_TLS_CA, _CERT, _KEY).
    """

    def __init__(
        self,
        addr: str = "127.0.0.1:50051",
        *,
        api_key: str | None = None,
        tenant: str = "",
        retrieval_addr: str | None = None,
        versioning_addr: str | None = None,
        timeout: float = 30.0,
        tls: bool = False,
        ca_file: str = "",
        cert_file: str = "",
        key_file: str = "",
    ) -> None:
        ca_file = ca_file or os.environ.get("MEMLAKE_TLS_CA", "")
        cert_file = cert_file or os.environ.get("MEMLAKE_TLS_CERT", "")
        key_file = key_file or os.environ.get("MEMLAKE_TLS_KEY", "")

        def open_channel(a: str) -> grpc.Channel:
            return _channel(a, tls, ca_file, cert_file, key_file)

        self._channels = {addr: open_channel(addr)}
        for a in (retrieval_addr, versioning_addr):
            if a and a not in self._channels:
                self._channels[a] = open_channel(a)
        self.ingest = ipb_grpc.IngestServiceStub(self._channels[addr])
        self.admin = apb_grpc.AdminServiceStub(self._channels[addr])
        self.retrieval = rpb_grpc.RetrievalServiceStub(self._channels[retrieval_addr or addr])
        self.versioning = vpb_grpc.VersioningServiceStub(self._channels[versioning_addr or addr])
        self.api_key = find_api_key() if api_key is None else api_key
        self.metadata = [("x-memlake-tenant", tenant)] if tenant else []
        self._tenant = tenant or None  # learned on the first scoped query (GetCaller)
        if self.api_key:
            self.metadata.append(("authorization", f"Bearer {self.api_key}"))
        self.timeout = timeout

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()

    def __enter__(self) -> MemlakeClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _call(self, method, request, timeout: float | None = None, metadata=None):
        try:
            return method(
                request, timeout=timeout or self.timeout, metadata=metadata or self.metadata
            )
        except grpc.RpcError as exc:
            raise _wrap(exc) from None

    def _scoped(self, scope: pb.Scope | None) -> list[tuple[str, str]]:
        """The call's metadata plus, for a query scoped to a user (one index partition),
        x-memlake-partition: "<tenant>/u:<user>", so a service mesh can hash on it and
        send each partition's queries to one retrieval replica (docs/scale.md). The
        tenant comes from tenant=, else from one GetCaller call; empty if that fails."""
        if scope is None or not scope.user_id:
            return self.metadata
        if self._tenant is None:
            try:
                self._tenant = self.admin.GetCaller(
                    apb.GetCallerRequest(), timeout=min(self.timeout, 5.0), metadata=self.metadata
                ).tenant
            except grpc.RpcError:
                self._tenant = ""  # AdminService is not served here: the key part only
        return [*self.metadata, (PARTITION_HEADER, f"{self._tenant}/u:{scope.user_id}")]

    # -- admin ----------------------------------------------------------------------------

    def whoami(self) -> apb.GetCallerResponse:
        return self._call(self.admin.GetCaller, apb.GetCallerRequest())

    def create_tenant(
        self, name: str, *, audit_reads: bool = False, create_admin_key: bool = True
    ) -> apb.CreateTenantResponse:
        return self._call(
            self.admin.CreateTenant,
            apb.CreateTenantRequest(
                name=name, audit_reads=audit_reads, create_admin_key=create_admin_key
            ),
        )

    def tenant_admin_key(self, tenant: str, *, name: str = "") -> str:
        """Operator keys: a new ADMIN key of tenant, creating the tenant if it is new."""
        try:
            self.create_tenant(tenant, create_admin_key=False)
        except MemlakeError as exc:
            if exc.code != "ALREADY_EXISTS":
                raise
        return self.create_api_key(tenant=tenant, role=apb.KEY_ROLE_ADMIN, name=name).secret

    def create_api_key(
        self,
        *,
        name: str = "",
        role: int = apb.KEY_ROLE_MEMBER,
        grants: Sequence[apb.Grant] = (),
        tenant: str = "",
        ttl_seconds: int = 0,
        expire_time: datetime | None = None,
    ) -> apb.CreateApiKeyResponse:
        return self._call(
            self.admin.CreateApiKey,
            apb.CreateApiKeyRequest(
                tenant=tenant,
                name=name,
                role=role,
                grants=grants,
                ttl_seconds=ttl_seconds,
                expire_time=ts(expire_time),
            ),
        )

    def list_api_keys(self, *, tenant: str = "", include_revoked: bool = False, **kw):
        return self._call(
            self.admin.ListApiKeys,
            apb.ListApiKeysRequest(tenant=tenant, include_revoked=include_revoked, **kw),
        )

    def revoke_api_key(self, key_id: str) -> apb.RevokeApiKeyResponse:
        return self._call(self.admin.RevokeApiKey, apb.RevokeApiKeyRequest(key_id=key_id))

    def list_access_events(self, **kw) -> apb.ListAccessEventsResponse:
        return self._call(self.admin.ListAccessEvents, apb.ListAccessEventsRequest(**kw))

    def update_tenant(self, name: str, *, audit_reads: bool) -> apb.UpdateTenantResponse:
        return self._call(
            self.admin.UpdateTenant, apb.UpdateTenantRequest(name=name, audit_reads=audit_reads)
        )

    # -- ingest ---------------------------------------------------------------------------

    def remember(
        self, memory: pb.Memory, *, request_id: str = "", conflict_policy: int = 0
    ) -> ipb.RememberResponse:
        return self._call(
            self.ingest.Remember,
            ipb.RememberRequest(
                memory=memory, request_id=request_id, conflict_policy=conflict_policy
            ),
        )

    def remember_batch(self, memories: Sequence[pb.Memory]) -> ipb.RememberBatchResponse:
        req = ipb.RememberBatchRequest(requests=[ipb.RememberRequest(memory=m) for m in memories])
        return self._call(self.ingest.RememberBatch, req)

    def stream_remember(
        self, items: Iterable[pb.Memory | ipb.StreamRememberRequest], timeout: float = 3600
    ) -> ipb.StreamRememberResponse:
        def gen() -> Iterator[ipb.StreamRememberRequest]:
            for it in items:
                yield (
                    it
                    if isinstance(it, ipb.StreamRememberRequest)
                    else (ipb.StreamRememberRequest(memory=it))
                )

        try:
            return self.ingest.StreamRemember(gen(), timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _wrap(exc) from None

    def forget(self, memory_id: str, *, request_id: str = "") -> int:
        return self._call(
            self.ingest.Forget, ipb.ForgetRequest(id=memory_id, request_id=request_id)
        ).seq

    # -- retrieval ------------------------------------------------------------------------

    def get(self, memory_id: str) -> pb.Memory:
        return self._call(self.retrieval.GetMemory, rpb.GetMemoryRequest(id=memory_id)).memory

    def get_by_key(self, type_: int | str, key: str, *, scope: pb.Scope | None = None) -> pb.Memory:
        """The current BACKGROUND/REFLECTION item by key or SKILL by name ("background", ...)."""
        t = TYPES[type_] if isinstance(type_, str) else type_
        return self._call(
            self.retrieval.GetMemoryByKey,
            rpb.GetMemoryByKeyRequest(type=t, scope=scope, key=key),
            metadata=self._scoped(scope),
        ).memory

    def list(
        self,
        *,
        types: Sequence[int] = (),
        scope: pb.Scope | None = None,
        page_size: int = 0,
        page_token: str = "",
        include_history: bool = False,
    ) -> rpb.ListMemoriesResponse:
        return self._call(
            self.retrieval.ListMemories,
            rpb.ListMemoriesRequest(
                types=types,
                scope=scope,
                page_size=page_size,
                page_token=page_token,
                include_history=include_history,
            ),
        )

    def list_all(self, **kw) -> Iterator[pb.Memory]:
        return _pages(self.list, "memories", **kw)

    def search(
        self,
        query: str,
        *,
        scope: pb.Scope | None = None,
        types: Sequence[int] = (),
        top_k: int = 10,
        min_seq: int = 0,
        time_range: pb.TimeRange | None = None,
        include_history: bool = False,
        timeout: float | None = None,
        vector: pb.Vector | None = None,
        min_score: float | None = None,
    ) -> rpb.SearchMemoriesResponse:
        """`vector`: the query's embedding from the server's model (then the server does
        not embed `query`); `min_score`: drop results scoring below it."""
        return self._call(
            self.retrieval.SearchMemories,
            rpb.SearchMemoriesRequest(
                query=query,
                scope=scope,
                types=types,
                top_k=top_k,
                min_seq=min_seq,
                time_range=time_range,
                include_history=include_history,
                vector=vector,
                min_score=min_score,
            ),
            timeout,
            self._scoped(scope),
        )

    def context(
        self,
        *,
        scope: pb.Scope | None = None,
        intent: str = "",
        token_budget: int = 0,
        min_seq: int = 0,
    ) -> rpb.GetContextResponse:
        return self._call(
            self.retrieval.GetContext,
            rpb.GetContextRequest(
                scope=scope, intent=intent, token_budget=token_budget, min_seq=min_seq
            ),
            metadata=self._scoped(scope),
        )

    # -- facts ----------------------------------------------------------------------------

    def assert_fact(
        self,
        subject: str,
        predicate: str,
        value: str,
        *,
        scope: pb.Scope | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        confidence: float = 0.0,
        policy: int = 0,
        source: pb.Source | None = None,
        request_id: str = "",
        reason: str = "",
        importance: float = 0.0,
    ) -> vpb.AssertFactResponse:
        return self._call(
            self.versioning.AssertFact,
            vpb.AssertFactRequest(
                scope=scope,
                subject=subject,
                predicate=predicate,
                value=value,
                valid_from=ts(valid_from),
                valid_to=ts(valid_to),
                confidence=confidence,
                policy=policy,
                source=source,
                request_id=request_id,
                reason=reason,
                importance=importance,
            ),
        )

    def get_fact(
        self, subject: str, predicate: str, *, scope: pb.Scope | None = None
    ) -> vpb.GetFactResponse:
        key = vpb.FactKey(scope=scope, subject=subject, predicate=predicate)
        return self._call(self.versioning.GetFact, vpb.GetFactRequest(key=key))

    def fact_history(
        self, subject: str, predicate: str, *, scope: pb.Scope | None = None
    ) -> list[vpb.Fact]:
        key = vpb.FactKey(scope=scope, subject=subject, predicate=predicate)
        return list(
            self._call(self.versioning.GetFactHistory, vpb.GetFactHistoryRequest(key=key)).versions
        )

    def fact_as_of(
        self,
        subject: str,
        predicate: str,
        *,
        scope: pb.Scope | None = None,
        valid_time: datetime | Timestamp | None = None,
        record_time: datetime | Timestamp | None = None,
    ) -> vpb.Fact:
        """What was true at valid_time, as memlake believed it at record_time (default now)."""
        key = vpb.FactKey(scope=scope, subject=subject, predicate=predicate)
        req = vpb.GetFactAsOfRequest(key=key)
        for name, when in (("valid_time", valid_time), ("record_time", record_time)):
            if when is not None:
                getattr(req, name).CopyFrom(when if isinstance(when, Timestamp) else ts(when))
        return self._call(self.versioning.GetFactAsOf, req).fact

    def list_facts(
        self,
        *,
        scope: pb.Scope | None = None,
        subject: str = "",
        include_history: bool = False,
        page_size: int = 0,
        page_token: str = "",
    ) -> vpb.ListFactsResponse:
        return self._call(
            self.versioning.ListFacts,
            vpb.ListFactsRequest(
                scope=scope,
                subject=subject,
                include_history=include_history,
                page_size=page_size,
                page_token=page_token,
            ),
        )

    def list_facts_all(self, **kw) -> Iterator[vpb.Fact]:
        return _pages(self.list_facts, "facts", **kw)

    def retract_fact(
        self,
        subject: str,
        predicate: str,
        *,
        scope: pb.Scope | None = None,
        reason: str = "",
        actor: str = "",
        request_id: str = "",
    ) -> vpb.RetractFactResponse:
        key = vpb.FactKey(scope=scope, subject=subject, predicate=predicate)
        return self._call(
            self.versioning.RetractFact,
            vpb.RetractFactRequest(key=key, reason=reason, actor=actor, request_id=request_id),
        )

    def list_conflicts(
        self,
        *,
        scope: pb.Scope | None = None,
        status: int = 0,
        page_size: int = 0,
        page_token: str = "",
    ) -> vpb.ListConflictsResponse:
        return self._call(
            self.versioning.ListConflicts,
            vpb.ListConflictsRequest(
                scope=scope, status=status, page_size=page_size, page_token=page_token
            ),
        )

    def resolve_conflict(
        self,
        conflict_id: str,
        resolution: int,
        *,
        keep_fact_id: str = "",
        actor: str = "",
        reason: str = "",
    ) -> vpb.ResolveConflictResponse:
        return self._call(
            self.versioning.ResolveConflict,
            vpb.ResolveConflictRequest(
                conflict_id=conflict_id,
                resolution=resolution,
                keep_fact_id=keep_fact_id,
                actor=actor,
                reason=reason,
            ),
        )

    def add_subject_alias(
        self,
        alias: str,
        subject: str,
        *,
        scope: pb.Scope | None = None,
        actor: str = "",
        reason: str = "",
    ) -> str:
        return self._call(
            self.versioning.AddSubjectAlias,
            vpb.AddSubjectAliasRequest(
                scope=scope, alias=alias, subject=subject, actor=actor, reason=reason
            ),
        ).subject

    def list_audit_events(
        self,
        *,
        scope: pb.Scope | None = None,
        subject: str = "",
        predicate: str = "",
        page_size: int = 0,
        page_token: str = "",
    ) -> vpb.ListAuditEventsResponse:
        return self._call(
            self.versioning.ListAuditEvents,
            vpb.ListAuditEventsRequest(
                scope=scope,
                subject=subject,
                predicate=predicate,
                page_size=page_size,
                page_token=page_token,
            ),
        )

    def list_audit_events_all(self, **kw) -> Iterator[vpb.AuditEvent]:
        return _pages(self.list_audit_events, "events", **kw)

    def get_conflict_policy(self) -> vpb.GetConflictPolicyResponse:
        return self._call(self.versioning.GetConflictPolicy, vpb.GetConflictPolicyRequest())

    def set_conflict_policy(
        self, policy: int, *, actor: str = "", reason: str = ""
    ) -> vpb.SetConflictPolicyResponse:
        """policy 0 (UNSPECIFIED) returns the tenant to the server's default."""
        return self._call(
            self.versioning.SetConflictPolicy,
            vpb.SetConflictPolicyRequest(policy=policy, actor=actor, reason=reason),
        )

    # -- privacy (erasure and export) -----------------------------------------------------

    @property
    def privacy(self) -> ppb_grpc.PrivacyServiceStub:
        """PrivacyService is hosted by the ingest process: the first address's channel."""
        stub = self.__dict__.get("_privacy")
        if stub is None:
            stub = self.__dict__["_privacy"] = ppb_grpc.PrivacyServiceStub(
                next(iter(self._channels.values()))
            )
        return stub

    @staticmethod
    def subject(user_id: str = "", agent_id: str = "", *, tenant: bool = False) -> ppb.Subject:
        if sum(map(bool, (user_id, agent_id, tenant))) != 1:
            raise ValueError("name exactly one of user_id, agent_id, tenant=True")
        if tenant:
            return ppb.Subject(tenant=True)
        return ppb.Subject(user_id=user_id) if user_id else ppb.Subject(agent_id=agent_id)

    def erase_subject(
        self, user_id: str = "", agent_id: str = "", *, tenant: bool = False
    ) -> ppb.ErasureReceipt:
        """Erases everything held about one user, one agent, or the whole tenant."""
        req = ppb.EraseSubjectRequest(subject=self.subject(user_id, agent_id, tenant=tenant))
        return self._call(self.privacy.EraseSubject, req, timeout=max(self.timeout, 600)).receipt

    def export_subject(
        self, user_id: str = "", agent_id: str = "", *, tenant: bool = False, timeout: float = 3600
    ) -> Iterator[ppb.ExportSubjectResponse]:
        """Chunks of JSON lines (each chunk says how many lines the export has in all)."""
        req = ppb.ExportSubjectRequest(subject=self.subject(user_id, agent_id, tenant=tenant))
        try:
            yield from self.privacy.ExportSubject(req, timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _wrap(exc) from None

    def import_subject(
        self, lines: Iterable[str], *, chunk: int = 500, timeout: float = 3600
    ) -> ppb.ImportSubjectResponse:
        """Writes the lines of an export into this client's tenant."""

        def gen() -> Iterator[ppb.ImportSubjectRequest]:
            buf: list[str] = []
            for line in lines:
                if line.strip():
                    buf.append(line.rstrip("\n"))
                if len(buf) >= chunk:
                    yield ppb.ImportSubjectRequest(lines=buf)
                    buf = []
            if buf:
                yield ppb.ImportSubjectRequest(lines=buf)

        try:
            return self.privacy.ImportSubject(gen(), timeout=timeout, metadata=self.metadata)
        except grpc.RpcError as exc:
            raise _wrap(exc) from None
