"""Starting services: each alone, or all three in one process."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import sys

from shared.auth.audit import AccessAuditor
from shared.auth.identity import Authenticator
from shared.auth.store import KeyStore
from shared.auth.tls import server_credentials
from shared.limits import TenantLimiter
from shared.runtime import Runtime, build_runtime
from shared.server import Dependency, RunningServer, create_server, serve_forever, start_metrics
from shared.settings import Settings

log = logging.getLogger("memlake")


def start(
    which: str, settings: Settings, *, port: int | None = None, runtime: Runtime | None = None
) -> tuple[RunningServer, Runtime]:
    """which: "all", "ingest", "retrieval" or "versioning". port=0 picks a free port."""
    from admin_service.app import admin_spec
    from ingest_service.app import ingest_spec
    from privacy_service.app import privacy_spec
    from retrieval_service.app import retrieval_spec
    from versioning_service.app import versioning_spec

    host = settings.host
    check_auth_setting(settings)
    if port is None:
        port = getattr(settings, f"{'allinone' if which == 'all' else which}_port")
        if which == "all" and settings.addr:
            host, port = split_addr(settings.addr)
    rt = runtime or build_runtime(settings, service=which)
    authenticator, auditor = _auth(settings, rt)
    specs = []
    ingest_servicer = None
    if which in ("all", "ingest"):
        spec, ingest_servicer = ingest_spec(rt, settings.resolved_versioning_addr())
        specs.append(spec)
        specs.append(privacy_spec(rt))  # erasure and export live beside the writes
    if which in ("all", "retrieval"):
        specs.append(retrieval_spec(rt)[0])
    if which in ("all", "versioning"):
        specs.append(versioning_spec(rt))
    if which in ("all", "ingest"):
        specs.append(admin_spec(rt))
    if not specs:
        raise ValueError(f"unknown service {which!r}")
    limiter = TenantLimiter(
        settings.rate_limit_per_s,
        settings.rate_limit_burst,
        settings.max_concurrent_per_tenant,
        redis_url=settings.redis_url,
        namespace=settings.resolved_redis_namespace(),
    )
    specs[-1].on_stop.append(limiter.close)
    running = create_server(
        specs,
        f"{host}:{port}",
        max_workers=settings.max_workers,
        health_interval=settings.health_check_interval_s,
        log_requests=settings.log_requests,
        max_message_bytes=settings.max_message_bytes,
        limiter=limiter,
        default_tenant=settings.default_tenant,
        dependencies=[
            Dependency("memlake.database", rt.check_db, required=True, on_result=rt.db.mark),
            # Redis is a cache: its loss degrades (slower), it does not make us unready.
            Dependency("memlake.cache", rt.check_cache, required=False),
        ],
        health_timeout=settings.health_check_timeout_s,
        tracer_provider=rt.tracer_provider,
        authenticator=authenticator,
        auditor=auditor,
        server_credentials=server_credentials(settings),
    )
    if which == "all" and ingest_servicer is not None and not settings.versioning_addr:
        ingest_servicer.versioning_addr = f"127.0.0.1:{running.port}"  # itself
    running.specs[-1].on_stop.append(rt.close)
    return running, rt


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"error: MEMLAKE_ADDR={addr!r} is not HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class PortInUse(SystemExit):
    def __init__(self, what: str, addr: str, variable: str) -> None:
        super().__init__(
            f"error: cannot serve {what} on {addr}: the address is in use or not available.\n"
            f"Is memlake already running? Stop it, or choose another port with {variable}."
        )


def start_http(settings: Settings, which: str, grpc_port: int):
    """The HTTP/JSON gateway: beside the all-in-one (to itself), or alone (to the services)."""
    from pathlib import Path

    from shared.gateway.server import Upstreams, start_gateway

    def open_channel(addr: str):
        """TLS to the services when they serve it; never a client certificate: each call is
        authenticated by the caller's own key, passed on from the HTTP request."""
        import grpc

        if not settings.tls_cert_file:
            return grpc.insecure_channel(addr)
        root = Path(settings.tls_ca_file or settings.tls_cert_file).read_bytes()
        opts = []
        if settings.tls_server_name:
            opts.append(("grpc.ssl_target_name_override", settings.tls_server_name))
        return grpc.secure_channel(addr, grpc.ssl_channel_credentials(root), options=opts)

    if which == "all":
        up = Upstreams(f"127.0.0.1:{grpc_port}", open_channel=open_channel)
    else:
        up = Upstreams(
            settings.gateway_upstream_addr,
            {
                "memlake.v1.RetrievalService": settings.gateway_retrieval_addr,
                "memlake.v1.VersioningService": settings.gateway_versioning_addr,
            },
            open_channel=open_channel,
        )
    spec = Path(__file__).parent / "gateway" / "openapi.json"
    try:
        return start_gateway(
            settings.host,
            settings.http_port,
            up,
            spec.read_bytes() if spec.exists() else None,
        )
    except OSError:
        raise PortInUse(
            "HTTP", f"{settings.host}:{settings.http_port}", "MEMLAKE_HTTP_PORT"
        ) from None


