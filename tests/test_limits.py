"""Per-tenant rate and concurrency limits: RESOURCE_EXHAUSTED with a RetryInfo, one
tenant's limit never touching another's; the Redis bucket is shared by processes and
falls back to an in-process bucket when Redis is away."""

from __future__ import annotations

import threading
import time
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from memlake.v1 import ingest_service_pb2 as ipb
from shared.errors import ResourceExhausted
from shared.limits import TenantLimiter
from tests.conftest import redis_url, settings_for, start_suite
from tests.helpers import event


def _retry_delay(exc: grpc.RpcError) -> float:
    status = rpc_status.from_call(exc)
    for d in status.details:
        info = error_details_pb2.RetryInfo()
        if d.Is(info.DESCRIPTOR) and d.Unpack(info):
            return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    raise AssertionError("no RetryInfo in the status details")


def test_in_process_bucket_and_retry_hint():
    lim = TenantLimiter(rate_per_s=10, burst=3)
    for _ in range(3):
        lim.admit("a")()
    with pytest.raises(ResourceExhausted) as info:
        lim.admit("a")
    delay = info.value.details[0].retry_delay
    assert 0 < delay.seconds + delay.nanos / 1e9 <= 0.1
    lim.admit("b")()  # another tenant has its own bucket
    time.sleep(0.11)
    lim.admit("a")()  # refilled


def test_concurrency_slots_are_given_back():
    lim = TenantLimiter(max_concurrent=2)
    r1, r2 = lim.admit("a"), lim.admit("a")
    with pytest.raises(ResourceExhausted):
        lim.admit("a")
    lim.admit("b")()
    r1()
    r1()  # twice is harmless
    lim.admit("a")()
    r2()


def test_redis_bucket_is_shared_and_survives_redis_loss():
    url = redis_url()
    ns = f"lim{uuid.uuid4().hex[:8]}"
    a = TenantLimiter(rate_per_s=1, burst=2, redis_url=url, namespace=ns)
    b = TenantLimiter(rate_per_s=1, burst=2, redis_url=url, namespace=ns)
    a.admit("t")()
    b.admit("t")()
    with pytest.raises(ResourceExhausted):
        a.admit("t")  # the bucket both processes share is empty
    # Redis unreachable: the limiter keeps working in-process.
    c = TenantLimiter(rate_per_s=1, burst=1, redis_url="redis://127.0.0.1:1/0", namespace=ns)
    c.admit("t")()
    with pytest.raises(ResourceExhausted):
        c.admit("t")
    for x in (a, b, c):
        x.close()


@pytest.fixture(params=["sqlite", "postgres"])
def limited_suite(request, tmp_path):
    from tests.conftest import drop_postgres_database, postgres_database

    db_url = postgres_database() if request.param == "postgres" else ""
    s = settings_for(
        request.param,
        tmp_path / "data",
        db_url,
        rate_limit_per_s=5,
        rate_limit_burst=5,
        max_concurrent_per_tenant=2,
        redis_namespace=f"lim{uuid.uuid4().hex[:8]}",
    )
    suite = start_suite(s, request.param)
    yield suite
    suite.stop()
    if db_url:
        drop_postgres_database(db_url)


def test_rate_limit_over_grpc(limited_suite):
    with limited_suite.client() as c, limited_suite.client() as other:
        codes = []
        for i in range(8):
            try:
                c.remember(event(f"e{i}"))
                codes.append("OK")
            except Exception as exc:  # noqa: BLE001
                codes.append(exc.code)
        assert codes[:4] == ["OK"] * 4 and "RESOURCE_EXHAUSTED" in codes[5:]
        other.remember(event("another tenant is not limited by the first"))
        # The hint is in the status details.
        try:
            for _ in range(10):
                c.ingest.Remember(
                    ipb.RememberRequest(memory=event("x")), metadata=c.metadata, timeout=5
                )
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert 0 < _retry_delay(exc) <= 1.0
        else:
            raise AssertionError("never limited")


def test_concurrency_limit_over_grpc(limited_suite):
    with limited_suite.client() as c:
        results: list = []
        start_line = threading.Barrier(6)

        def run():
            start_line.wait()
            try:
                c.search("anything at all", min_seq=0)
                results.append("OK")
            except Exception as exc:  # noqa: BLE001
                results.append(exc.code)

        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert set(results) <= {"OK", "RESOURCE_EXHAUSTED"}
        assert "OK" in results
