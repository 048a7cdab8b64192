"""Pruned BM25 (retrieval_service/index/pruning.py) against exhaustive BM25 on random
corpora: the same best rows with the same scores; and a partition's graph path scoring
each row as its exact path does."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, Partition
from retrieval_service.index.pruning import LexicalQuery
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


@pytest.mark.parametrize("seed", range(6))
def test_pruned_best_rows_are_the_exhaustive_best_with_the_same_scores(seed):
    rnd = random.Random(100 + seed)
    p, words, _ = _partition(seed, 3000)
    n = p.n
    masks = [
        p.alive[:n].copy(),
        p.alive[:n] & (np.random.default_rng(seed).random(n) < 0.3),  # a selective filter
    ]
    pruned_any = False
    for query in _queries(rnd, words, 25):
        full = p._lexical(query)
        q = LexicalQuery(p, query)
        rows = np.arange(-1, n)
        # Scores of any rows, exactly as the exhaustive path computes them.
        np.testing.assert_allclose(q.at(rows), np.concatenate([[0], full]), rtol=0, atol=1e-7)
        for m in masks:
            evidence = np.nonzero(m & (full > 0))[0]
            for top in (1, 10, 50, 400):
                got, scores, pruned = q.best(m, top)
                pruned_any |= pruned
                assert np.all(m[got]) and len(np.unique(got)) == len(got)
                np.testing.assert_allclose(scores, full[got], rtol=0, atol=1e-7)
                if not pruned:  # nothing left out: every row with evidence
                    assert set(got.tolist()) == set(evidence.tolist())
                else:
                    assert len(got) >= top
                want = np.sort(full[evidence])[::-1][:top]
                mine = np.sort(scores)[::-1][:top]
                np.testing.assert_allclose(mine, want, rtol=0, atol=1e-7)
                # The top rows themselves (ties aside: every row above the cut is there).
                if len(want) == top:
                    above = evidence[full[evidence] > want[-1] + 1e-6]
                    assert set(above.tolist()) <= set(got.tolist())
                # Once best() has scored some rows, any row still reads its exact score.
                np.testing.assert_allclose(q.at(rows), np.concatenate([[0], full]), atol=1e-7)
    assert pruned_any  # the corpora do exercise pruning


@pytest.mark.parametrize("prune", [True, False])
def test_graph_and_exact_paths_score_each_row_alike(prune, monkeypatch):
    """The graph path scores its candidates (lexical pruned or not) as the exact path
    scores the same rows (every row, exhaustive lexical)."""
    from retrieval_service.index import partition

    monkeypatch.setattr(partition, "PRUNE_POSTINGS", 0 if prune else 10**12)
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
