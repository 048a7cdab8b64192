"""The search index: exact filters (exact and HNSW paths), forget, snapshots, rebuild."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

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
        exact = _manager(settings.sqlalchemy_url(), ann_threshold=10**9)
        exact.load_all()
        for f, expect in (
            (Filters(user_id="u1"), 10),
            (Filters(user_id="u1", types=frozenset([pb.MEMORY_TYPE_CONVERSATION])), 10),
            (Filters(user_id="u1", session_id="s1", end=(T0 + timedelta(hours=40)).timestamp()), 7),
        ):
            for q in QUERIES:
                approx = _results(index, "acme", q, f)
                assert len(approx) == expect
                truth = _results(exact, "acme", q, f)
                # Tie-aware recall: approximate hits scoring at least the exact k-th score.
                kth = truth[-1][1]
                good = sum(1 for _, sc in approx if sc >= kth - 1e-9)
                assert good >= 0.8 * expect, (q, f, approx, truth)
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

    with MemlakeClient(f"127.0.0.1:{running.port}", tenant="acme") as c:
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


def test_fusion_ranks_share_the_best_rank_on_ties():
    import numpy as np

    from retrieval_service.ranking import _ranks

    rnd = np.random.default_rng(5)
    for n in (0, 1, 2, 7, 500):
        scores = np.round(rnd.random(n) * 4) / 4  # many ties
        keep = scores > 0.25
        # Rank = 1 + how many rows score strictly higher, whatever order rows are stored in.
        want = np.array([1 + np.sum(scores > s) for s in scores], dtype=np.float64)
        want[~keep] = np.inf
        assert np.array_equal(_ranks(scores, keep), want)
        perm = rnd.permutation(n)
        assert np.array_equal(_ranks(scores[perm], keep[perm]), want[perm])
