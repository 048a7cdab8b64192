"""OpenTelemetry traces: off unless MEMLAKE_OTLP_ENDPOINT is set (then spans go to that OTLP
gRPC collector). Every RPC gets a server span (opentelemetry-instrumentation-grpc) carrying
the request id and tenant; ingest's call to versioning carries the trace context, so a FACT
write is one trace across both services."""

from __future__ import annotations

import grpc

from shared.settings import Settings


def provider_for(settings: Settings, service: str):
    """A TracerProvider exporting by OTLP, or None when tracing is off."""
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": f"memlake-{service}"}))
    provider.add_span_processor(
        BatchSpanProcessor(
            OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=settings.otlp_insecure)
        )
    )
    return provider


def server_interceptors(provider) -> list:
    if provider is None:
        return []
    from opentelemetry.instrumentation.grpc import server_interceptor

    return [server_interceptor(tracer_provider=provider)]


def traced_channel(channel: grpc.Channel, provider) -> grpc.Channel:
    """The channel, propagating the current trace to the callee when tracing is on."""
    if provider is None:
        return channel
    from opentelemetry.instrumentation.grpc import client_interceptor, grpcext

    return grpcext.intercept_channel(channel, client_interceptor(tracer_provider=provider))


def annotate(**attributes: str) -> None:
    """Sets memlake.* attributes on the current span (a no-op when tracing is off)."""
    from opentelemetry import trace

    span = trace.get_current_span()
    if span.is_recording():
        for k, v in attributes.items():
            if v:
                span.set_attribute(f"memlake.{k}", v)
