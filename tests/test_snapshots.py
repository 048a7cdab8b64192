"""Incremental snapshots: only changed partitions are written, the change-log apply loop
is never held up by one, a failure in the middle of one leaves the previous loadable, and
a restart loads partitions lazily and catches up."""

from __future__ import annotations

import sys
import threading

import pytest

from memlake.client import MemlakeClient
from retrieval_service.index import Filters, IndexManager, snapshots
from retrieval_service.ranking import search
from shared.db.engine import Database
from shared.embedding import HashEmbedder
from shared.launch import start
from tests.conftest import tenant_key
from tests.helpers import event

USERS = [f"u{i}" for i in range(5)]


def _manager(settings, root) -> IndexManager:
    return IndexManager(
        Database(settings.sqlalchemy_url()),
        HashEmbedder.dim,
        embed_model=HashEmbedder.name,
        snapshot_dir=root,
    )


def _ids(m: IndexManager, tenant: str, user: str, query: str) -> list[int]:
    q = HashEmbedder().embed_one(query)
    return [h.memory_id for h in search(m, tenant, q, query, Filters(user_id=user), 10)]


def _manifest(root) -> dict:
    return snapshots.SnapshotStore(root).read_manifest()


@pytest.fixture
def writer(fresh_backend):
    backend, settings = fresh_backend
    running, rt = start("ingest", settings, port=0)
    addr = f"127.0.0.1:{running.port}"
    c = MemlakeClient(addr, api_key=tenant_key(addr, settings, "acme"), timeout=20)
    yield settings, c
    c.close()
    running.stop(1.0)


def test_only_changed_partitions_are_written_and_a_failed_round_keeps_the_last(writer, tmp_path):
    settings, c = writer
    for u in USERS:
        c.remember(event(f"harbour walk with the dog {u}", user=u))
    root = tmp_path / "idx"
    m = _manager(settings, root)
    m.load_all()
    assert m.save_snapshot()
    first = _manifest(root)
    assert len(first["partitions"]) == len(USERS)
    assert not m.save_snapshot()  # nothing changed: nothing written

    w = c.remember(event("harbour ferry timetable", user="u1"))
    m.catch_up()
    assert m.save_snapshot()
    second = _manifest(root)
    changed = {n for n, e in second["partitions"].items() if e != first["partitions"][n]}
    assert changed == {snapshots.part_name(("acme", "u:u1"))}
    assert second["applied_seq"] == w.seq
    assert len({e[0] for e in second["partitions"].values()}) == 2  # old segment + new one

    # A failure in the middle of writing leaves the previous manifest, still loadable.
    late = c.remember(event("harbour lighthouse repaint", user="u2"))
    m.catch_up()
    with pytest.raises(RuntimeError, match="injected"):
        m.save_snapshot(fail_after=0)
    assert _manifest(root) == second
    (root / ".manifest.json.deadbeef").write_text("{half a manif")  # a torn temp file
    m2 = _manager(settings, root)
    assert m2.load_snapshot()
    # Loaded lazily: only the partition the catch-up wrote to is decoded so far.
    assert set(m2.partitions) == {("acme", "u:u2")} and len(m2._stored) == len(USERS) - 1
    assert late.memory.id and int(late.memory.id) in _ids(m2, "acme", "u2", "harbour lighthouse")
    assert int(w.memory.id) in _ids(m2, "acme", "u1", "harbour ferry")

    # The failed round's partition is written by the next one; stray files are collected.
    assert m.save_snapshot()
    third = _manifest(root)
    assert third["applied_seq"] == late.seq
    assert third["partitions"][snapshots.part_name(("acme", "u:u2"))][0] not in {
        e[0] for e in second["partitions"].values()
    }
    assert not (root / ".manifest.json.deadbeef").exists()
    segments = {e[0] for e in third["partitions"].values()}
    assert {p.name for p in root.iterdir()} == {"manifest.json"} | segments | {
        f"{s}.toc" for s in segments
    }
    m._store.close()
    m2._store.close()


def test_applying_the_log_does_not_wait_for_a_snapshot(writer, tmp_path, monkeypatch):
    settings, c = writer
    for u in USERS:
        c.remember(event(f"garden party {u}", user=u))
    m = _manager(settings, tmp_path / "idx")
    m.load_all()
    release, entered = threading.Event(), threading.Event()
    real = snapshots.SnapshotStore.write_segment

    def slow_write(self, items, *a, **k):
        entered.set()
        assert release.wait(20)
        return real(self, items, *a, **k)

    monkeypatch.setattr(snapshots.SnapshotStore, "write_segment", slow_write)
    t = threading.Thread(target=m.save_snapshot)
    t.start()
    try:
        assert entered.wait(10)  # the snapshot is in the middle of writing
        w = c.remember(event("garden party moved indoors", user="u3"))
        done = threading.Event()
        threading.Thread(target=lambda: (m.catch_up(), done.set()), daemon=True).start()
        assert done.wait(5), "the apply loop waited for the snapshot"
        assert m.applied_seq >= w.seq
        assert int(w.memory.id) in _ids(m, "acme", "u3", "garden party indoors")
    finally:
        release.set()
        t.join(20)
    # The partition changed during the round is written by the next one.
    assert m.save_snapshot()
    m2 = _manager(settings, tmp_path / "idx")
    assert m2.load_snapshot()
    assert m2.applied_seq >= w.seq
    assert int(w.memory.id) in _ids(m2, "acme", "u3", "garden party indoors")
    m._store.close()
    m2._store.close()


