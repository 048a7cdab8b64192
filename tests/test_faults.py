"""Crashes and a lost Redis, on Postgres with the three services as processes:
- kill -9 of each service during a write stream retried by request_id: every
  acknowledged write is there exactly once, and the index holds exactly the database's ids
  (make bench-faults runs 20 rounds);
- Redis stopped (not flushed) and started again mid-load: no errors, the same answers,
  health reports the degradation while readiness stays SERVING."""

from __future__ import annotations

import shutil
import threading
import time
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memlake.client import scope
from tests.conftest import drop_postgres_database, postgres_database, settings_for, start_suite
from tests.faultkit import OwnRedis, kill_rounds
from tests.helpers import event

SERVING = health_pb2.HealthCheckResponse.SERVING
pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="needs the redis-server binary (own instance)"
)


@pytest.fixture
def pg_url():
    url = postgres_database()
    yield url
    drop_postgres_database(url)


def test_kill_9_each_service_during_writes(pg_url):
    reports = kill_rounds(pg_url, rounds=1, write_s=1.0, log=lambda r: None)
    assert [r.killed for r in reports] == ["ingest", "versioning", "retrieval"]
    for r in reports:
        assert r.acked > 0, r
        assert (r.lost, r.duplicates, r.index_mismatch) == (0, 0, 0), r
    # The crash of ingest and versioning was felt (retries happened), and survived.
    assert sum(r.retried for r in reports if r.killed != "retrieval") > 0


def _health(addr: str, name: str) -> int:
    with grpc.insecure_channel(addr) as ch:
        return (
            health_pb2_grpc.HealthStub(ch)
            .Check(health_pb2.HealthCheckRequest(service=name), timeout=2)
            .status
        )


def test_redis_stopped_and_restarted_mid_load(pg_url, tmp_path):
    redis = OwnRedis()
    settings = settings_for(
        "postgres",
        tmp_path / "data",
        pg_url,
        redis_url=redis.url,
        health_check_interval_s=0.3,
        health_check_timeout_s=1.0,
    )
    suite = start_suite(settings, "postgres")
    errors: list = []
    done = threading.Event()
    written: list = []
    try:
        with suite.client(f"r{uuid.uuid4().hex[:8]}") as c:

            def load():
                i = 0
                while not done.is_set():
                    try:
                        r = c.remember(event(f"load item {i} lantern"), request_id=f"l{i}")
                        written.append(r)
                        hits = c.search(f"load item {i} lantern", scope=scope("u1"), min_seq=r.seq)
                        assert r.memory.id in {h.memory.id for h in hits.results}
                    except Exception as exc:  # noqa: BLE001 - counted below
                        errors.append(exc)
                    i += 1

            t = threading.Thread(target=load)
            t.start()
            time.sleep(1.0)
            redis.stop()
            end = time.monotonic() + 5
            while _health(suite.addr, "memlake.cache") == SERVING and time.monotonic() < end:
                time.sleep(0.1)
            assert _health(suite.addr, "memlake.cache") != SERVING, "degradation not reported"
            assert _health(suite.addr, "") == SERVING, "a cache outage made us unready"
            n_before = len(written)
            time.sleep(2.0)
            assert len(written) > n_before, "writes stopped while Redis was down"
            redis.start()
            end = time.monotonic() + 10
            while _health(suite.addr, "memlake.cache") != SERVING and time.monotonic() < end:
                time.sleep(0.1)
            assert _health(suite.addr, "memlake.cache") == SERVING
            time.sleep(1.0)
            done.set()
            t.join(30)
            assert not errors, errors[:3]
            listed = {m.id for m in c.list_all(scope=scope("u1"))}
            assert {r.memory.id for r in written} <= listed
    finally:
        done.set()
        suite.stop()
        redis.close()
