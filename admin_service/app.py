from __future__ import annotations

from admin_service.servicer import AdminServicer
from memlake.v1 import admin_service_pb2, admin_service_pb2_grpc
from shared.runtime import Runtime
from shared.server import ServiceSpec

FULL_NAME = admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


def admin_spec(rt: Runtime) -> ServiceSpec:
    servicer = AdminServicer(rt.keys)
    return ServiceSpec(
        FULL_NAME,
        lambda server: admin_service_pb2_grpc.add_AdminServiceServicer_to_server(servicer, server),
        checks=[rt.check_db],
    )
