"""Small partitions held packed in the arena while unused (retrieval_service/index): they
answer as decoded ones do, grow out of it, forget without a trace, and survive snapshots
(including one cut short, and one written in the previous format)."""

from __future__ import annotations

import numpy as np
import pytest

from memlake.client import MemlakeClient
from retrieval_service.index import Filters, IndexManager, snapshots
from retrieval_service.index.storage import Arena
from retrieval_service.ranking import search
from shared.db.engine import Database
from shared.embedding import HashEmbedder
from shared.launch import start
from tests.conftest import tenant_key
from tests.helpers import event, turn

USERS = [f"u{i}" for i in range(6)]
BIG = "ubig"  # more rows than pack_rows: never packed
PACK_ROWS = 8


def _manager(settings, root=None, pack_rows: int = PACK_ROWS) -> IndexManager:
    return IndexManager(
        Database(settings.sqlalchemy_url()),
        HashEmbedder.dim,
        embed_model=HashEmbedder.name,
        snapshot_dir=root,
        pack_rows=pack_rows,
    )


def _hits(m: IndexManager, user: str, query: str) -> list[tuple[int, float]]:
    q = HashEmbedder().embed_one(query)
    return [
        (h.memory_id, round(h.score, 6))
        for h in search(m, "acme", q, query, Filters(user_id=user), 10)
    ]


def _packed(m: IndexManager) -> set:
    return {k[1][2:] for k, e in m._stored.items() if isinstance(e, int)}


@pytest.fixture
def writer(fresh_backend):
    backend, settings = fresh_backend
    running, _ = start("ingest", settings, port=0)
    addr = f"127.0.0.1:{running.port}"
    c = MemlakeClient(addr, api_key=tenant_key(addr, settings, "acme"), timeout=20)
    for u in USERS:
        c.remember(event(f"harbour walk with the dog {u}", user=u))
        c.remember(turn(f"we met at the lighthouse {u}", "s1", user=u))
        c.remember(turn(f"and then sailed home {u}", "s1", user=u))
    for i in range(PACK_ROWS + 4):
        c.remember(event(f"big partition note {i} harbour", user=BIG))
    yield settings, c
    c.close()
    running.stop(1.0)


QUERIES = ["harbour walk dog", "lighthouse sailed", "big partition harbour"]


def test_packed_partitions_answer_as_decoded_ones_and_grow_out_of_the_arena(writer):
    settings, c = writer
    plain = _manager(settings, pack_rows=0)
    plain.load_all()
    m = _manager(settings)
    m.load_all()
    assert _packed(m) == set(USERS) and not m.partitions.keys() - {("acme", "u:" + BIG)}
    assert m.stats()["rows"] == plain.stats()["rows"] == 3 * len(USERS) + PACK_ROWS + 4
    for u in [*USERS, BIG]:
        for q in QUERIES:
            assert _hits(m, u, q) == _hits(plain, u, q), (u, q)
    # A query decoded u0; once idle it is packed again, with the same answers.
    assert ("acme", "u:u0") in m.partitions
    assert m.pack_idle(0) >= 1 and _packed(m) == set(USERS)
    assert _hits(m, "u0", QUERIES[0]) == _hits(plain, "u0", QUERIES[0])

    # Growth: u1 passes pack_rows, and stays decoded (promoted) however idle.
    for i in range(PACK_ROWS):
        c.remember(event(f"u1 grows {i} harbour", user="u1"))
    assert m.catch_up() == PACK_ROWS and plain.catch_up() == PACK_ROWS
    m.pack_idle(0)
    assert "u1" not in _packed(m) and ("acme", "u:u1") in m.partitions
    assert _hits(m, "u1", "grows harbour") == _hits(plain, "u1", "grows harbour")
    # A write to a packed partition decodes it and is searchable at once.
    w = c.remember(event("u2 found a zebra shell", user="u2"))
    m.catch_up()
    assert int(w.memory.id) in [i for i, _ in _hits(m, "u2", "zebra shell")]


