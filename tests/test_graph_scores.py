"""A partition's graph path scores each of its candidates as its exact path scores the
same row, on random corpora written by put and by the tailer's put_many."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, Partition
from shared.db.models import MemoryRecord
from tests.helpers import both_paths

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _vocab(rnd: random.Random, size: int) -> list[str]:
    letters = "bcdfghjklmnpqrstvwxz"
    return sorted({"".join(rnd.choice(letters) for _ in range(6)) for _ in range(size)})


def _rec(i: int, text: str, session: str, turn: int, user: str = "u1") -> MemoryRecord:
    when = T0 + timedelta(minutes=i)
    return MemoryRecord(
        id=i + 1, tenant="t", type=pb.MEMORY_TYPE_CONVERSATION, user_id=user, agent_id="",
        session_id=session, content=text, attributes={"speaker": "Ann" if i % 2 else "Bo"},
        importance=0.5, source={}, create_time=when, occur_time=when, expire_time=None,
        turn_index=turn, etag="e", current=True, revision=1, conflicted=False,
    )  # fmt: skip


def _partition(seed: int, n: int, dim: int = 16, ann_threshold: int = 10**9) -> Partition:
    """n turns of Zipf-distributed words (a few words in most rows, most words in few),
    some removed and some re-indexed (so both BM25 indexes hold dead documents)."""
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    words = _vocab(rnd, 300)
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    weights /= weights.sum()
    p = Partition(dim, ann_threshold=ann_threshold)
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    recs = []
    for i in range(n):
        k = int(rng.integers(1, 12))
        text = " ".join(rng.choice(words, size=k, p=weights))
        recs.append(_rec(i, text, f"s{i // 20}", i % 20))
    half = n // 2
    for rec, vec in zip(recs[:half], vecs[:half], strict=True):
        p.put(rec, vec)
    p.put_many(recs[half:], vecs[half:])  # the tailer's path: the same partition
    for mid in rnd.sample(range(1, n + 1), n // 20):
        p.remove(mid)
    return p, words, vecs


def _queries(rnd: random.Random, words: list[str], n: int) -> list[str]:
    out = []
    for _ in range(n):
        common = rnd.sample(words[:5], rnd.randint(0, 2))  # long postings, small weight
        rare = rnd.sample(words[5:], rnd.randint(1, 3))
        out.append(" ".join(common + rare + (["unknownword"] if rnd.random() < 0.2 else [])))
    return out


def test_graph_and_exact_paths_score_each_row_alike():
    """The graph path scores its candidates as the exact path scores the same rows."""
    rnd = random.Random(5)
    p, words, vecs = _partition(9, 4000, dim=16, ann_threshold=500)
    p.build_ann()
    f = Filters(user_id="u1")
    for query in _queries(rnd, words, 20):
        qvec = vecs[rnd.randrange(len(vecs))]
        g, e, at = both_paths(p, f, qvec, query)
        np.testing.assert_allclose(g.dense, e.dense[at], rtol=0, atol=1e-6)
        np.testing.assert_allclose(g.lexical, e.lexical[at], rtol=0, atol=1e-6)
        # The best lexical rows are among the graph path's candidates.
        best = e.rows[np.argsort(-e.lexical, kind="stable")[:5]]
        assert set(best.tolist()) <= set(g.rows.tolist()) or e.lexical.max() == 0


def test_bm25_scores_by_owner_are_the_scores_by_document_bit_for_bit():
    """BM25.by_owner gives each owner the very float32 that BM25.scores gives its live
    document, and 0 to every other: with removed documents (an owner's earlier document
    among them, as a re-indexed window leaves), repeated query terms, terms in one
    document only and unknown terms."""
    from retrieval_service.lexical import BM25

    rnd = random.Random(2)
    rng = np.random.default_rng(2)
    words = _vocab(rnd, 200)
    weights = 1.0 / np.arange(1, len(words) + 1) ** 1.1
    weights /= weights.sum()
    bm = BM25()
    owner_doc = {}
    for i in range(3000):
        text = " ".join(rng.choice(words, size=int(rng.integers(1, 15)), p=weights))
        owner = (7 * i) % 3000 if i < 2000 else rnd.randrange(2000)  # some owners twice
        if owner in owner_doc:
            bm.remove(owner_doc[owner])  # an owner keeps one live document
        owner_doc[owner] = bm.add(text, owner)
    for owner in rnd.sample(sorted(owner_doc), 200):
        bm.remove(owner_doc.pop(owner))
    assert bm.n_live < bm.n_docs
    owners = np.array(sorted(owner_doc))
    docs = np.array([owner_doc[o] for o in owners])
    queries = _queries(rnd, words, 40) + [words[0], f"{words[1]} {words[1]} {words[-1]}", "zzz"]
    for q in queries:
        for normalise in (False, True):
            dense = bm.scores(q, normalise)
            got = bm.by_owner(q, 3000, normalise)
            assert got.dtype == dense.dtype
            assert np.array_equal(got[owners], dense[docs]), q  # bit for bit
            others = np.ones(3000, dtype=bool)
            others[owners] = False
            assert not got[others].any(), q


def test_sparse_lexical_scores_are_the_dense_ones():
    """A partition's lexical scores from the query terms' postings alone (the graph path)
    are _lexical's over every row, bit for bit, on rows written by put and put_many, some
    removed (their window neighbours re-indexed)."""
    rnd = random.Random(4)
    p, words, _ = _partition(3, 3000)
    for q in _queries(rnd, words, 40) + [""]:
        dense = p._lexical(q)[: p.n]
        m = p.mask(Filters(user_id="u1"), 0.0)
        sparse = p._lexical_sparse(q, m)
        hit = np.nonzero((dense > 0) & m)[0]
        assert np.array_equal(sparse.rows, hit), q
        assert np.array_equal(sparse.scores, dense[hit]), q
        assert np.array_equal(sparse[np.arange(p.n)], dense), q  # read like the array


def test_graph_path_lexical_scores_equal_the_exact_paths_exactly():
    """Not only within a tolerance: the graph path's lexical scores are the exact path's."""
    rnd = random.Random(6)
    p, words, vecs = _partition(12, 3000, dim=16, ann_threshold=500)
    p.build_ann()
    f = Filters(user_id="u1")
    for query in _queries(rnd, words, 15):
        qvec = vecs[rnd.randrange(len(vecs))]
        g, e, at = both_paths(p, f, qvec, query)
        assert np.array_equal(g.lexical, e.lexical[at]), query


def test_the_kept_mask_follows_writes_filters_and_expiry():
    """candidates() keeps the last filters' mask between queries: a write, other filters,
    or a row it passes reaching its expiry time each make it anew, so it is always what
    mask() computes."""
    p, words, vecs = _partition(8, 2000, dim=16, ann_threshold=100)
    p.build_ann()
    f = Filters(user_id="u1")

    def check(f, now):
        m, count = p._cached_mask(f, now)
        fresh = p.mask(f, now)
        assert np.array_equal(m, fresh) and count == int(fresh.sum())
        return m

    m0 = check(f, 100.0)
    assert p._cached_mask(f, 100.0)[0] is m0  # kept
    check(Filters(user_id="u1", session_id="s3"), 100.0)  # other filters
    check(f, 100.0)
    live = np.nonzero(m0)[0]
    p.remove(int(p.ids[live[0]]))  # a removal
    assert not check(f, 100.0)[live[0]]
    row = int(live[1])
    rec = _rec(int(p.ids[row]) - 1, "changed status", f"s{row // 20}", row % 20)
    rec.current = False  # a status change (same vector): rewritten in place
    p.put(rec, vecs[int(p.ids[row]) - 1])
    assert not check(f, 100.0)[row]
    expiring = _rec(5000, "soon gone", "s-x", 0)
    expiring.expire_time = datetime.fromtimestamp(200.0, UTC)
    p.put(expiring, vecs[0])  # a new row, passing until t=200
    new = p.row_of.get(5001)
    assert check(f, 150.0)[new]
    assert p._cached_mask(f, 199.0)[0][new]
    assert not check(f, 200.0)[new]  # expired: no write, but the mask is made anew
    # and candidates() answers with it
    c = p.candidates(f, 250.0, vecs[0], "soon gone", want=20)
    assert new not in set(c.rows.tolist())


def test_graph_without_a_selector_when_every_row_passes():
    """With every row of the graph passing the filters, the graph is searched without a
    selector, and finds what a selector passing every row finds."""
    rnd = random.Random(9)
    rng = np.random.default_rng(9)
    words = _vocab(rnd, 100)
    p = Partition(16, ann_threshold=100)
    vecs = rng.standard_normal((3000, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    recs = [_rec(i, " ".join(rnd.sample(words, 4)), f"s{i // 20}", i % 20) for i in range(3000)]
    p.put_many(recs, vecs)
    p.build_ann()
    f = Filters(user_id="u1")
    m, count = p._cached_mask(f, 0.0)
    assert count == p.n == p.ann.ntotal
    for _ in range(10):
        q = vecs[rnd.randrange(3000)]
        assert np.array_equal(p._graph(None, q, 200), p._graph(m, q, 200))
        text = " ".join(rnd.sample(words, 2))
        g = p.candidates(f, 0.0, q, text, want=20)
        p.ann_threshold = 10**9
        e = p.candidates(f, 0.0, q, text, want=20)
        p.ann_threshold = 100
        assert not g.exact and e.exact
        at = np.searchsorted(e.rows, g.rows)
        assert np.array_equal(e.rows[at], g.rows)
        assert np.array_equal(g.lexical, e.lexical[at])
