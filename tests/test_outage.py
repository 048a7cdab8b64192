"""Postgres stopped or paused behind a proxy (tests/proxy.py): every call ends within its
deadline plus 100 ms, readiness turns NOT_SERVING within seconds while liveness stays
SERVING, searches that need only the index keep answering, and service resumes without
a restart once the database is back."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from memlake.client import MemlakeError, scope
from shared.server import LIVENESS
from tests.conftest import (
    PG_ADMIN_URL,
    drop_postgres_database,
    postgres_database,
    settings_for,
    start_suite,
)
from tests.helpers import event
from tests.proxy import FaultProxy

DEADLINE = 1.0
SLACK = 0.1
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def proxied(tmp_path):
    url = postgres_database()
    u = urlsplit(PG_ADMIN_URL)
    proxy = FaultProxy(u.hostname or "127.0.0.1", u.port or 5432)
    via = url.replace(f"{u.hostname}:{u.port or 5432}", f"127.0.0.1:{proxy.port}")
    settings = settings_for(
        "postgres",
        tmp_path / "data",
        via,
        health_check_interval_s=0.5,
        health_check_timeout_s=1.0,
        db_pool_timeout_s=1.0,
    )
    suite = start_suite(settings, "postgres")
    yield suite, proxy
    proxy.up()
    suite.stop()
    proxy.close()
    drop_postgres_database(url)


def _health(addr: str, name: str) -> int:
    with grpc.insecure_channel(addr) as ch:
        return (
            health_pb2_grpc.HealthStub(ch)
            .Check(health_pb2.HealthCheckRequest(service=name), timeout=1)
            .status
        )


def _wait_health(addr: str, name: str, want: int, within: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < within:
        if _health(addr, name) == want:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise AssertionError(f"health {name!r} not {want} within {within} s")


def _timed(fn) -> tuple[str, float]:
    t0 = time.monotonic()
    try:
        fn()
        code = "OK"
    except MemlakeError as exc:
        code = exc.code
    return code, time.monotonic() - t0


@pytest.mark.parametrize("fault", ["paused", "down"])
def test_database_outage(proxied, fault):
    suite, proxy = proxied
    tenant = f"o{uuid.uuid4().hex[:8]}"
    with suite.client(tenant) as c:
        r = c.remember(event("the harbour crane is blue"))
        c.search("harbour crane", scope=scope("u1"), min_seq=r.seq)
        c.timeout = DEADLINE
        getattr(proxy, "pause" if fault == "paused" else "down")()
        calls = {
            "Remember": lambda: c.remember(event("written during the outage")),
            "GetMemory": lambda: c.get(r.memory.id),
            "ListMemories": lambda: c.list(),
            "AssertFact": lambda: c.assert_fact("crane", "color", "red", scope=scope("u1")),
        }
        for _ in range(3):  # again and again: no thread is left stuck for the next one
            for name, fn in calls.items():
                code, took = _timed(fn)
                assert code != "OK", name
                assert took <= DEADLINE + SLACK, f"{name} took {took:.3f} s ({code})"
        # No RPC thread is left waiting on the database for long after its deadline
        # (the watchdog cuts statements; a new connection gives up after connect_timeout,
        # 2 s): only the index tailer and the health check may still hold a connection.
        end = time.monotonic() + 4.0
        while suite.runtime.db.engine.pool.checkedout() > 2 and time.monotonic() < end:
            time.sleep(0.1)
        assert suite.runtime.db.engine.pool.checkedout() <= 2
        # Readiness reports the outage within seconds; the process stays alive.
        assert _wait_health(suite.addr, "", health_pb2.HealthCheckResponse.NOT_SERVING, 5) < 5
        assert _health(suite.addr, "memlake.database") != SERVING
        assert _health(suite.addr, LIVENESS) == SERVING
        # Searches need only the index: once the outage is known (two failed checks in a
        # row), they keep answering, and retrieval stays ready.
        end = time.monotonic() + 4
        while time.monotonic() < end and not suite.runtime.db.unreachable:
            time.sleep(0.1)
        for _ in range(5):
            hits = c.search("harbour crane", scope=scope("u1"))
            assert [h.memory.id for h in hits.results] == [r.memory.id]
        assert _health(suite.addr, "memlake.v1.RetrievalService") == SERVING
        proxy.up()
        _wait_health(suite.addr, "", SERVING, 15)
        c.timeout = 10
        r2 = c.remember(event("written after the outage"))
        assert c.get(r2.memory.id).content == "written after the outage"
