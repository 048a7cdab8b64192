"""Hybrid ranking: dense similarity and BM25 (each smoothed over a turn's neighbours in
the partition), fused; then multiplicative cues (the speaker a question names, a date it
writes out, a time expression for "when" questions); then small recency and importance
terms where the type calls for them.

What a score means: each channel is normalised on its own, never against the other
candidates: dense is the cosine with the query, lexical is BM25 divided by the most the
query could score in that partition (0..1). So the same item scores the same whichever
search path found it (exact or graph) and whatever else was found, and scores compare
across queries: a minimum score is a meaningful cut-off. Higher is more relevant; before
cues, a score is alpha * cosine + (1 - alpha) * lexical.
The weights were chosen on LoCoMo (bench/locomo.py; see README for the figures).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, IndexManager, Partition
from retrieval_service.lexical import first_names, is_temporal_query, query_days


@dataclass(frozen=True)
class RankConfig:
    alpha: float = 0.5  # weight of the dense score in the fusion
    speaker_boost: float = 0.6  # turns spoken by the one participant the query names
    date_boost: float = 0.5  # items of a day the query writes out
    time_boost: float = 0.3  # items holding a time expression, for "when" questions
    question_factor: float = 0.85  # a turn that asked what a later turn answered
    recency: float = 0.02  # EVENT and CONVERSATION: fresher is a little better
    importance: float = 0.02
    recency_half_life_s: float = 30 * 86400.0


DEFAULT = RankConfig()


def rank_config_from(settings) -> RankConfig:
    return RankConfig(
        alpha=settings.rank_alpha,
        speaker_boost=settings.rank_speaker_boost,
        date_boost=settings.rank_date_boost,
        time_boost=settings.rank_time_boost,
        question_factor=settings.rank_question_factor,
    )


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


def search(
    index: IndexManager,
    tenant: str,
    qvec: np.ndarray,
    query: str,
    f: Filters,
    top_k: int,
    cfg: RankConfig = DEFAULT,
    min_score: float | None = None,
) -> list[Hit]:
    """The top_k hits by score (those scoring at least min_score when given)."""
    now = time.time()
    want = max(top_k * 5, 50)
    parts = []
    for p in index.partitions_for(tenant, f.user_id, f.agent_id):
        c = p.candidates(f, now, qvec, query, want)
        if c is not None:
            parts.append((p, c))
    if not parts:
        return []

    def cat(fn):
        return np.concatenate([fn(p, c) for p, c in parts])

    dense = cat(lambda p, c: c.dense)
    lex = cat(lambda p, c: c.lexical)
    types = cat(lambda p, c: p.types[c.rows])
    score = cfg.alpha * dense.astype(np.float64) + (1 - cfg.alpha) * lex
    if is_temporal_query(query):
        score *= 1 + cfg.time_boost * cat(lambda p, c: p.has_time[c.rows])
    days = query_days(query)
    if days:
        score *= 1 + cfg.date_boost * np.isin(cat(lambda p, c: p.day[c.rows]), list(days))
    words = first_names(query)
    named = set().union(*(p.speaker_names() & words for p, _ in parts))
    if len(named) == 1:
        name = named.pop()
        score *= 1 + cfg.speaker_boost * cat(lambda p, c: p.spoken_by(name, c.rows))
    if cfg.question_factor != 1.0:
        score = np.where(cat(lambda p, c: p.asks(c.rows)), score * cfg.question_factor, score)
    when = cat(lambda p, c: p.when[c.rows])
    imp = cat(lambda p, c: p.importance[c.rows]).astype(np.float64)
    conf = cat(lambda p, c: p.confidence[c.rows]).astype(np.float64)
    timely = np.isin(types, TIMELY_TYPES)
    age = np.maximum(now - when, 0)
    recency = np.where(timely, np.exp2(-age / cfg.recency_half_life_s), 0.0)
    score = score + cfg.recency * recency + cfg.importance * imp
    reflect = types == pb.MEMORY_TYPE_REFLECTION
    score = np.where(reflect, score * (0.5 + 0.5 * conf), score)

    if min_score is not None:
        score = np.where(score >= min_score, score, -np.inf)
        top_k = min(top_k, int(np.count_nonzero(score >= min_score)))
    k = min(top_k, len(score))
    if k == 0:
        return []
    if k < len(score):  # everything tied with the k-th score, then a deterministic cut
        kth = np.partition(-score, k - 1)[k - 1]
        top = np.nonzero(-score <= kth)[0]
    else:
        top = np.arange(len(score))
    ids = cat(lambda p, c: p.ids[c.rows])
    top = top[np.lexsort((ids[top], -dense[top], -score[top]))][:k]
    offsets = np.cumsum([0] + [len(c.rows) for _, c in parts])
    hits = []
    for i in top:
        j = int(np.searchsorted(offsets, i, side="right") - 1)
        p, c = parts[j]
        row = int(c.rows[i - offsets[j]])
        hits.append(
            Hit(
                p, row, float(score[i]), float(dense[i]), float(lex[i]), float(recency[i]),
                float(imp[i]), float(conf[i]), bool(p.conflicted[row]),
            )
        )  # fmt: skip
    return hits
