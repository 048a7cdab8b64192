"""Building, starting and draining a server: the services it hosts, reflection,
metrics over HTTP, and a shutdown within its grace whatever clients do."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import REGISTRY, start_http_server

from shared.auth.audit import AccessAuditor
from shared.auth.identity import Authenticator
from shared.limits import TenantLimiter
from shared.server.health import Dependency, HealthMonitor
from shared.server.interceptor import ServiceInterceptor
from shared.tracing import server_interceptors

log = logging.getLogger("memlake")
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def channel_options(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """The one message-size limit, for servers and for the channels services open."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


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
