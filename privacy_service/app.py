from __future__ import annotations

from memlake.v1 import privacy_service_pb2, privacy_service_pb2_grpc
from privacy_service.servicer import PrivacyServicer
from shared.privacy.erase import Eraser
from shared.privacy.sweeper import Sweeper
from shared.runtime import Runtime
from shared.server import ServiceSpec

FULL_NAME = privacy_service_pb2.DESCRIPTOR.services_by_name["PrivacyService"].full_name


def privacy_spec(rt: Runtime) -> ServiceSpec:
    """PrivacyService, plus the background sweeper that purges expired memories and
    finishes erasure jobs an interrupted process left running."""
    s = rt.settings
    eraser = Eraser(rt.db, rt.cache, rt.notify)
    servicer = PrivacyServicer(rt.db, rt.embedder, eraser, s.default_tenant)
    sweeper = Sweeper(eraser, s.expiry_sweep_interval_s)
    sweeper.start()
    return ServiceSpec(
        FULL_NAME,
        lambda server: privacy_service_pb2_grpc.add_PrivacyServiceServicer_to_server(
            servicer, server
        ),
        checks=[rt.check_db],  # the cache only degrades (health "memlake.cache")
        on_stop=[sweeper.stop],
    )
