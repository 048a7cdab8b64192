"""The search index: exact filters (exact and HNSW paths), forget, snapshots, rebuild."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import faiss
import numpy as np
import pytest

from memlake.client import scope, ts
from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, IndexManager, rebuild
from retrieval_service.ranking import search
from shared.db.engine import Database
from shared.embedding import HashEmbedder
from shared.launch import start
from tests.conftest import start_suite
from tests.helpers import background, event, turn

T0 = datetime(2024, 3, 1, tzinfo=UTC)
WORDS = "apple river mountain piano coffee garden rocket violin desert lantern".split()


def _corpus(client, n: int = 120, user: str = "u1"):
    rnd = random.Random(7)
    items = []
    for i in range(n):
        text = " ".join(rnd.sample(WORDS, 3)) + f" note {i}"
        if i % 3 == 0:
            m = turn(text, session=f"s{i % 2}", user=user)
            m.occur_time.CopyFrom(ts(T0 + timedelta(hours=i)))
        else:
            m = event(text, user=user, when=T0 + timedelta(hours=i))
        items.append(m)
    resp = client.stream_remember(items)
    assert resp.failed == 0
    return resp


def _check_exact(client, seq, **filt):
    """Every result satisfies the filter, and there are min(top_k, matching) of them."""
    all_items = list(client.list_all(scope=scope("u1"), page_size=500))

    def ok(m):
        if filt.get("types") and m.type not in filt["types"]:
            return False
        if filt.get("session") and m.scope.session_id != filt["session"]:
            return False
        when = m.occur_time.ToDatetime(tzinfo=UTC)
        return (
            filt.get("start", T0 - timedelta(days=1))
            <= when
            < filt.get("end", T0 + timedelta(days=365))
        )

    matching = [m for m in all_items if ok(m)]
    tr = pb.TimeRange()
    if "start" in filt:
        tr.start_time.CopyFrom(ts(filt["start"]))
    if "end" in filt:
        tr.end_time.CopyFrom(ts(filt["end"]))
    for top_k in (5, 40):
        r = client.search(
            "apple piano",
            scope=scope("u1", session_id=filt.get("session", "")),
            types=filt.get("types", ()),
            time_range=tr,
            top_k=top_k,
            min_seq=seq,
        )
        assert len(r.results) == min(top_k, len(matching)), filt
        assert all(ok(x.memory) for x in r.results)
    return len(matching)


def test_filters_are_exact(client):
    resp = _corpus(client)
    seq = resp.seq
    assert _check_exact(client, seq, types=[pb.MEMORY_TYPE_CONVERSATION]) == 40
    assert _check_exact(client, seq, session="s1") == 20
    n = _check_exact(client, seq, start=T0 + timedelta(hours=10), end=T0 + timedelta(hours=17))
    assert n == 7
    assert (
        _check_exact(client, seq, types=[pb.MEMORY_TYPE_EVENT], start=T0 + timedelta(hours=100))
        == 14
    )


def test_forget_removes_from_results(client):
    keep = client.remember(event("the lighthouse keeper painted the door"))
    gone = client.remember(event("the lighthouse keeper fixed the lamp"))
    r = client.search("lighthouse keeper", scope=scope("u1"), min_seq=gone.seq)
    assert {x.memory.id for x in r.results} == {keep.memory.id, gone.memory.id}
    seq = client.forget(gone.memory.id)
    r = client.search("lighthouse keeper", scope=scope("u1"), min_seq=seq)
    assert [x.memory.id for x in r.results] == [keep.memory.id]


def _manager(db_url: str, **kw) -> IndexManager:
    return IndexManager(Database(db_url), HashEmbedder.dim, embed_model=HashEmbedder.name, **kw)


def _results(index: IndexManager, tenant: str, query: str, f: Filters, k: int = 10):
    q = HashEmbedder().embed_one(query)
    return [(h.memory_id, round(h.score, 9)) for h in search(index, tenant, q, query, f, k)]


QUERIES = ["apple piano", "river desert note 7", "violin", "coffee garden lantern"]


def test_hnsw_path_keeps_filters_exact_and_recall(fresh_backend):
    backend, settings = fresh_backend
    settings.ann_threshold = 100
    suite = start_suite(settings, backend)
    try:
        with suite.client("acme") as c:
            resp = _corpus(c, n=600)
            seq = resp.seq
        index = _manager(settings.sqlalchemy_url(), ann_threshold=100)
        index.load_all()
        assert index.stats()["ann_partitions"] == 1 and index.applied_seq >= seq
        (part,) = index.partitions.values()
        assert part.ann is not None and part.ann.ntotal == part.n
        emb = HashEmbedder()
        for f, expect in (
            (Filters(user_id="u1"), 10),
            (Filters(user_id="u1", types=frozenset([pb.MEMORY_TYPE_CONVERSATION])), 10),
            (Filters(user_id="u1", session_id="s1", end=(T0 + timedelta(hours=40)).timestamp()), 7),
        ):
            for q in QUERIES:
                hits = search(index, "acme", emb.embed_one(q), q, f, 10)
                assert len(hits) == expect  # never fewer than exist
                assert all(part.mask(f, 0)[h.row] for h in hits)  # and all pass the filter
        # The graph's own quality: its top 10 against exact inner products (tie-aware).
        m = part.mask(Filters(user_id="u1"), 0)
        bitmap = np.packbits(m, bitorder="little")
        for q in QUERIES:
            qv = emb.embed_one(q)
            exact_ip = np.sort(part.vector_rows(np.nonzero(m)[0]) @ qv)[::-1]
            params = faiss.SearchParametersHNSW(
                sel=faiss.IDSelectorBitmap(part.n, faiss.swig_ptr(bitmap)), efSearch=64
            )
            _, labels = part.ann.search(qv.reshape(1, -1), 10, params=params)
            got = part.vector_rows(labels[0]) @ qv
            assert sum(got >= exact_ip[9] - 1e-5) >= 9, q
    finally:
        suite.stop()


def test_rebuilt_index_matches_live_and_snapshot_restart_catches_up(fresh_backend):
    backend, settings = fresh_backend
    suite = start_suite(settings, backend)
    with suite.client("acme") as c:
        _corpus(c, n=90)
        c.remember(background("name", "Ivo"))
        gone = c.remember(event("a temporary apple memory"))
        c.forget(gone.memory.id)
        last = c.remember(turn("apple piano lesson tomorrow", session="s0"))
        live = {
            q: [
                (x.memory.id, round(x.score, 5))
                for x in c.search(q, scope=scope("u1"), min_seq=last.seq).results
            ]
            for q in QUERIES
        }
    suite.stop()  # writes the final snapshot
    manifest = settings.index_dir() / "manifest.json"
    assert manifest.exists()

    # Rebuilt from the database alone: the same results as the live index.
    rebuilt = rebuild(settings, HashEmbedder.name, HashEmbedder.dim)
    for q in QUERIES:
        got = _results(rebuilt, "acme", q, Filters(user_id="u1"))
        assert [i for i, _ in got] == [int(i) for i, _ in live[q]]
        assert [s for _, s in got] == pytest.approx([s for _, s in live[q]], abs=1e-3)

    # Writes while retrieval is down are caught up from the change log after the snapshot.
    running, rt = start("ingest", settings, port=0)
    from memlake.client import MemlakeClient
    from tests.conftest import tenant_key

    key = tenant_key(f"127.0.0.1:{running.port}", settings, "acme")
    with MemlakeClient(f"127.0.0.1:{running.port}", api_key=key) as c:
        extra = c.remember(event("zebra crossing incident downtown"))
    running.stop(1.0)
    suite = start_suite(settings, backend)
    try:
        with suite.client("acme") as c:
            r = c.search("zebra crossing", scope=scope("u1"), min_seq=extra.seq)
            assert r.results[0].memory.id == extra.memory.id
            for q in QUERIES[:2]:
                after = [x.memory.id for x in c.search(q, scope=scope("u1")).results]
                assert extra.memory.id in after or after == [i for i, _ in live[q]][: len(after)]
    finally:
        suite.stop()


def test_separate_services_are_woken_through_redis(tmp_path):
    """Ingest and retrieval in separate runtimes share only Postgres and Redis; with polling
    every 30 s, a write is searchable at once only because pub/sub woke the tailer."""
    from tests.conftest import drop_postgres_database, postgres_database, settings_for

    db_url = postgres_database()
    settings = settings_for("postgres", tmp_path / "d", db_url, tail_poll_interval_s=30.0)
    ingest, irt = start("ingest", settings, port=0)
    retrieval, rrt = start("retrieval", settings, port=0)
    try:
        from memlake.client import MemlakeClient
        from tests.conftest import tenant_key

        key = tenant_key(f"127.0.0.1:{ingest.port}", settings, "acme")
        with MemlakeClient(
            f"127.0.0.1:{ingest.port}", api_key=key, retrieval_addr=f"127.0.0.1:{retrieval.port}"
        ) as c:
            import time

            r = c.search("warm", scope=scope("u1"), timeout=20)  # index loaded
            time.sleep(0.5)  # the tailer is now parked in its 30 s poll wait
            for i in range(3):
                w = c.remember(event(f"quokka sighting number {i}"))
                deadline = time.monotonic() + 5
                found = False
                while not found and time.monotonic() < deadline:
                    time.sleep(0.1)  # no min_seq: nothing but pub/sub wakes the tailer
                    r = c.search("quokka sighting", scope=scope("u1"), timeout=10)
                    found = w.memory.id in {x.memory.id for x in r.results}
                assert found, f"write {i} not searchable within 5 s"
            assert irt is not rrt  # separate runtimes: no process-local wake-ups between them
    finally:
        retrieval.stop(1.0)
        ingest.stop(1.0)
        drop_postgres_database(db_url)


def test_forgetting_a_turn_reembeds_the_turns_after_it(client):
    from memlake.client import scope as sc

    ids = [
        client.remember(turn(t, session="w1")).memory.id
        for t in ["my secret word is xylophone", "noted", "thanks, see you"]
    ]
    before = client.get(ids[1]).etag
    seq = client.forget(ids[0])
    assert client.get(ids[1]).etag != before  # re-embedded without the forgotten turn
    r = client.search("xylophone", scope=sc("u1"), min_seq=seq)
    assert all("xylophone" not in x.memory.content for x in r.results)
    assert all(x.parts.lexical == 0 for x in r.results)  # no window still holds the word


def _record(i: int, user: str, session: str, turn: int | None = None):
    from shared.db.models import MemoryRecord

    when = T0 + timedelta(minutes=i)
    return MemoryRecord(
        id=i,
        tenant="acme",
        type=pb.MEMORY_TYPE_CONVERSATION if turn is not None else pb.MEMORY_TYPE_EVENT,
        user_id=user,
        agent_id="a1" if i % 3 else "",
        session_id=session,
        content=f"{WORDS[i % len(WORDS)]} note {i}",
        attributes={},
        importance=0.5,
        source={},
        create_time=when,
        occur_time=when,
        expire_time=None,
        turn_index=turn,
        etag="e",
        current=True,
        revision=1,
        conflicted=False,
    )


def test_scope_filters_match_the_string_columns_as_rows_arrive():
    """The mask's coded session/agent/user filters agree with comparing the strings, also
    for rows appended after a query, rows moved by re-indexing, and a compacted copy."""
    import numpy as np

    from retrieval_service.index import Partition

    rnd = random.Random(3)
    p = Partition(8, ann_threshold=10**9)
    filters = [
        Filters(user_id="u1"),
        Filters(user_id="u2", session_id="s1"),
        Filters(agent_id="a1"),
        Filters(session_id="s9"),  # a value no row has
        Filters(user_id="u1", agent_id="a1", session_id="s0"),
    ]

    def check(part):
        for f in filters:
            want = part.alive[: part.n] & part.current[: part.n]
            for value, col in (
                (f.user_id, "users"),
                (f.agent_id, "agents"),
                (f.session_id, "sessions"),
            ):
                if value:
                    want &= np.array([s == value for s in getattr(part, col)], dtype=bool)
            assert np.array_equal(part.mask(f, now=0.0), want), f

    vec = np.ones(8, dtype=np.float32)
    for i in range(1, 121):
        # Turns of s1 arrive out of order, so some rows are re-indexed to new rows.
        turn = rnd.randrange(10) if i % 4 == 0 else None
        p.put(_record(i, f"u{i % 2 + 1}", f"s{i % 3}", turn), vec)
        if i % 25 == 0:
            check(p)
    p.remove(7)
    check(p)
    check(p.compact())


def test_vectors_are_held_as_bfloat16_and_score_as_float32_within_a_tolerance():
    """Half the bytes of float32 a vector; a cosine moves by well under 1e-3, so the
    top 10 by the stored vectors is the float32 top 10 but for near ties, and both scan
    paths (a full scan, a gather of a few rows) give the same numbers."""
    from retrieval_service.index import Partition

    rng = np.random.default_rng(3)
    dim, n = 384, 3000
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    p = Partition(dim, ann_threshold=10**9)
    for i in range(n):
        p.put(_record(i + 1, "u1", f"s{i // 20}", i % 20), vecs[i])
    assert p.vectors.dtype == np.uint16 and p.vectors[: p.n].nbytes == n * dim * 2
    overlap = []
    for _ in range(20):
        q = rng.standard_normal(dim).astype(np.float32)
        q /= np.linalg.norm(q)
        exact = vecs @ q
        got = p._dense(np.arange(n), q)  # the full scan
        assert np.abs(got - exact).max() < 1e-3
        few = np.array([5, 17, 2999])
        assert np.allclose(p._dense(few, q), got[few], rtol=0, atol=1e-6)  # the gather
        overlap.append(len(set(np.argsort(-got)[:10]) & set(np.argsort(-exact)[:10])))
    assert np.mean(overlap) >= 9.5


def test_turn_links_follow_out_of_order_arrivals_and_removals():
    """Links between turns come from a session's latest turn or, out of order, a scan:
    the same links a row-by-row map gave."""
    from retrieval_service.index import Partition

    p = Partition(4, ann_threshold=10**9)
    v = np.ones(4, np.float32) / 2
    for i, t in enumerate([0, 1, 3, 2, 4], start=1):  # turn 2 arrives after turn 3
        p.put(_record(i, "u1", "s1", t), v)
    p.put(_record(9, "u1", "s2", 0), v)
    row = {int(p.ids[r]): r for r in range(p.n)}
    by_turn = {0: row[1], 1: row[2], 2: row[4], 3: row[3], 4: row[5]}
    for t in range(4):
        assert p.next_row[by_turn[t]] == by_turn[t + 1]
        assert p.prev_row[by_turn[t + 1]] == by_turn[t]
    assert p.next_row[row[9]] == -1 and p.prev_row[row[9]] == -1  # another session
    assert p.remove(5)  # the last turn: turn 3 becomes the session's latest
    assert p.last_turn["s1"] == by_turn[3] and p.next_row[by_turn[3]] == -1
    p.put(_record(10, "u1", "s1", 4), v)  # a new turn 4 links to turn 3 again
    assert p.prev_row[p.row_of[10]] == by_turn[3]
    for i in (1, 2, 3, 4, 10):
        p.remove(i)
    assert "s1" not in p.last_turn and "s2" in p.last_turn


def test_row_map_answers_as_a_dict_would():
    """Ids in order, out of order (past the merge size), replaced and removed."""
    from retrieval_service.index.storage import RowMap

    rng = np.random.default_rng(1)
    m, d = RowMap(), {}
    ids = list(range(1, 3000)) + rng.integers(1, 20000, 9000).tolist()
    for row, mid in enumerate(ids):
        m[mid] = row
        d[mid] = row
        if row % 7 == 0:
            gone = int(rng.integers(1, 20000))
            assert m.pop(gone, None) == d.pop(gone, None)
    assert len(m) == len(d) and dict(m.items()) == d and set(m) == set(d)
    assert all(m.get(k) == d.get(k) for k in range(25000))
    assert 5 not in RowMap.of(np.array([7, 3]), np.array([0, 1]))
    assert RowMap.of(np.array([7, 3]), np.array([0, 1]))[3] == 1


def test_key_map_answers_as_a_dict_would_and_forgets_unused_keys():
    from retrieval_service.index.storage import KeyMap

    rng = np.random.default_rng(2)
    m, d = KeyMap(), {}
    for mid in list(range(1, 2000)) + rng.integers(1, 5000, 6000).tolist():
        key = ("t", f"u:{int(rng.integers(0, 30))}")
        m[mid] = key
        d[mid] = key
        if mid % 5 == 0:
            assert m.pop(mid + 1) == d.pop(mid + 1, None)
    assert len(m) == len(d) and set(m) == set(d)
    assert all(m.get(k) == d.get(k) for k in range(6000))
    for k in list(d):
        assert m.pop(k) == d.pop(k)
    assert len(m) == 0 and not m.code and not any(m.keys)  # no scope string left


def test_a_hit_removed_after_ranking_is_dropped_not_returned_empty():
    """A Forget applied by the tailer between ranking and reading the documents blanks the
    row's document; search and context drop that hit instead of failing on an empty id."""
    from retrieval_service.index import Partition
    from retrieval_service.ranking import Hit
    from retrieval_service.servicer import _materialized

    p = Partition(8, ann_threshold=10**9)
    vec = np.ones(8, dtype=np.float32) / np.sqrt(8)
    for i in (1, 2):
        p.put(_record(i, "u1", "s1"), vec)
    hits = [Hit(p, row, 1.0, 1.0, 0.0, 0.0, 0.5, 1.0, False) for row in (0, 1)]
    assert [m.id for _, m in _materialized(hits)] == ["1", "2"]
    assert p.remove(1)
    assert [m.id for _, m in _materialized(hits)] == ["2"]
