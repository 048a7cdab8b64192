"""OpenTelemetry: one Remember of a FACT is one connected trace across ingest and versioning,
with the request id and tenant on the server spans (in-memory exporter)."""

from __future__ import annotations

import uuid

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from memlake.client import MemlakeClient, scope  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402
from shared.launch import start  # noqa: E402
from shared.runtime import build_runtime  # noqa: E402
from shared.settings import Settings  # noqa: E402
from tests.conftest import settings_for, tenant_key  # noqa: E402


def test_tracing_is_off_by_default_and_exports_by_otlp_when_configured():
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    from shared.tracing import provider_for

    assert provider_for(Settings(otlp_endpoint=""), "all") is None
    p = provider_for(Settings(otlp_endpoint="http://127.0.0.1:4317"), "ingest")
    try:
        assert p.resource.attributes["service.name"] == "memlake-ingest"
        processors = p._active_span_processor._span_processors
        assert [type(x.span_exporter) for x in processors] == [OTLPSpanExporter]
    finally:
        p.shutdown()


def test_fact_remember_is_one_connected_trace(tmp_path):
    settings = settings_for("sqlite", tmp_path)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    rt = build_runtime(settings)
    rt.tracer_provider = provider
    running, _ = start("all", settings, port=0, runtime=rt)
    tenant = f"t{uuid.uuid4().hex[:8]}"
    try:
        addr = f"127.0.0.1:{running.port}"
        with MemlakeClient(addr, api_key=tenant_key(addr, settings, tenant)) as c:
            c.metadata = [*c.metadata, ("x-request-id", "req-trace-1")]
            m = pb.Memory(
                type=pb.MEMORY_TYPE_FACT, content="alice lives in Paris", scope=scope("a")
            )
            m.fact.subject, m.fact.predicate, m.fact.value = "alice", "lives_in", "Paris"
            exporter.clear()
            r = c.remember(m)
            assert r.outcome == pb.WRITE_OUTCOME_CREATED
        provider.force_flush()
        spans = exporter.get_finished_spans()
    finally:
        running.stop(1.0)
    by_name = {s.name: s for s in spans}
    remember = by_name["/memlake.v1.IngestService/Remember"]
    assert_fact = [s for s in spans if s.name == "/memlake.v1.VersioningService/AssertFact"]
    # A client span (ingest calling out) and the versioning server span.
    kinds = sorted(s.kind.name for s in assert_fact)
    assert kinds == ["CLIENT", "SERVER"], kinds
    client_span = next(s for s in assert_fact if s.kind.name == "CLIENT")
    server_span = next(s for s in assert_fact if s.kind.name == "SERVER")
    trace_ids = {s.context.trace_id for s in (remember, client_span, server_span)}
    assert len(trace_ids) == 1, "the FACT write must be one trace"
    assert remember.parent is None
    assert client_span.parent.span_id == remember.context.span_id
    assert server_span.parent.span_id == client_span.context.span_id
    assert remember.attributes["memlake.request_id"] == "req-trace-1"
    assert remember.attributes["memlake.tenant"] == tenant
    assert server_span.attributes["memlake.tenant"] == tenant