def test_forget_leaves_no_trace_in_the_arena(writer):
    settings, c = writer
    secret = "quokka-passcode-9921"
    gone = c.remember(event(f"my {secret} for the gate", user="u3"))
    alone = c.remember(event(f"the only {secret} note", user="solo"))
    m = _manager(settings)
    m.load_all()
    assert {"u3", "solo"} <= _packed(m)
    assert any(secret.encode() in snapshots.readable(ch) for ch in m._arena.chunks if ch)
    c.forget(gone.memory.id)
    c.forget(alone.memory.id)
    m.catch_up()
    m.pack_idle(0)
    assert "u3" in _packed(m)  # packed again without the forgotten row
    assert ("acme", "u:solo") not in m.held()  # nothing left of the scope
    assert int(alone.memory.id) not in m.where and int(gone.memory.id) not in m.where
    for ch in m._arena.chunks:
        assert ch is None or secret.encode() not in snapshots.readable(ch)
    assert int(gone.memory.id) not in [i for i, _ in _hits(m, "u3", "passcode gate")]


def test_snapshots_of_packed_partitions_round_trip_and_survive_a_failed_round(writer, tmp_path):
    settings, c = writer
    root = tmp_path / "idx"
    m = _manager(settings, root)
    m.load_all()
    assert m.save_snapshot()
    before = {(u, q): _hits(m, u, q) for u in [*USERS, BIG] for q in QUERIES}
    m.pack_idle(0)
    # A round that fails half-way leaves the previous snapshot, which loads.
    c.remember(event("late harbour note", user="u4"))
    m.catch_up()
    with pytest.raises(RuntimeError, match="injected"):
        m.save_snapshot(fail_after=0)
    m2 = _manager(settings, root)
    assert m2.load_snapshot()
    m2._load_rest()  # what the background loader does: packed entries stay packed
    assert set(USERS) - {"u4"} <= _packed(m2)
    for (u, q), hits in before.items():
        if u != "u4":
            assert _hits(m2, u, q) == hits, (u, q)
    assert [i for i, _ in _hits(m2, "u4", "late harbour")] == [
        i for i, _ in _hits(m, "u4", "late harbour")
    ]
    assert m.save_snapshot()
    m._store.close()
    m2._store.close()


def test_a_snapshot_in_the_previous_format_loads(writer, tmp_path, monkeypatch):
    settings, _ = writer
    root = tmp_path / "idx"
    old = _manager(settings, root, pack_rows=0)  # format 4: every partition encoded whole
    old.load_all()
    monkeypatch.setattr(snapshots, "FORMAT", 4)
    assert old.save_snapshot()
    monkeypatch.undo()
    assert snapshots.SnapshotStore(root).read_manifest()["format"] == 4
    m = _manager(settings, root)
    assert m.load_snapshot()
    m._load_rest()
    m.pack_idle(0)
    assert _packed(m) == set(USERS)
    for u in [*USERS, BIG]:
        for q in QUERIES:
            assert _hits(m, u, q) == _hits(old, u, q), (u, q)
    old._store.close()
    m._store.close()


def test_arena_entries_free_zeroed_release_chunks_and_compact():
    a = Arena()
    a.CHUNK = 64
    blobs = [bytes([i + 1]) * 20 for i in range(9)]  # 24 bytes an entry: two a chunk
    handles = [a.put(b) for b in blobs]
    assert [a.copy(h) for h in handles] == blobs and a.entries == 9
    a.free(handles[0])
    assert a.chunks[0] is not None and bytes(a.chunks[0][:24]) == bytes(24)  # zeroed
    a.free(handles[1])
    assert a.chunks[0] is None  # no live entry left: released
    for h in handles[2:6]:
        a.free(h)
    live = {i: handles[i] for i in range(6, 9)}
    moved = a.compact(live)
    assert {i: a.copy(h) for i, h in moved.items()} == {i: blobs[i] for i in live}
    assert a.entries == 3 and a.nbytes() == 2 * 64
    big = a.put(b"x" * 100)  # larger than a chunk: a chunk of its own
    assert a.copy(big) == b"x" * 100 and a.live_bytes() == 3 * 24 + 104


