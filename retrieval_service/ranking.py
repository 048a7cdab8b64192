"""Hybrid ranking: dense cosine and BM25, fused by weighted reciprocal rank, with recency
and importance where the type calls for it.

What a score means: higher is more relevant; scores compare results of one query only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, IndexManager, Partition

RRF_K = 60.0
W_DENSE = 1.0
W_LEXICAL = 1.0
# Recency and importance only nudge: a fraction of one first-place RRF contribution.
W_RECENCY = 0.2 / RRF_K
W_IMPORTANCE = 0.2 / RRF_K
RECENCY_HALF_LIFE_S = 30 * 86400.0
TIMELY_TYPES = np.array([pb.MEMORY_TYPE_EVENT, pb.MEMORY_TYPE_CONVERSATION], dtype=np.int8)


@dataclass
class Hit:
    partition: Partition
    row: int
    score: float
    dense: float
    lexical: float
    recency: float
    importance: float
    confidence: float
    conflicted: bool

    @property
    def memory_id(self) -> int:
        return int(self.partition.ids[self.row])

    def memory(self) -> pb.Memory:
        return pb.Memory.FromString(self.partition.doc(self.row))


def _ranks(scores: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """1-based rank by score, descending; tied scores share the best rank, so the order
    rows happen to be stored in never matters. inf where not kept."""
    # One sort, then each run of equal scores takes the position where it starts (a
    # binary search per row cost 5x more: 0.7 ms against 0.15 ms at 10k rows).
    n = len(scores)
    order = np.argsort(-scores)
    s = scores[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = s[1:] != s[:-1]
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) + 1
    ranks[~keep] = np.inf
    return ranks


def search(
    index: IndexManager,
    tenant: str,
    qvec: np.ndarray,
    query: str,
    f: Filters,
    top_k: int,
) -> list[Hit]:
    now = time.time()
    want = max(top_k * 5, 50)
    parts: list[tuple[Partition, np.ndarray, np.ndarray, np.ndarray]] = []
    for p in index.partitions_for(tenant, f.user_id, f.agent_id):
        c = p.candidates(f, now, qvec, query, want)
        if c is not None:
            parts.append((p, c.rows, c.dense, c.lexical))
    if not parts:
        return []
    dense = np.concatenate([x[2] for x in parts])
    lex = np.concatenate([x[3] for x in parts])
    dr = _ranks(dense, np.ones(len(dense), dtype=bool))
    lr = _ranks(lex, lex > 0)
    fused = W_DENSE / (RRF_K + dr) + W_LEXICAL / (RRF_K + lr)
    types = np.concatenate([x[0].types[x[1]] for x in parts])
    when = np.concatenate([x[0].when[x[1]] for x in parts])
    imp = np.concatenate([x[0].importance[x[1]] for x in parts]).astype(np.float64)
    conf = np.concatenate([x[0].confidence[x[1]] for x in parts]).astype(np.float64)
    timely = np.isin(types, TIMELY_TYPES)
    recency = np.where(timely, np.exp2(-np.maximum(now - when, 0) / RECENCY_HALF_LIFE_S), 0.0)
    score = fused + W_RECENCY * recency + W_IMPORTANCE * imp
    reflect = types == pb.MEMORY_TYPE_REFLECTION
    score = np.where(reflect, score * (0.5 + 0.5 * conf), score)
    k = min(top_k, len(score))
    if k < len(score):  # everything tied with the k-th score, then a deterministic cut
        kth = np.partition(-score, k - 1)[k - 1]
        top = np.nonzero(-score <= kth)[0]
    else:
        top = np.arange(len(score))
    offsets = np.cumsum([0] + [len(x[1]) for x in parts])
    ids = np.concatenate([x[0].ids[x[1]] for x in parts])
    top = top[np.lexsort((ids[top], -dense[top], -score[top]))][:k]
    hits = []
    for i in top:
        j = int(np.searchsorted(offsets, i, side="right") - 1)
        p, rows = parts[j][0], parts[j][1]
        row = int(rows[i - offsets[j]])
        hits.append(
            Hit(
                p,
                row,
                float(score[i]),
                float(dense[i]),
                float(lex[i]),
                float(recency[i]),
                float(imp[i]),
                float(conf[i]),
                bool(p.conflicted[row]),
            )
        )
    return hits
