"""The one interceptor every RPC passes: authentication, validation, limits, deadlines,
error mapping to google.rpc.Status, request ids, metrics and access audit."""

from __future__ import annotations

import logging
import time
import uuid

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared import deadline, validation
from shared.auth.audit import AccessAuditor
from shared.auth.identity import Authenticator, is_public, reset_caller, set_caller
from shared.errors import InvalidArgument, MemlakeError
from shared.limits import TenantLimiter
from shared.tenancy import tenant_from_metadata
from shared.tracing import annotate

log = logging.getLogger("memlake")


REQUESTS = Counter(
    "memlake_grpc_requests_total",
    "gRPC requests handled, by method and status code",
    ["service", "method", "code"],
)
LATENCY = Histogram(
    "memlake_grpc_request_duration_seconds",
    "gRPC request latency, by method and status code",
    ["service", "method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ERROR_DOMAIN = "memlake.dev"
# An error message goes out twice in the trailers (grpc-message and the rich status), and
# clients refuse trailers over 8 KiB: keep it to this many UTF-8 bytes.
MAX_ERROR_BYTES = 1024
AUDIT_GRACE_S = 0.25


class _Undecodable:
    """A request body that did not parse; the handler answers INVALID_ARGUMENT."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def error(self) -> InvalidArgument:
        return InvalidArgument("request", f"the body is not a valid {self.type_name}")


def _safe_deserializer(deserialize, type_name: str):
    if deserialize is None:
        return None

    def parse(data: bytes):
        try:
            return deserialize(data)
        except Exception:  # noqa: BLE001 - any parse failure is the caller's bad input
            return _Undecodable(type_name)

    return parse


def _checked_stream(requests, validate: bool):
    for req in requests:
        if isinstance(req, _Undecodable):
            raise req.error()
        if validate:
            validation.check(req)
        yield req


def _status_for(exc: BaseException) -> tuple[grpc.StatusCode, status_pb2.Status]:
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    if isinstance(exc, MemlakeError):
        code = grpc.StatusCode[exc.code_name]
        msg, reason, fld, extra = exc.message, exc.reason, exc.field, exc.details
    elif sqlstate == "55P03":  # lock_timeout: another transaction holds this item
        code, msg, reason, fld, extra = (
            grpc.StatusCode.ABORTED,
            "another write holds this item; retry",
            "LOCK_TIMEOUT",
            "",
            [],
        )
    elif sqlstate == "57014" and (deadline.remaining() or 1.0) <= 0.05:
        code, msg, reason, fld, extra = (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "the deadline passed while the database was working",
            "DEADLINE_EXCEEDED",
            "",
            [],
        )
    elif _is_db_unavailable(exc):
        code, msg, reason, fld, extra = (
            grpc.StatusCode.UNAVAILABLE,
            "the database is unavailable; safe to retry",
            "DATABASE_UNAVAILABLE",
            "",
            [],
        )
    else:
        code, msg, reason, fld, extra = (
            grpc.StatusCode.INTERNAL,
            f"internal error ({type(exc).__name__})",
            "INTERNAL",
            "",
            [],
        )
    raw = msg.encode()
    if len(raw) > MAX_ERROR_BYTES:  # never let an echoed value overflow the metadata
        msg = raw[: MAX_ERROR_BYTES - 3].decode(errors="ignore") + "..."
    details = []
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)
    if fld:
        info.metadata["field"] = fld
    details.append(info)
    if fld and code == grpc.StatusCode.INVALID_ARGUMENT:
        br = error_details_pb2.BadRequest()
        br.field_violations.add(field=fld, description=msg)
        details.append(br)
    details.extend(extra)
    packed = []
    for d in details:
        a = any_pb2.Any()
        a.Pack(d)
        packed.append(a)
    return code, status_pb2.Status(code=code.value[0], message=msg, details=packed)


class _Abort(Exception):
    pass


INTERNAL_SERVICES = {"memlake.v1.ShardService"}
PER_ITEM_STREAMS = {"/memlake.v1.IngestService/StreamRemember"}


class ServiceInterceptor(grpc.ServerInterceptor):
    """Wraps every RPC kind: request id, error translation, metrics, one log line."""

    def __init__(
        self,
        log_requests: bool = True,
        authenticator: Authenticator | None = None,
        auditor: AccessAuditor | None = None,
        limiter: TenantLimiter | None = None,
        default_tenant: str = "default",
    ) -> None:
        self.log_requests = log_requests
        self.auth = authenticator
        self.auditor = auditor
        self.limiter = limiter if limiter is not None and limiter.enabled else None
        self.default_tenant = default_tenant

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        full = handler_call_details.method  # "/memlake.v1.IngestService/Remember"
        service, _, method = full.lstrip("/").rpartition("/")
        md = dict(handler_call_details.invocation_metadata or ())
        if handler.unary_unary:
            kind, fn = "unary_unary", handler.unary_unary
        elif handler.unary_stream:
            kind, fn = "unary_stream", handler.unary_stream
        elif handler.stream_unary:
            kind, fn = "stream_unary", handler.stream_unary
        else:
            kind, fn = "stream_stream", handler.stream_stream
        streaming_response = kind.endswith("_stream")
        streaming_request = kind.startswith("stream_")
        # Replica-to-replica calls (ShardService) carry internal values such as -inf
        # time bounds: checked by their callers, not here, and not limited twice.
        ours = service.startswith("memlake.") and service not in INTERNAL_SERVICES
        # Items of these streams are checked one by one by the servicer (per-item errors).
        per_item = full in PER_ITEM_STREAMS
        public = is_public(full)

        def wrapped(request_or_iterator, context):
            g = guarded(request_or_iterator, context)
            if streaming_response:
                return g  # streamed as produced; errors map to a status mid-stream too
            try:
                return next(g)
            finally:
                g.close()  # runs the metrics and log below

        def guarded(request_or_iterator, context):
            start = time.perf_counter()
            request_id = md.get("x-request-id") or uuid.uuid4().hex
            annotate(request_id=request_id)
            code = grpc.StatusCode.OK
            ident = token = result = release = None
            valid = False  # only a request that passed validation reaches the audit
            try:
                if self.auth is not None and not public:
                    ident = self.auth.authenticate(md, context)
                    token = set_caller(ident)
                    annotate(tenant=ident.tenant)  # from the credentials, never the request
                if self.limiter is not None and ours and not public:
                    tenant = (
                        ident.tenant
                        if ident is not None
                        else tenant_from_metadata(md.items(), self.default_tenant)
                    )
                    release = self.limiter.admit(tenant)
                if streaming_request:
                    request_or_iterator = _checked_stream(
                        request_or_iterator, ours and not per_item
                    )
                elif isinstance(request_or_iterator, _Undecodable):
                    raise request_or_iterator.error()
                elif ours:
                    validation.check(request_or_iterator, skip_per_item=True)
                valid = True
                with deadline.call_deadline(context.time_remaining()):
                    result = fn(request_or_iterator, context)
                    if streaming_response:
                        yield from result
                    else:
                        yield result
            except Exception as exc:  # noqa: BLE001 - every exception becomes a status
                set_code = _context_code(context)
                if set_code not in (None, grpc.StatusCode.OK):
                    code = set_code  # the servicer aborted deliberately
                    raise
                if not isinstance(exc, MemlakeError) and not _is_db_unavailable(exc):
                    log.exception("unhandled error in %s", full)
                code, status = _status_for(exc)
                context.abort_with_status(rpc_status.to_status(status))
            finally:
                if release is not None:
                    release()
                if token is not None:
                    reset_caller(token)
                elapsed = time.perf_counter() - start
                code_name = code.name
                if ident is not None and self.auditor is not None:
                    # Bounded like the call (plus AUDIT_GRACE_S), so a database outage
                    # cannot hold this thread after the caller has gone.
                    left = context.time_remaining()
                    with deadline.call_deadline(
                        None if left is None else max(left, 0.0) + AUDIT_GRACE_S
                    ):
                        self.auditor.record(
                            ident,
                            full,
                            code_name,
                            request_or_iterator if valid and kind.startswith("unary") else None,
                            result if kind.endswith("unary") else None,
                            request_id,
                            _peer(context),
                        )
                REQUESTS.labels(service, method, code_name).inc()
                LATENCY.labels(service, method, code_name).observe(elapsed)
                if self.log_requests:
                    log.info(
                        "rpc",
                        extra={
                            "fields": {
                                "method": full,
                                "code": code_name,
                                "ms": round(elapsed * 1000, 3),
                                "request_id": request_id,
                                "tenant": ident.tenant if ident else "",
                                "key": ident.key_id if ident else "",
                                "peer": _peer(context),
                            }
                        },
                    )

        factory = getattr(grpc, f"{kind}_rpc_method_handler")
        return factory(
            wrapped,
            request_deserializer=_safe_deserializer(handler.request_deserializer, method),
            response_serializer=handler.response_serializer,
        )


def _context_code(context):
    try:
        return context.code()
    except Exception:  # noqa: BLE001 - older grpcio
        return None


def _peer(context) -> str:
    try:
        return context.peer()
    except Exception:  # noqa: BLE001
        return ""


def _is_db_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError | PoolTimeout) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )
