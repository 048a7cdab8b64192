"""gRPC server bootstrap shared by every service: one interceptor for errors, metrics,
logs and request ids (interceptor.py); health that says SERVING only when dependencies
answer (health.py); reflection, Prometheus over HTTP and a graceful drain on SIGTERM
(lifecycle.py); JSON logs (logs.py)."""

from shared.server.health import LIVENESS, Dependency, HealthMonitor
from shared.server.interceptor import INTERNAL_SERVICES, ServiceInterceptor
from shared.server.lifecycle import (
    DEFAULT_MAX_MESSAGE_BYTES,
    RunningServer,
    ServiceSpec,
    channel_options,
    create_server,
    serve_forever,
    start_metrics,
)
from shared.server.logs import JsonFormatter, configure_logging

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "INTERNAL_SERVICES",
    "LIVENESS",
    "Dependency",
    "HealthMonitor",
    "JsonFormatter",
    "RunningServer",
    "ServiceInterceptor",
    "ServiceSpec",
    "channel_options",
    "configure_logging",
    "create_server",
    "serve_forever",
    "start_metrics",
]
