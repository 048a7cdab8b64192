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
