"""The ring protocol of retrieval_service/membership.py on a real database (both
backends), with replicas as Membership objects in one process and a stand-in for the
index's side (whether it has built what it owns, which the test decides): a member is
routed to only once it is ready; a member whose heartbeat stops leaves after the TTL;
a leaving member is taken out once the others are ready, and its row goes."""

from __future__ import annotations

import threading
import time

import pytest

from retrieval_service.membership import Membership
from shared.db.engine import Database
from shared.db.models import RetrievalMember

TTL = 0.6


class Built:
    """The index's side of the protocol: rehome() returns once the test opens the gate."""

    ready = True

    def __init__(self, open_: bool = True) -> None:
        self.gate = threading.Event()
        if open_:
            self.gate.set()
        self.view = None

    def set_view(self, view) -> None:
        self.view = view

    def rehome(self) -> int:
        self.gate.wait()
        return 0

    def catch_up(self) -> int:
        return 0

    def release(self, grace_s: float) -> int:
        return 0


@pytest.fixture
def db(fresh_backend):
    _, settings = fresh_backend
    d = Database(settings.sqlalchemy_url())
    d.upgrade()
    yield d
    d.dispose()


def _member(db, ordinal: int, index: Built) -> Membership:
    m = Membership(db, ordinal, f"host-{ordinal}:1", heartbeat_s=0.05, ttl_s=TTL, grace_s=0.1)
    m.join()
    m.start(index)
    return m


def _until(what, done, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < end, f"waited {timeout} s for {what}"
        time.sleep(0.02)


def _rings(m: Membership):
    return m.view.serving.members, m.view.target.members


def test_a_member_is_routed_to_only_once_ready_and_leaves_on_expiry(db):
    a = _member(db, 0, Built())
    _until("the ring {0}", lambda: _rings(a) == ((0,), (0,)))
    slow = Built(open_=False)
    b = _member(db, 1, slow)
    _until("the target {0, 1}", lambda: _rings(a)[1] == (0, 1))
    time.sleep(3 * TTL)  # b has not built its share: the ring must not route to it
    assert _rings(a) == ((0,), (0, 1)) and _rings(b) == ((0,), (0, 1))
    slow.gate.set()
    _until("the ring {0, 1}", lambda: _rings(a) == ((0, 1), (0, 1)))
    assert a.view.addresses == {0: "host-0:1", 1: "host-1:1"}
    epoch = a.view.serving.epoch

    b._stop.set()  # its heartbeat stops, as after kill -9 (its row stays)
    _until("b expired", lambda: _rings(a) == ((0,), (0,)))
    assert a.view.serving.epoch > epoch
    a.close()


def test_a_leaving_member_hands_over_and_its_row_goes(db):
    a = _member(db, 0, Built())
    b = _member(db, 1, Built())
    _until("the ring {0, 1}", lambda: _rings(a) == ((0, 1), (0, 1)))
    took = []
    t = threading.Thread(target=lambda: took.append(b.leave(timeout=20)))
    t.start()
    t.join(25)
    assert took == [True]
    assert _rings(a)[0] == (0,)
    b.close()
    with db.read() as s:
        assert [m.ordinal for m in s.query(RetrievalMember)] == [0]
    # The last member has nobody to hand over to: it says so at once.
    t0 = time.monotonic()
    assert a.leave(timeout=20) is False and time.monotonic() - t0 < 5
    a.close()


def test_an_index_follows_its_view_builds_by_scope_and_drops_after_the_grace(
    fresh_backend, tmp_path
):
    """IndexManager under changing views (adoption.py): it holds what it owns in either
    ring, builds what it gains from the database by scope, answers for a partition it
    stopped owning (a stale forward) without keeping it, drops it after the grace and
    from its next snapshot, and keeps a partition it had to borrow while it is used."""
    from memlake.client import MemlakeClient
    from retrieval_service.index import IndexManager, partition_key, snapshots
    from retrieval_service.ownership import Ring, View
    from shared.embedding import HashEmbedder
    from shared.launch import start
    from tests.conftest import tenant_key
    from tests.helpers import event

    _, settings = fresh_backend
    running, _ = start("ingest", settings, port=0)
    addr = f"127.0.0.1:{running.port}"
    users = [f"u{i}" for i in range(8)]
    with MemlakeClient(addr, api_key=tenant_key(addr, settings, "acme"), timeout=20) as c:
        ids = {u: c.remember(event(f"harbour walk with {u}", user=u)).memory.id for u in users}
    running.stop(1.0)
    keys = {partition_key("acme", u, ""): u for u in users}
    two = Ring((0, 1), 2)
    mine = {k for k in keys if two.owner(k) == 0}
    theirs = set(keys) - mine
    assert mine and theirs

    root = tmp_path / "idx"
    db = Database(settings.sqlalchemy_url())
    m = IndexManager(
        db, HashEmbedder.dim, embed_model=HashEmbedder.name, snapshot_dir=root,
        ring=View(0, two, two, {}, True),
    )  # fmt: skip
    m.load_all()
    assert m.held() == mine

    # Replica 1 leaves (target {0}): replica 0 builds its partitions by scope.
    m.set_view(View(0, two, Ring((0,), 3), {}, True))
    assert m.rehome() == len(theirs)
    assert m.held() == set(keys)
    for k in theirs:
        p = m.partition(k)
        assert [int(i) for i in p.ids[: p.n]] == [int(ids[keys[k]])]

    # It joins again and the ring routes to it (serving = target = {0, 1}).
    m.set_view(View(0, Ring((0, 1), 4), Ring((0, 1), 4), {}, True))
    stale = next(iter(theirs))
    assert m.partition(stale) is not None  # a stale forward is answered from memory
    assert m.release(grace_s=60) == 0  # within the grace: kept
    assert m.release(grace_s=0) == len(theirs)
    assert m.held() == mine and not m._used
    assert m.save_snapshot()
    names = snapshots.SnapshotStore(root).read_manifest()["partitions"]
    assert {snapshots.part_key(n) for n in names} == mine

    # Asked again after the drop (a very stale forward): built on demand, kept while used.
    assert m.partition(stale) is not None and stale in m._used
    assert m.release(grace_s=0) == 0 and stale in m.held()
    m.stop()
    db.dispose()
