"""Prometheus metrics beyond the per-RPC ones in shared/server.py: index apply lag, index
size, embedding batches, database pool wait, cache hits. Names are what ops/ alert on
(tests/test_ops_assets.py checks every name there exists on a running suite)."""

from __future__ import annotations

import threading
import time
import weakref
from datetime import UTC, datetime

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

EMBED_BATCH = Histogram(
    "memlake_embed_batch_size",
    "Texts per embedding batch",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
EMBED_SECONDS = Histogram(
    "memlake_embed_duration_seconds",
    "Time to embed one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DB_POOL_WAIT = Histogram(
    "memlake_db_pool_wait_seconds",
    "Time to get a database connection from the pool, by engine (write, read)",
    ["engine"],
    buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
CACHE_LOOKUPS = Counter(
    "memlake_cache_lookups_total",
    "Cache lookups by cache and result (hit, miss, error); hit rate = hit / all",
    ["cache", "result"],
)


def instrument_embedder(embedder):
    """Times every batch the embedder computes (its _embed), without changing its class."""
    inner = embedder._embed

    def timed(texts):
        t0 = time.perf_counter()
        try:
            return inner(texts)
        finally:
            EMBED_SECONDS.observe(time.perf_counter() - t0)
            EMBED_BATCH.observe(len(texts))

    embedder._embed = timed
    return embedder


class IndexCollector(Collector):
    """Reads the live index at scrape time: applied and head sequence, lag in changes and
    seconds (age of the oldest change not yet applied), partitions, rows, resident bytes."""

    def __init__(self) -> None:
        self._index = None
        self._lock = threading.Lock()

    def track(self, index) -> None:
        with self._lock:
            self._index = weakref.ref(index)

    def collect(self):
        index = self._index() if self._index else None
        if index is None:
            return
        applied = index.applied_seq
        head, oldest = _head_and_oldest_unapplied(index.db, applied)
        lag_s = (datetime.now(UTC) - oldest).total_seconds() if oldest else 0.0
        parts = list(index.partitions.values())
        yield _gauge("memlake_index_applied_seq", "Last change-log sequence applied", applied)
        yield _gauge("memlake_index_head_seq", "Last change-log sequence written", head)
        yield _gauge("memlake_index_lag_seq", "Changes written but not yet applied", head - applied)
        yield _gauge(
            "memlake_index_lag_seconds", "Age of the oldest change not yet applied", max(lag_s, 0)
        )
        yield _gauge("memlake_index_partitions", "Index partitions held", len(parts))
        yield _gauge("memlake_index_rows", "Live rows in the index", sum(p.n_alive for p in parts))
        yield _gauge(
            "memlake_index_resident_bytes",
            "Bytes held by the index's vectors and HNSW graphs (graphs estimated)",
            sum(_partition_bytes(p) for p in parts),
        )
        yield _gauge("memlake_index_ready", "1 once the index has loaded", int(index.ready))
        view = index.ring  # retrieval_service/membership.py: the rings this replica follows
        yield _gauge(
            "memlake_ring_serving_epoch",
            "Epoch of the ring queries are routed by",
            view.serving.epoch,
        )
        yield _gauge(
            "memlake_ring_target_epoch", "Epoch of the ring being built", view.target.epoch
        )
        yield _gauge(
            "memlake_ring_members", "Replicas in the serving ring", len(view.serving.members)
        )
        yield _gauge(
            "memlake_ring_moving",
            "1 while partitions move (target ring not serving yet)",
            int(view.target.epoch != view.serving.epoch),
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _head_and_oldest_unapplied(db, applied: int) -> tuple[int, datetime | None]:
    from sqlalchemy import func, select

    from shared.db.models import ChangeLogEntry

    try:
        with db.read() as s:
            head = s.scalar(select(func.coalesce(func.max(ChangeLogEntry.seq), 0))) or 0
            oldest = s.scalar(
                select(ChangeLogEntry.create_time)
                .where(ChangeLogEntry.seq > applied)
                .order_by(ChangeLogEntry.seq)
                .limit(1)
            )
    except Exception:  # noqa: BLE001 - a scrape must not fail when the database does
        return applied, None
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return head, oldest


def _partition_bytes(p) -> int:
    n = 0
    vec = getattr(p, "vectors", None)
    if vec is not None:
        n += getattr(vec, "nbytes", 0)
    ann = getattr(p, "ann", None)
    if ann is not None:  # HNSW links: 2M int32 a row at level 0, an offset and a level
        # (its storage is the partition's vectors, counted above)
        n += int(ann.ntotal) * (int(ann.hnsw.nb_neighbors(0)) * 4 + 12)
    return n


INDEX = IndexCollector()
REGISTRY.register(INDEX)
