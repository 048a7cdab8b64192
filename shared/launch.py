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

    rt = runtime or build_runtime(settings)
    if port is None:
        port = getattr(settings, f"{'allinone' if which == 'all' else which}_port")
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
        f"{settings.host}:{port}",
        max_workers=settings.max_workers,
        health_interval=settings.health_check_interval_s,
        log_requests=settings.log_requests,
        max_message_bytes=settings.max_message_bytes,
    )
    if which == "all" and ingest_servicer is not None and not settings.versioning_addr:
        ingest_servicer.versioning_addr = f"127.0.0.1:{running.port}"  # itself
    running.specs[-1].on_stop.append(rt.close)
    return running, rt


def main(which: str) -> None:
    from shared.server import configure_logging
    from shared.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level)
    running, _ = start(which, settings)
    metrics_port = getattr(settings, f"{'allinone' if which == 'all' else which}_metrics_port")
    mport = start_metrics(settings.metrics_host, metrics_port)
    log.info(
        "memlake %s serving on %s:%d, metrics on http://%s:%d/metrics, database %s",
        which,
        settings.host,
        running.port,
        settings.metrics_host,
        mport,
        settings.sqlalchemy_url().split("@")[-1],
    )
    serve_forever(running, settings.shutdown_grace_s)
