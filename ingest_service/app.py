from __future__ import annotations

from ingest_service.domain import IngestDomain
from ingest_service.servicer import IngestServicer
from memlake.v1 import ingest_service_pb2, ingest_service_pb2_grpc
from shared.runtime import Runtime
from shared.server import ServiceSpec

FULL_NAME = ingest_service_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name


def ingest_spec(rt: Runtime, versioning_addr: str) -> tuple[ServiceSpec, IngestServicer]:
    s = rt.settings
    domain = IngestDomain(
        rt.db,
        rt.embedder,  # queued with every other model call of the process
        rt.cache,
        rt.notify,
        tail_size=s.session_tail_size,
        tail_ttl_s=s.session_tail_ttl_s,
        dense_window=s.dense_window,
    )
    servicer = IngestServicer(
        domain, versioning_addr, rt.channel, tracer_provider=rt.tracer_provider
    )
    spec = ServiceSpec(
        FULL_NAME,
        lambda server: ingest_service_pb2_grpc.add_IngestServiceServicer_to_server(
            servicer, server
        ),
        checks=[rt.check_db],
        on_stop=[servicer.close],
    )
    return spec, servicer
