"""A request_id makes a retry store nothing twice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from memlake.client import scope
from tests.helpers import event, expect_error


def test_retry_with_request_id_stores_once(client):
    m = event("Paid the electricity bill")
    r1 = client.remember(m, request_id="req-1")
    r2 = client.remember(m, request_id="req-1")
    assert r1.memory.id == r2.memory.id and r1.seq == r2.seq
    assert len(list(client.list_all(scope=scope("u1")))) == 1
    with expect_error("ALREADY_EXISTS"):
        client.remember(event("Something else"), request_id="req-1")


def test_concurrent_retries_store_once(client):
    m = event("Booked flights to Oslo")

    def call(_):
        return client.remember(m, request_id="req-race").memory.id

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(call, range(8)))
    assert len(ids) == 1  # every racing retry got the one stored memory
    assert len(list(client.list_all(scope=scope("u1")))) == 1
