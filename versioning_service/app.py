from __future__ import annotations

from memlake.v1 import versioning_service_pb2, versioning_service_pb2_grpc
from shared.runtime import Runtime
from shared.server import ServiceSpec
from versioning_service.facts import FactStore, parse_policy
from versioning_service.servicer import VersioningServicer

FULL_NAME = versioning_service_pb2.DESCRIPTOR.services_by_name["VersioningService"].full_name


def versioning_spec(rt: Runtime) -> ServiceSpec:
    s = rt.settings
    store = FactStore(
        rt.db,
        rt.embedder,
        rt.notify,
        default_policy=parse_policy(s.default_conflict_policy),
        semantic_threshold=s.fact_semantic_threshold,
    )
    servicer = VersioningServicer(store)
    return ServiceSpec(
        FULL_NAME,
        lambda server: versioning_service_pb2_grpc.add_VersioningServiceServicer_to_server(
            servicer, server
        ),
        checks=[rt.check_db],
    )