def main(which: str) -> None:
    from shared.server import configure_logging
    from shared.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    name = "allinone" if which == "all" else which
    if which == "gateway":
        httpd = start_http(settings, which, 0)
        log.info("memlake HTTP gateway on http://%s:%d", settings.host, httpd.server_port)
        import signal
        import threading

        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
        done.wait()
        httpd.shutdown()  # stops accepting; calls in flight finish on their own threads
        log.info("stopped")
        return
    if settings.gil_switch_ms > 0:
        sys.setswitchinterval(settings.gil_switch_ms / 1000)
    if which in ("ingest", "versioning") and settings.writer_nice > 0:
        # Before any thread starts (threads inherit it): writes yield the CPU to searches.
        os.nice(settings.writer_nice)
    try:
        running, _ = start(which, settings)
    except RuntimeError as exc:
        if "bind" not in str(exc).lower():
            raise
        addr = (
            settings.addr
            if which == "all" and settings.addr
            else (f"{settings.host}:{getattr(settings, f'{name}_port')}")
        )
        variable = "MEMLAKE_ADDR" if which == "all" else f"MEMLAKE_{name.upper()}_PORT"
        raise PortInUse("gRPC", addr, variable) from None
    metrics_port = getattr(settings, f"{name}_metrics_port")
    try:
        mport = start_metrics(settings.metrics_host, metrics_port)
    except OSError:
        running.stop(0)
        raise PortInUse(
            "metrics",
            f"{settings.metrics_host}:{metrics_port}",
            f"MEMLAKE_{name.upper()}_METRICS_PORT",
        ) from None
    http = ""
    if which == "all" and settings.http_port >= 0:
        try:
            httpd = start_http(settings, which, running.port)
        except PortInUse:
            running.stop(0)
            raise
        http = f", HTTP/JSON on http://{settings.host}:{httpd.server_port}"
    log.info(
        "memlake %s serving gRPC on %s:%d%s, metrics on http://%s:%d/metrics, database %s",
        which,
        settings.host if not (which == "all" and settings.addr) else split_addr(settings.addr)[0],
        running.port,
        http,
        settings.metrics_host,
        mport,
        settings.sqlalchemy_url().split("@")[-1],
    )
    serve_forever(running, settings.shutdown_grace_s)


def check_auth_setting(settings: Settings) -> None:
    """Authentication may be turned off only where nothing but this machine can call."""
    if settings.auth_enabled:
        return
    try:
        loopback = settings.host == "localhost" or ipaddress.ip_address(settings.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(
            f"memlake: refusing to start with MEMLAKE_AUTH_ENABLED=false on {settings.host}: "
            "authentication may be off only on a loopback address"
        )
    banner = (
        "memlake: AUTHENTICATION IS OFF (MEMLAKE_AUTH_ENABLED=false): every local caller "
        "may read and write every tenant"
    )
    print(banner, file=sys.stderr, flush=True)
    log.warning(banner)


def _auth(settings: Settings, rt: Runtime) -> tuple[Authenticator, AccessAuditor]:
    store = KeyStore(
        rt.db,
        hash_n=settings.auth_hash_n,
        cache_ttl_s=settings.auth_cache_ttl_s,
        max_minted_ttl_s=settings.auth_max_minted_ttl_s,
    )
    rt.keys = store
    if settings.auth_enabled:
        key = store.bootstrap(settings.default_tenant, settings.bootstrap_key)
        if key is not None and not settings.bootstrap_key:
            _announce_bootstrap_key(key, settings.key_file())
    authenticator = Authenticator(
        store,
        enabled=settings.auth_enabled,
        default_tenant=settings.default_tenant,
        # Separate services share MEMLAKE_INTERNAL_TOKEN; one process makes its own.
        internal_token=settings.internal_token or secrets.token_urlsafe(32),
        trust_mesh=settings.trust_mesh_identity,
    )
    return authenticator, AccessAuditor(rt.db, store)


def _announce_bootstrap_key(key: str, path) -> None:
    """Shown once, here, and kept where local tools find it (readable by the owner only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)
    print(
        "memlake: created the bootstrap OPERATOR key; it is shown only this once and stored "
        f"in {path} (mode 0600), where the memlake CLI and SDK on this machine find it:\n"
        f"  {key}",
        file=sys.stderr,
        flush=True,
    )
