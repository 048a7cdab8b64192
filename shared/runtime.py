"""The resources one process shares between its services: database, cache, embedder,
and change wake-ups (process-local, plus Redis pub/sub when configured)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from shared.batching import scheduled
from shared.cache import Cache, LocalNotifier, make_cache, safe
from shared.db.engine import Database, Guards
from shared.embedding import Embedder, make_embedder
from shared.metrics import instrument_embedder
from shared.settings import Settings

log = logging.getLogger("memlake")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    cache: Cache
    embedder: Embedder
    local: LocalNotifier = field(default_factory=LocalNotifier)
    # An OpenTelemetry TracerProvider when tracing is on (shared/tracing.py), else None.
    tracer_provider: object | None = None
    index: object | None = None  # the retrieval IndexManager, when this process hosts one
    keys: object = None  # shared.auth.store.KeyStore, set by launch

    def channel(self, addr: str):
        """A channel to another memlake service (TLS when configured)."""
        from shared.auth.tls import channel

        return channel(addr, self.settings)

    def notify(self, seq: int) -> None:
        """Tells index tailers that the change log reached seq."""
        self.local.publish(seq)
        safe(self.cache.publish_change, seq)

    def check_db(self) -> None:
        self.db.ping()

    def check_cache(self) -> None:
        self.cache.ping()

    def close(self) -> None:
        self.cache.close()
        self.db.dispose()


def guards_from(settings: Settings) -> Guards:
    return Guards(
        lock_timeout_s=settings.db_lock_timeout_s,
        statement_timeout_s=settings.db_statement_timeout_s,
        idle_in_transaction_s=settings.db_idle_in_transaction_timeout_s,
        pool_timeout_s=settings.db_pool_timeout_s,
    )


def build_runtime(settings: Settings, *, migrate: bool = True, service: str = "all") -> Runtime:
    from shared.tracing import provider_for

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.sqlalchemy_url(), guards_from(settings))
    if migrate:
        db.upgrade()
    return Runtime(
        settings=settings,
        db=db,
        cache=make_cache(settings.redis_url, settings.resolved_redis_namespace()),
        # One queue for every model call of the process (shared/batching.py).
        embedder=scheduled(
            make_embedder(
                settings.embedder,
                settings.embed_threads,
                settings.embed_workers,
                settings.embed_precision,
            ),
            instrument=instrument_embedder,
            write_nice=settings.writer_nice,
            # MEMLAKE_WRITER_CHILD: a process that answers searches too runs write batches
            # in a niced child (shared/embed_child.py) instead of on niced threads; a
            # write-only service is niced whole already.
            child=(
                (settings.embedder, settings.embed_threads, settings.embed_precision)
                if settings.writer_child and service == "all" and settings.embedder == "minilm"
                else None
            ),
        ),
        tracer_provider=provider_for(settings, service),
    )