def test_a_forgotten_memory_leaves_no_snapshot_file(writer, tmp_path):
    """The forgotten row's partition is rewritten, and every older segment holding a copy
    of it (current or stale), shared with other partitions, is replaced (their bytes copied)
    and deleted."""
    settings, c = writer
    secret = "zanzibar-passcode-4471"
    gone = c.remember(event(f"my {secret} for the harbour gate", user="u1"))
    for u in USERS:
        c.remember(event(f"harbour gate opening hours {u}", user=u))
    root = tmp_path / "idx"
    m = _manager(settings, root)
    m.load_all()
    assert m.save_snapshot()
    # u1 changes again: its newer copy goes to a second segment, while the first one (with
    # the stale copy holding the secret) stays for the other partitions.
    c.remember(event("harbour gate repainted", user="u1"))
    m.catch_up()
    assert m.save_snapshot()
    segments = [p for p in root.iterdir() if p.suffix == ".bin"]
    assert len(segments) == 2
    assert all(secret.encode() in snapshots.readable(p.read_bytes()) for p in segments)
    c.forget(gone.memory.id)
    m.catch_up()
    assert m.save_snapshot()
    for p in root.iterdir():
        assert secret.encode() not in snapshots.readable(p.read_bytes()), p.name
    m2 = _manager(settings, root)
    assert m2.load_snapshot()
    for u in USERS:  # the other partitions survived the copy
        assert _ids(m2, "acme", u, f"harbour gate opening hours {u}")
    assert int(gone.memory.id) not in _ids(m2, "acme", "u1", "harbour gate passcode")
    m._store.close()
    m2._store.close()


def test_a_snapshot_with_float32_vectors_still_loads():
    """Snapshots of format 3 hold float32 vectors; they load as bfloat16 rows."""
    import numpy as np

    from retrieval_service.index import Partition
    from tests.test_index import _record

    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((30, 8)).astype(np.float32)
    p = Partition(8, ann_threshold=10**9)
    for i in range(30):
        p.put(_record(i + 1, "u1", "s1", i), vecs[i])
    c = snapshots.copy_partition(p)
    c.vectors = vecs  # as format 3 wrote them
    q = snapshots.decode(snapshots.encode(c), 8, 10**9, 1, None)
    assert q.vectors.dtype == np.uint16
    assert np.array_equal(q.vectors[: q.n], p.vectors[: p.n])
    assert np.allclose(q.vector_rows(np.arange(30)), vecs, rtol=1e-2)


def test_a_partition_loaded_by_a_search_while_the_tailer_applies_keeps_its_rows(writer, tmp_path):
    """After a restart the snapshot's partitions are decoded on first use, by a search or
    the background loader, while the tailer applies new rows. A partition published by
    another thread between the tailer's two looks (loaded? in the snapshot?) must not be
    replaced by an empty one: the rows the snapshot held would leave the index."""
    settings, c = writer
    old = [c.remember(event(f"harbour walk number {i}", user="u1")) for i in range(3)]
    root = tmp_path / "idx"
    m = _manager(settings, root)
    m.load_all()
    assert m.save_snapshot()
    m2 = _manager(settings, root)
    assert m2.load_snapshot()
    key = ("acme", "u:u1")
    assert key in m2._stored and key not in m2.partitions

    class Racing(dict):
        """The snapshot's entries; the tailer's look at them comes just after another
        thread has decoded and published the partition."""

        def get(self, k, default=None):
            caller = sys._getframe(1).f_code.co_name, sys._getframe(2).f_code.co_name
            looking = caller == ("_load_stored", "_partition")  # the tailer's look
            if k == key and looking and not getattr(self, "raced", False):
                self.raced = True
                t = threading.Thread(target=m2.partition, args=(key,))
                t.start()
                t.join(2.0)  # (it waits for the tailer instead, when the tailer holds the
                # lock that decoding a partition takes)
            return dict.get(self, k, default)

    m2._stored = Racing(m2._stored)
    new = c.remember(event("harbour ferry timetable", user="u1"))
    m2.catch_up()
    assert m2._stored.raced, "the race was not exercised"
    held = set(m2.partitions[key].row_of)
    assert held == {int(w.memory.id) for w in [*old, new]}
    assert set(_ids(m2, "acme", "u1", "harbour")) == held
    assert all(m2.where.get(mid) == key for mid in held)