def test_packed_encoding_round_trips_a_partition_exactly():
    from datetime import UTC, datetime

    from retrieval_service.index import Partition
    from shared.db.models import MemoryRecord

    rng = np.random.default_rng(0)
    p = Partition(16, 10**9)
    for i in range(5):
        rec = MemoryRecord(
            id=i + 1, tenant="t", type=3, user_id="u", agent_id="", session_id="s",
            content=f"turn {i} about ünïcode harbours", attributes={"speaker": "Ann Lee"},
            importance=0.5, source={}, create_time=datetime(2024, 1, 1, tzinfo=UTC),
            update_time=datetime(2024, 1, 1, tzinfo=UTC), occur_time=None, current=True,
            revision=1, etag="e", turn_index=i, conflicted=False,
        )  # fmt: skip
        p.put(rec, rng.standard_normal(16).astype(np.float32))
    p.remove(3)
    q = snapshots.decode(snapshots.pack(p), 16, 10**9, 1, None)
    live = np.nonzero(p.alive[: p.n])[0]
    assert q.n == len(live) == 4
    assert (q.vectors[: q.n] == p.vectors[live]).all()
    assert list(q.texts) == [p.texts[i] for i in live]
    assert [q.doc(r) for r in range(q.n)] == [p.doc(int(i)) for i in live]
    assert (q.prev_row[: q.n] >= -1).all() and q.bm25.n_live == p.bm25.n_live
    f, qv = Filters(), rng.standard_normal(16).astype(np.float32)
    a, b = p.candidates(f, 0, qv, "harbours turn", 10), q.candidates(f, 0, qv, "harbours turn", 10)
    assert np.allclose(a.dense, b.dense) and np.allclose(a.lexical, b.lexical)


def test_postings_kept_as_one_int_score_as_a_fresh_index_does():
    """Terms go from one posting (an int) to arrays and back (purge); the scores of the
    live documents are those of an index built from them alone."""
    import random

    from retrieval_service.lexical import BM25, tokenize

    r = random.Random(5)
    words = [f"w{i}" for i in range(300)]
    docs = [
        " ".join(r.choices(words[: r.choice([4, 40, 300])], k=r.randint(1, 9))) for _ in range(800)
    ]
    b = BM25()
    for d in docs:
        b.add(d)
    gone = set(r.sample(range(len(docs)), 300))
    for i in gone:
        b.remove(i)
        b.purge(tokenize(docs[i]))
    assert any(p.one is not None for p in b.postings.values())  # singletons held as ints
    assert any(len(p.arrays()[0]) > 1 for p in b.postings.values())
    live = [i for i in range(len(docs)) if i not in gone]
    fresh = BM25()
    for i in live:
        fresh.add(docs[i])
    for _ in range(50):
        q = " ".join(r.sample(words, 3))
        assert np.allclose(b.scores(q, True)[live], fresh.scores(q, True)[: len(live)], atol=1e-6)


def test_writes_are_not_lost_while_queries_decode_and_the_packer_packs(writer):
    """Queries decoding packed partitions and the packer packing them race the apply path;
    every written row stays in its partition."""
    import threading

    settings, c = writer
    m = _manager(settings)
    m.load_all()
    stop = threading.Event()
    errors: list[BaseException] = []

    def churn():
        try:
            while not stop.is_set():
                for u in USERS:
                    m.partition(("acme", "u:" + u))
                    m.pack_idle(0)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=churn) for _ in range(2)]
    for t in threads:
        t.start()
    written = {}
    try:
        for i in range(30):
            u = USERS[i % len(USERS)]
            written[int(c.remember(event(f"race note {i}", user=u)).memory.id)] = u
            m.catch_up()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors
    for mid, u in written.items():
        p = m.partition(("acme", "u:" + u))
        assert mid in p.row_of and m.where.get(mid) == ("acme", "u:" + u)
    assert m.stats()["rows"] == 3 * len(USERS) + PACK_ROWS + 4 + len(written)
