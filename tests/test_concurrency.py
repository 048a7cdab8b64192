"""Concurrent writers of one session and one key all succeed, and turns list in turn
order; installs sharing one Redis never hear each other's change notifications."""

from __future__ import annotations

import threading
import time
import uuid

from memlake.client import scope
from memlake.v1 import memory_pb2 as pb
from shared.cache import make_cache
from shared.settings import Settings
from tests.conftest import redis_url
from tests.helpers import background, turn

THREADS = 10


def _race(suite, tenant: str, work) -> list:
    start = threading.Barrier(THREADS)
    results: list = [None] * THREADS
    errors: list = []

    def run(i: int) -> None:
        with suite.client(tenant) as c:
            start.wait()
            try:
                results[i] = work(c, i)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return results


def test_concurrent_turns_of_one_session(suite):
    tenant = f"conc{uuid.uuid4().hex[:8]}"
    results = _race(suite, tenant, lambda c, i: c.remember(turn(f"turn from thread {i}", "s1")))
    by_index = {r.memory.conversation.turn_index: r.memory.id for r in results}
    assert sorted(by_index) == list(range(THREADS))
    with suite.client(tenant) as c:
        listed = c.list(scope=scope("u1", session_id="s1")).memories
    assert [m.conversation.turn_index for m in listed] == list(range(THREADS))
    assert [m.id for m in listed] == [by_index[i] for i in range(THREADS)]


def test_concurrent_upserts_of_one_key(suite):
    tenant = f"conc{uuid.uuid4().hex[:8]}"
    _race(suite, tenant, lambda c, i: c.remember(background("city", f"city number {i}")))
    with suite.client(tenant) as c:
        current = c.list(types=[pb.MEMORY_TYPE_BACKGROUND]).memories
        history = c.list(types=[pb.MEMORY_TYPE_BACKGROUND], include_history=True).memories
    assert len(current) == 1
    assert len(history) == THREADS
    assert sorted(m.background.key for m in history) == ["city"] * THREADS


def test_the_namespace_defaults_to_the_database():
    a = Settings(database_url="postgresql+psycopg://u:secret@db1:5432/memlake")
    b = Settings(database_url="postgresql+psycopg://u:other@db1:5432/memlake")
    c = Settings(database_url="postgresql+psycopg://u@db2:5432/memlake")
    assert a.resolved_redis_namespace() == b.resolved_redis_namespace()  # one install
    assert a.resolved_redis_namespace() != c.resolved_redis_namespace()
    assert Settings(redis_namespace="blue").resolved_redis_namespace() == "blue"


def test_two_installs_sharing_one_redis_do_not_hear_each_other(tmp_path):
    url = redis_url()
    ns = [
        Settings(data_dir=tmp_path / name, redis_url=url).resolved_redis_namespace()
        for name in ("one", "two")
    ]
    one, two, one_again = make_cache(url, ns[0]), make_cache(url, ns[1]), make_cache(url, ns[0])
    heard: list[int] = []
    unsubscribe = one.subscribe_changes(heard.append)
    try:
        time.sleep(0.5)  # the subscriber thread connects
        two.publish_change(999)
        time.sleep(0.5)
        assert heard == [], "an install heard another install's changes"
        one_again.publish_change(7)
        end = time.monotonic() + 5
        while not heard and time.monotonic() < end:
            time.sleep(0.05)
        assert heard == [7]
        # Session tails are apart too.
        one.set_tail("k", [b"mine"], 5, 60)
        assert two.get_tail("k") is None
        assert one_again.get_tail("k") == [b"mine"]
    finally:
        unsubscribe()
        for c in (one, two, one_again):
            c.delete("k")
            c.close()
