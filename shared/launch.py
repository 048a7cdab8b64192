"""Starting services: each alone, or all three in one process."""

from __future__ import annotations

import logging

from shared.runtime import Runtime, build_runtime
from shared.server import RunningServer, create_server, serve_forever, start_metrics
from shared.settings import Settings

log = logging.getLogger("memlake")


def start(
    which: str, settings: Settings, *, port: int | None = None, runtime: Runtime | None = None
) -> tuple[RunningServer, Runtime]:
    """which: "all", "ingest", "retrieval" or "versioning". port=0 picks a free port."""
    from ingest_service.app import ingest_spec
    from retrieval_service.app import retrieval_spec
    from versioning_service.app import versioning_spec

    host = settings.host
    if port is None:
        port = getattr(settings, f"{'allinone' if which == 'all' else which}_port")
        if which == "all" and settings.addr:
            host, port = split_addr(settings.addr)
    rt = runtime or build_runtime(settings, service=which)
    specs = []
    ingest_servicer = None
    if which in ("all", "ingest"):
        spec, ingest_servicer = ingest_spec(rt, settings.resolved_versioning_addr())
        specs.append(spec)
    if which in ("all", "retrieval"):
        specs.append(retrieval_spec(rt)[0])
    if which in ("all", "versioning"):
        specs.append(versioning_spec(rt))
    if not specs:
        raise ValueError(f"unknown service {which!r}")
    running = create_server(
        specs,
        f"{host}:{port}",
        max_workers=settings.max_workers,
        health_interval=settings.health_check_interval_s,
        log_requests=settings.log_requests,
        tracer_provider=rt.tracer_provider,
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

    if which == "all":
        up = Upstreams(f"127.0.0.1:{grpc_port}")
    else:
        up = Upstreams(
            settings.gateway_upstream_addr,
            {
                "memlake.v1.RetrievalService": settings.gateway_retrieval_addr,
                "memlake.v1.VersioningService": settings.gateway_versioning_addr,
            },
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
        import threading

        threading.Event().wait()
        return
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
