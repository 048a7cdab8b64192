from __future__ import annotations

from memlake.v1 import retrieval_service_pb2, retrieval_service_pb2_grpc, shard_service_pb2_grpc
from retrieval_service.index import IndexManager, build_from_settings
from retrieval_service.membership import membership_from_settings
from retrieval_service.ranking import rank_config_from
from retrieval_service.routing import Router, ShardServicer
from retrieval_service.servicer import RetrievalServicer
from shared.metrics import INDEX as INDEX_METRICS
from shared.runtime import Runtime
from shared.server import ServiceSpec

FULL_NAME = retrieval_service_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name


def retrieval_spec(rt: Runtime) -> tuple[ServiceSpec, IndexManager]:
    s = rt.settings
    # Replicas sharing the partitions agree on the rings in the database (membership.py).
    membership = membership_from_settings(s, rt.db)
    view = membership.join() if membership is not None else None
    index = build_from_settings(s, rt.embedder.name, rt.embedder.dim, db=rt.db, ring=view)
    rt.index = index
    rt.local.subscribe(index.wake)
    unsubscribe = rt.cache.subscribe_changes(index.wake) if s.redis_url else (lambda: None)
    index.start()
    INDEX_METRICS.track(index)
    router = None
    if membership is not None:
        membership.start(index)
        router = Router(index, rt.db)
    servicer = RetrievalServicer(
        rt.db,
        index,
        rt.embedder,
        rt.cache,
        tail_size=s.session_tail_size,
        tail_ttl_s=s.session_tail_ttl_s,
        rank=rank_config_from(s),
        tail_first=s.context_tail_first,
        router=router,
    )

    def register(server) -> None:
        retrieval_service_pb2_grpc.add_RetrievalServiceServicer_to_server(servicer, server)
        shard_service_pb2_grpc.add_ShardServiceServicer_to_server(ShardServicer(servicer), server)

    stops = [membership.close] if membership is not None else []
    spec = ServiceSpec(
        FULL_NAME,
        register,
        # Ready when its index is: searches need only the index, so they keep
        # answering while the database is away (the "" status reports that).
        checks=[index.check_ready],
        on_stop=stops + [unsubscribe, index.stop] + ([router.close] if router else []),
        # Hand this replica's partitions over before it stops answering.
        before_stop=[membership.leave] if membership is not None and s.handover_on_stop else [],
    )
    return spec, index
