"""A partition's graph path scores each of its candidates as its exact path scores the
same row, on random corpora written by put and by the tailer's put_many."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, Partition
from shared.db.models import MemoryRecord

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
        p.ann_threshold = 500
        g = p.candidates(f, 0.0, qvec, query, want=20)
        assert g is not None and not g.exact
        p.ann_threshold = 10**9
        e = p.candidates(f, 0.0, qvec, query, want=20)
        assert e.exact
        at = np.searchsorted(e.rows, g.rows)
        assert np.array_equal(e.rows[at], g.rows)  # graph candidates are rows exact sees
        np.testing.assert_allclose(g.dense, e.dense[at], rtol=0, atol=1e-6)
        np.testing.assert_allclose(g.lexical, e.lexical[at], rtol=0, atol=1e-6)
        # The best lexical rows are among the graph path's candidates.
        best = e.rows[np.argsort(-e.lexical, kind="stable")[:5]]
        assert set(best.tolist()) <= set(g.rows.tolist()) or e.lexical.max() == 0
