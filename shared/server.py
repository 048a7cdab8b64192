"""gRPC server bootstrap shared by every service: one interceptor for errors, metrics,
logs and request ids; health that says SERVING only when dependencies answer; reflection;
Prometheus over HTTP; graceful drain on SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared import deadline, validation
from shared.auth.audit import AccessAuditor
from shared.auth.identity import Authenticator, is_public, reset_caller, set_caller
from shared.errors import InvalidArgument, MemlakeError
from shared.limits import TenantLimiter
from shared.tenancy import tenant_from_metadata
from shared.tracing import annotate, server_interceptors

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
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """The one message-size limit, for servers and for the channels services open."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which SIMD build it picked


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


@dataclass
class ServiceSpec:
    """One gRPC service hosted by a server."""

    full_name: str  # e.g. "memlake.v1.IngestService"
    register: Callable[[grpc.Server], None]
    # Each raises when a dependency does not answer; SERVING only when all pass.
    checks: list[Callable[[], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    # Run while still answering calls but already NOT_SERVING (out of the endpoints), with
    # the seconds they may take: e.g. a retrieval replica handing its partitions over.
    before_stop: list[Callable[[float], None]] = field(default_factory=list)


LIVENESS = "memlake.liveness"  # SERVING while the process can answer at all


@dataclass
class Dependency:
    """A health entry of its own (e.g. "memlake.database"). `required`: the overall
    status "" is NOT_SERVING while it fails; otherwise its failure only degrades."""

    name: str
    check: Callable[[], None]
    required: bool = True
    on_result: Callable[[bool], None] | None = None  # told each verdict


class HealthMonitor:
    """Re-runs the checks periodically and publishes: LIVENESS (always SERVING: the
    process answers; for liveness probes), each dependency, each service (readiness: its
    own checks), and "" (every service and every required dependency). A check that does
    not answer within `timeout` counts as failed, so a database that hangs rather than
    refuses turns readiness NOT_SERVING within interval + timeout seconds."""

    def __init__(
        self,
        servicer: health.HealthServicer,
        specs: list[ServiceSpec],
        interval: float,
        dependencies: list[Dependency] | None = None,
        timeout: float = 2.0,
    ):
        self.servicer = servicer
        self.specs = specs
        self.deps = dependencies or []
        self.interval = interval
        self.timeout = timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._running: dict[Callable, threading.Thread] = {}
        for spec in specs:
            servicer.set(spec.full_name, health_pb2.HealthCheckResponse.NOT_SERVING)
        for dep in self.deps:
            servicer.set(dep.name, health_pb2.HealthCheckResponse.NOT_SERVING)
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)

    def _run_check(self, check: Callable[[], None]) -> str | None:
        """None when the check passed within the timeout, else why not."""
        prev = self._running.get(check)
        if prev is not None and prev.is_alive():
            return "the previous check has not returned"
        out: list = []

        def run():
            try:
                check()
                out.append(None)
            except Exception as exc:  # noqa: BLE001 - any failure means not ready
                out.append(f"{type(exc).__name__}: {str(exc)[:200]}")

        t = threading.Thread(target=run, name="health-check", daemon=True)
        self._running[check] = t
        t.start()
        t.join(self.timeout)
        if t.is_alive():
            return f"no answer within {self.timeout:g} s"
        return out[0] if out else "no result"

    def check_once(self) -> bool:
        results: dict[Callable, str | None] = {}

        def result(check):
            if check not in results:
                results[check] = self._run_check(check)
            return results[check]

        def publish(name: str, ok: bool) -> None:
            self.servicer.set(
                name,
                health_pb2.HealthCheckResponse.SERVING
                if ok
                else health_pb2.HealthCheckResponse.NOT_SERVING,
            )

        all_ok = True
        for dep in self.deps:
            why = result(dep.check)
            if why is not None:
                log.warning("health: %s failing: %s", dep.name, why)
            if dep.on_result is not None:
                dep.on_result(why is None)
            publish(dep.name, why is None)
            all_ok = all_ok and (why is None or not dep.required)
        for spec in self.specs:
            why = next((w for w in map(result, spec.checks) if w is not None), None)
            if why is not None:
                log.warning("health check failed for %s: %s", spec.full_name, why)
            publish(spec.full_name, why is None)
            all_ok = all_ok and why is None
        publish("", all_ok)
        return all_ok

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            ok = self.check_once()
            # Poll quickly until first SERVING, then at the configured interval.
            delay = self.interval if ok else min(max(delay * 2, 0.1), self.interval)
            self._stop.wait(delay)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    monitor: HealthMonitor
    specs: list[ServiceSpec]

    def stop(self, grace: float) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let in-flight ones finish. Returns
        within `grace` whatever clients do: calls still running when the drain share of
        it ends are cancelled, and stop hooks (index snapshot, closing pools) get the rest."""
        end = time.monotonic() + grace
        self.monitor.stop()
        self.health.enter_graceful_shutdown()
        for spec in self.specs:  # half the grace at most; draining and on_stop get the rest
            for fn in spec.before_stop:
                try:
                    fn(max(end - time.monotonic() - grace / 2, 0))
                except Exception:  # noqa: BLE001
                    log.exception("error before stopping %s", spec.full_name)
        left = max(end - time.monotonic(), 0)
        self.server.stop(max(left - min(1.0, left / 4), 0)).wait()
        hooks = threading.Thread(target=self._run_on_stop, name="on-stop", daemon=True)
        hooks.start()
        hooks.join(max(end - time.monotonic(), 0))
        if hooks.is_alive():
            log.warning("stop hooks still running when the grace ended; not waiting for them")

    def _run_on_stop(self) -> None:
        for spec in self.specs:
            for fn in spec.on_stop:
                try:
                    fn()
                except Exception:  # noqa: BLE001
                    log.exception("error while stopping %s", spec.full_name)


def create_server(
    specs: list[ServiceSpec],
    address: str,
    *,
    max_workers: int = 16,
    health_interval: float = 5.0,
    log_requests: bool = True,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    tracer_provider=None,
    authenticator: Authenticator | None = None,
    auditor: AccessAuditor | None = None,
    server_credentials: grpc.ServerCredentials | None = None,
    limiter: TenantLimiter | None = None,
    default_tenant: str = "default",
    dependencies: list[Dependency] | None = None,
    health_timeout: float = 2.0,
) -> RunningServer:
    """Builds and starts a server on address (port 0 picks a free port)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        # The tracing interceptor (when on) is outermost, so ours runs in its span.
        interceptors=[
            *server_interceptors(tracer_provider),
            ServiceInterceptor(log_requests, authenticator, auditor, limiter, default_tenant),
        ],
        options=[*channel_options(max_message_bytes), ("grpc.so_reuseport", 0)],
    )
    for spec in specs:
        spec.register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [s.full_name for s in specs] + [
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(names, server)
    if server_credentials is not None:
        port = server.add_secure_port(address, server_credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    monitor = HealthMonitor(
        health_servicer, specs, health_interval, dependencies, timeout=health_timeout
    )
    server.start()
    monitor.start()
    return RunningServer(server, port, health_servicer, monitor, specs)


def start_metrics(host: str, port: int) -> int:
    """Serves Prometheus metrics over HTTP; returns the bound port."""
    httpd, _ = start_http_server(port, addr=host, registry=REGISTRY)
    return httpd.server_port


def serve_forever(running: RunningServer, grace: float) -> None:
    """Blocks until SIGTERM/SIGINT, then drains in-flight calls for up to grace seconds."""
    done = threading.Event()

    def _handle(signum, _frame):
        log.info("signal %s: draining for up to %ss", signal.Signals(signum).name, grace)
        done.set()

    signal.signal(signal.SIGTERM, _handle)
    signal.signal(signal.SIGINT, _handle)
    done.wait()
    # A handler stuck in a call that ignores cancellation would keep the interpreter from
    # exiting (it joins worker threads): end the process anyway when the grace is over.
    watchdog = threading.Timer(grace, _hard_exit)
    watchdog.daemon = True
    watchdog.start()
    running.stop(grace)
    log.info("stopped")


def _hard_exit() -> None:
    log.warning("threads still busy after the shutdown grace; exiting now")
    logging.shutdown()
    os._exit(0)


__all__ = [
    "Dependency",
    "LIVENESS",
    "ServiceSpec",
    "RunningServer",
    "create_server",
    "start_metrics",
    "serve_forever",
    "configure_logging",
]
