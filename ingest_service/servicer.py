"""protobuf <-> domain for IngestService. FACT items are handed to the versioning service."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ingest_service.domain import IngestDomain, MemoryIn, WriteResult
from memlake.v1 import ingest_service_pb2 as ipb
from memlake.v1 import ingest_service_pb2_grpc as ipb_grpc
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb
from memlake.v1 import versioning_service_pb2_grpc as vpb_grpc
from shared import validation
from shared.auth.grants import WRITE
from shared.auth.identity import caller
from shared.auth.redact import reads_facts
from shared.convert import ATTR_FIELD, msg_to_dict, record_to_proto, ts_to_dt
from shared.db.models import MemoryRecord
from shared.embedding import Embedder
from shared.errors import DeadlineExceeded, InvalidArgument, MemlakeError, error_for_code
from shared.idempotency import Replay, fingerprint
from shared.tenancy import TENANT_HEADER, check_scope_tenant
from shared.tracing import traced_channel
from shared.vectors import client_vector

MAX_BATCH = 1000
STREAM_CHUNK = 256  # items written per transaction (and embedded per call)


def memory_in(req, prefix: str, embedder: Embedder | None = None) -> MemoryIn:
    """RememberRequest/StreamRememberRequest -> MemoryIn (shape checks only; a client
    vector is checked against `embedder`'s model and dimension)."""
    m = req.memory
    if not req.HasField("memory"):
        raise InvalidArgument(prefix, "is required")
    vector = None
    if m.HasField("vector"):
        if m.type == pb.MEMORY_TYPE_FACT:
            raise InvalidArgument(f"{prefix}.vector", "is not accepted for FACT items")
        if embedder is None:
            raise InvalidArgument(f"{prefix}.vector", "is not accepted here")
        vector = client_vector(m.vector, f"{prefix}.vector", embedder.name, embedder.dim)
    which = m.WhichOneof("attributes")
    expected = ATTR_FIELD.get(m.type)
    if which and expected and which != expected:
        raise InvalidArgument(
            f"{prefix}.{which}",
            f"does not match type {pb.MemoryType.Name(m.type)} (expected {expected})",
        )
    sub = getattr(m, which) if which else None
    attrs = msg_to_dict(sub) if sub is not None and sub.ListFields() else {}
    # Output-only attribute fields are not taken from the caller.
    for out_only in ("turn_index", "revision", "status", "fact_version_id"):
        attrs.pop(out_only, None)
    return MemoryIn(
        type=m.type,
        content=m.content,
        user_id=m.scope.user_id,
        agent_id=m.scope.agent_id,
        session_id=m.scope.session_id,
        attributes=attrs,
        importance=m.importance,
        source=msg_to_dict(m.source) if m.HasField("source") else {},
        occur_time=ts_to_dt(m.occur_time, has=m.HasField("occur_time")),
        expire_time=ts_to_dt(m.expire_time, has=m.HasField("expire_time")),
        request_id=req.request_id,
        fingerprint=fingerprint(req),
        vector=vector,
    )


def _join(prefix: str, field: str) -> str:
    return f"{prefix}.{field}" if prefix else field


def _item_error(exc: MemlakeError) -> pb.ItemError:
    return pb.ItemError(
        code=grpc.StatusCode[exc.code_name].value[0], message=exc.message, field=exc.field
    )


class IngestServicer(ipb_grpc.IngestServiceServicer):
    def __init__(
        self,
        domain: IngestDomain,
        versioning_addr: str,
        channel=grpc.insecure_channel,
        *,
        tracer_provider=None,
    ) -> None:
        self.domain = domain
        self.versioning_addr = versioning_addr
        self.tracer_provider = tracer_provider
        self._channel = channel
        self._vchannel: grpc.Channel | None = None
        self._ahead = ThreadPoolExecutor(1, thread_name_prefix="embed-ahead")
        self._vstub: vpb_grpc.VersioningServiceStub | None = None

    def close(self) -> None:
        self._ahead.shutdown(wait=True)
        if self._vchannel is not None:
            self._vchannel.close()

    def _versioning(self) -> vpb_grpc.VersioningServiceStub:
        if self._vchannel is None:
            self._vchannel = self._channel(self.versioning_addr)
            # The trace context travels with the call: one trace for a FACT write.
            self._vstub = vpb_grpc.VersioningServiceStub(
                traced_channel(self._vchannel, self.tracer_provider)
            )
        return self._vstub

    def _tenant(self, context) -> str:
        return caller().tenant

    # -- the write path shared by all three write RPCs --------------------------------------

    def _remember(self, tenant: str, reqs: list, context, prefix: str, offset: int = 0) -> list:
        """Returns, per request, a RememberResponse or a MemlakeError."""
        out: list = [None] * len(reqs)
        plain_idx, plain_items = [], []
        for i, req in enumerate(reqs):
            p = prefix.format(i=offset + i)
            try:
                validation.check(req, p)
                check_scope_tenant(req.memory.scope.tenant, tenant, _join(p, "memory.scope.tenant"))
                item = memory_in(req, _join(p, "memory"), self.domain.embedder)
                caller().require(WRITE, item.type, item.user_id, item.agent_id, item.session_id)
                item.readable = caller().readable()
                if item.type == pb.MEMORY_TYPE_FACT:
                    out[i] = self._assert_fact(tenant, req, item, context)
                else:
                    plain_idx.append(i)
                    plain_items.append(item)
            except MemlakeError as exc:
                out[i] = exc
        if plain_items:
            results = self.domain.remember_many(tenant, plain_items, _encode)
            for i, res in zip(plain_idx, results, strict=True):
                if isinstance(res, Replay):
                    out[i] = ipb.RememberResponse.FromString(res.data)
                elif isinstance(res, WriteResult):
                    out[i] = _response(res)
                else:
                    if res.field.startswith("memory"):
                        res.field = _join(prefix.format(i=offset + i), res.field)
                        res.message = f"{res.field}: {res.message.split(': ', 1)[-1]}"
                    out[i] = res
        return out

    def _assert_fact(self, tenant: str, req, item: MemoryIn, context) -> ipb.RememberResponse:
        f = req.memory.fact
        areq = vpb.AssertFactRequest(
            subject=f.subject,
            predicate=f.predicate,
            value=f.value,
            confidence=f.confidence,
            policy=req.conflict_policy,
            request_id=req.request_id,
            importance=req.memory.importance,
        )
        areq.scope.CopyFrom(req.memory.scope)
        if f.HasField("typed_value"):
            areq.typed_value.CopyFrom(f.typed_value)
        if f.HasField("valid_from"):
            areq.valid_from.CopyFrom(f.valid_from)
        if f.HasField("valid_to"):
            areq.valid_to.CopyFrom(f.valid_to)
        if req.memory.HasField("source"):
            areq.source.CopyFrom(req.memory.source)
        remaining = context.time_remaining()
        try:
            resp = self._versioning().AssertFact(
                areq,
                timeout=remaining if remaining is not None else 30.0,
                metadata=list(caller().forward) or [(TENANT_HEADER, tenant)],
            )
        except grpc.RpcError as exc:
            raise _versioning_error(exc) from exc
        with self.domain.db.read() as s:
            rec = s.get(MemoryRecord, int(resp.fact.memory_id)) if resp.fact.memory_id else None
        if rec is not None and (
            resp.outcome != pb.WRITE_OUTCOME_DUPLICATE or reads_facts(item.user_id, item.agent_id)
        ):
            memory = record_to_proto(rec)
        else:  # a DUPLICATE is a record someone else wrote: a writer gets its own request back
            memory = pb.Memory(type=pb.MEMORY_TYPE_FACT)
            if rec is not None:
                memory.CopyFrom(req.memory)
                memory.id, memory.scope.tenant = str(rec.id), tenant
        return ipb.RememberResponse(memory=memory, seq=resp.seq, outcome=resp.outcome)

    # -- RPCs -------------------------------------------------------------------------------

    def Remember(self, request, context):
        res = self._remember(self._tenant(context), [request], context, "")[0]
        if isinstance(res, MemlakeError):
            raise res
        return res

    def RememberBatch(self, request, context):
        if len(request.requests) > MAX_BATCH:
            raise InvalidArgument("requests", f"at most {MAX_BATCH} items per batch")
        tenant = self._tenant(context)
        results = self._remember(tenant, list(request.requests), context, "requests[{i}]")
        return _batch_response(ipb.RememberBatchResponse(), results)

    def StreamRemember(self, request_iterator, context):
        tenant = self._tenant(context)
        resp = ipb.StreamRememberResponse()
        offset = 0

        def chunks():
            chunk: list = []
            for req in request_iterator:
                chunk.append(req)
                if len(chunk) >= STREAM_CHUNK:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk

        # While a chunk is written, the next one is embedded (into the embedder's cache),
        # so the model keeps running while the database works.
        stream = chunks()
        chunk = next(stream, None)
        while chunk is not None:
            following = next(stream, None)
            ahead = self._ahead.submit(self._embed_ahead, following) if following else None
            results = self._remember(tenant, chunk, context, "item[{i}]", offset)
            _batch_response(resp, results, offset)
            offset += len(chunk)
            if ahead is not None:
                ahead.result()
            chunk = following
            remaining = context.time_remaining()
            if chunk is not None and remaining is not None and remaining <= 0:
                raise DeadlineExceeded(
                    f"deadline passed after {offset} items; those are stored, "
                    "resend the rest (request_ids make resending safe)"
                )
        resp.accepted = sum(1 for r in resp.results if not r.HasField("error"))
        resp.failed = len(resp.results) - resp.accepted
        return resp

    def _embed_ahead(self, reqs: list) -> None:
        items = []
        for req in reqs:
            if req.memory.HasField("vector") or req.memory.type == pb.MEMORY_TYPE_FACT:
                continue  # nothing to embed
            try:
                item = memory_in(req, "memory", self.domain.embedder)
            except MemlakeError:
                continue  # answered when its chunk is written
            items.append(item)
        self.domain.embed_ahead(items)

    def Forget(self, request, context):
        tenant = self._tenant(context)
        if not request.id:
            raise InvalidArgument("id", "is required")
        if not request.id.isdigit():
            raise InvalidArgument("id", "is not a memory id")
        memory_id = int(request.id)
        with self.domain.db.read() as s:
            rec = s.get(MemoryRecord, memory_id)
            if rec is not None and rec.tenant == tenant:
                caller().require(
                    WRITE,
                    rec.type,
                    rec.user_id,
                    rec.agent_id,
                    rec.session_id,
                    f"forget memory {memory_id}",
                    name_scope=False,
                )
        seq = self.domain.forget(tenant, memory_id)
        return ipb.ForgetResponse(seq=seq)


_FACT_FIELDS = {"subject", "predicate", "value", "confidence", "valid_from", "valid_to"}


def _versioning_error(exc: grpc.RpcError) -> MemlakeError:
    """The versioning service's status as our own error: same code and reason, the field
    named as in RememberRequest, and its details (the current Fact for a REJECT) kept."""
    err = error_for_code(exc.code().name, exc.details() or "versioning failed")
    try:
        status = rpc_status.from_call(exc)
    except Exception:  # noqa: BLE001 - details are optional
        status = None
    for d in status.details if status is not None else []:
        info = error_details_pb2.ErrorInfo()
        fact = vpb.Fact()
        if d.Is(info.DESCRIPTOR) and d.Unpack(info):
            err.reason = info.reason
            field = info.metadata.get("field", "")
            if field in _FACT_FIELDS:
                err.field = f"memory.fact.{field}"
            elif field == "policy":
                err.field = "conflict_policy"
        elif d.Is(fact.DESCRIPTOR) and d.Unpack(fact):
            err.details.append(fact)
    return err


def _response(res: WriteResult) -> ipb.RememberResponse:
    if res.response is None:  # built once: for the request_id record and for the caller
        res.response = ipb.RememberResponse(
            memory=record_to_proto(res.record), seq=res.seq, outcome=res.outcome
        )
    return res.response


def _encode(res: WriteResult) -> bytes:
    return _response(res).SerializeToString()


def _batch_response(resp, results: list, offset: int = 0):
    for i, res in enumerate(results):
        r = resp.results.add(index=offset + i)
        if isinstance(res, MemlakeError):
            r.error.CopyFrom(_item_error(res))
        else:
            r.memory.CopyFrom(res.memory)
            r.seq = res.seq
            r.outcome = res.outcome
            resp.seq = max(resp.seq, res.seq)
    return resp
