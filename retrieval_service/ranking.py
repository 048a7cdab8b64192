"""Hybrid ranking: dense similarity and BM25 (each smoothed over a turn's neighbours in
the partition; for a question about what was done, a user's turn concluding an exchange
with an assistant takes its question's scores: retrieval_service/index/outcome.py),
fused (a word match counting only as far as the memory is near the query by meaning:
the lexical gate); then multiplicative cues (the speaker a question names, a date it
writes out, a time expression for "when" questions, a SKILL for "how do I" questions, a
question turn that was answered, a memory that only echoes the query); then small recency
and importance terms where the type calls for them, and a REFLECTION goes below the
evidence it cites when that matches the query too. Last, the best match by cosine alone
keeps a place in the first ten results (it keeps its own score).

What a score means: each channel is normalised on its own, never against the other
candidates: dense is the cosine with the query, lexical is BM25 divided by the most the
query could score in that partition (0..1). So the same item scores the same whichever
search path found it (exact or graph) and whatever else was found, and scores compare
across queries: a minimum score is a meaningful cut-off. Higher is more relevant; before
cues, a score is alpha * cosine + (1 - alpha) * lexical.
The weights were chosen on LoCoMo (bench/locomo.py; conversations 0-2 of the dev file since
issue 12, 3-4 held out) and bench/data/smallscope-dev.json; see README for the figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, IndexManager, Partition
from retrieval_service.lexical import (
    first_names,
    is_howto_query,
    is_question,
    is_temporal_query,
    query_days,
    tokenize,
)


@dataclass(frozen=True)
class RankConfig:
    alpha: float = 0.5  # weight of the dense score in the fusion
    dense_keep: int = 1  # the best this many by cosine alone keep a place in the first ten
    speaker_boost: float = 0.6  # turns spoken by the one participant the query names
    date_boost: float = 0.5  # items of a day the query writes out
    time_boost: float = 0.3  # items holding a time expression, for "when" questions
    howto_boost: float = 0.3  # SKILL items, for "how do I ..." questions
    question_factor: float = 0.85  # a turn that asked what a later turn answered
    echo_penalty: float = 0.5  # a memory whose words are mostly the query's scores less
    echo_share: float = 0.3  # ... when more than this share of its words are the query's
    recency: float = 0.02  # EVENT and CONVERSATION: fresher is a little better
    importance: float = 0.02
    recency_half_life_s: float = 30 * 86400.0
    evidence_share: float = 0.5  # a REFLECTION goes below its evidence scoring this share of it
    gate_lo: float = 0.05  # a lexical match counts fully from this cosine ...
    gate_hi: float = 0.25  # ... up to this one; none below gate_lo (gate_hi <= gate_lo: off)


DEFAULT = RankConfig()


def rank_config_from(settings) -> RankConfig:
    return RankConfig(
        alpha=settings.rank_alpha,
        speaker_boost=settings.rank_speaker_boost,
        date_boost=settings.rank_date_boost,
        time_boost=settings.rank_time_boost,
        howto_boost=settings.rank_howto_boost,
        question_factor=settings.rank_question_factor,
        echo_penalty=settings.rank_echo_penalty,
        echo_share=settings.rank_echo_share,
        dense_keep=settings.rank_dense_keep,
        evidence_share=settings.rank_evidence_share,
        gate_lo=settings.rank_gate_lo,
        gate_hi=settings.rank_gate_hi,
    )


KEEP_WITHIN = 10  # dense_keep: the first this many results hold the best by cosine
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


@lru_cache(maxsize=4096)
def _evidence(doc: bytes) -> tuple[int, ...]:
    """A stored REFLECTION's evidence memory ids."""
    ids = pb.Memory.FromString(doc).reflection.evidence_memory_ids
    return tuple(int(x) for x in ids if x.isdigit())


def _below_evidence(parts, score, ids, types, k: int, share: float) -> np.ndarray:
    """A REFLECTION is concluded from its evidence: when a memory it cites scores at least
    `share` of it for this query, that memory is the specific answer ("what does Priya take
    before exercise?": the inhaler prescription, not "hard exercise can set off her asthma;
    she should carry her inhaler"), so the reflection takes a score just below the best such
    evidence. Only reflections that could reach the top k are looked at, and only evidence
    among the candidates (on the exact path, every memory passing the filters)."""
    refl = np.nonzero(types == pb.MEMORY_TYPE_REFLECTION)[0]
    if not len(refl) or k == 0:
        return score
    k = min(k, len(score))
    kth = np.partition(-score, k - 1)[k - 1]
    refl = refl[-score[refl] <= kth]
    if not len(refl):
        return score
    offsets = np.cumsum([0] + [len(c.rows) for _, c in parts])
    where = None
    out = score.copy()
    for i in refl.tolist():
        j = int(np.searchsorted(offsets, i, side="right") - 1)
        p, c = parts[j]
        ev = _evidence(p.doc(int(c.rows[i - offsets[j]])))
        if not ev:
            continue
        if where is None:
            where = {int(m): n for n, m in enumerate(ids.tolist())}
        at = [where[e] for e in ev if e in where]
        if not at:
            continue
        best = max(float(score[a]) for a in at)
        if best >= share * score[i] and best < out[i]:
            out[i] = np.nextafter(best, -np.inf)
    return out


@lru_cache(maxsize=16384)
def _content_words(doc: bytes) -> frozenset[str]:
    """A stored memory's content words (keyed by its serialized form, so a changed memory
    is a new entry); the head of every search looks them up."""
    return frozenset(tokenize(pb.Memory.FromString(doc).content))


def _echo(parts, score: np.ndarray, query: str, k: int, cfg: RankConfig) -> np.ndarray:
    """For a question: a memory most of whose content words (stemmed, stop words out) are
    the query's own scores up to cfg.echo_penalty less, growing from none at
    cfg.echo_share of its words to all of it when every word is the query's: it repeats
    the question ("why is my PCR giving no bands?") or only names its subject ("has a
    cat"), where the memory that answers says something the question does not. Only the
    candidates that could reach the top k are looked at (the top k, then any that rise
    into it, until none do), so every returned memory carries its penalty whatever the
    other candidates were."""
    q = set(tokenize(query))
    k = min(k, len(score))
    if not q or k == 0:
        return score
    offsets = np.cumsum([0] + [len(c.rows) for _, c in parts])
    out = score.copy()
    seen = np.zeros(len(score), dtype=bool)
    while True:
        look = np.argpartition(-out, k - 1)[:k]
        look = look[~seen[look]]
        if not len(look):
            return out
        seen[look] = True
        part = np.searchsorted(offsets, look, side="right") - 1
        for i, j in zip(look.tolist(), part.tolist(), strict=True):
            p, c = parts[j]
            words = _content_words(p.doc(int(c.rows[i - offsets[j]])))
            if words:
                over = len(words & q) / len(words) - cfg.echo_share
                if over > 0:
                    out[i] *= 1 - cfg.echo_penalty * over / (1 - cfg.echo_share)


def _keep_dense(top: np.ndarray, dense: np.ndarray, ids: np.ndarray, m: int) -> np.ndarray:
    """The best m candidates by cosine alone get a place among the first KEEP_WITHIN (or
    all k) results: each one missing goes in at the end of those places and the rest move
    down. It keeps its own score (scores never depend on the other candidates), so there
    the order departs from the scores. A remark that shares no word with what it needs
    ("my knee has been bad since the weekend" after "I signed up for the trail race") is
    found by meaning alone, and the words other turns share with it must not bury it
    (bench/cuetrigger.py)."""
    k = len(top)
    within = min(k, KEEP_WITHIN)
    head = top[:within].tolist()
    best = np.lexsort((ids, -dense))[:m]  # ties by id: the same whichever replica gathered
    missing = [int(i) for i in best if int(i) not in head]
    if not missing:
        return top
    cut = within - len(missing)
    rest = [int(i) for i in top.tolist() if int(i) not in missing]
    return np.array((rest[:cut] + missing + rest[cut:])[:k], dtype=top.dtype)


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
    scope = list(index.partitions_for(tenant, f.user_id, f.agent_id))
    words = first_names(query)
    days = query_days(query)
    temporal = is_temporal_query(query)
    howto = bool(cfg.howto_boost) and is_howto_query(query)
    local = [p for p in scope if isinstance(p, Partition)]  # not a fan-out's merged view
    named = set().union(*(p.speaker_names() & words for p in local)) if local else set()
    focus_name = next(iter(named)) if len(named) == 1 else None

    def boosted(p: Partition) -> list:
        """Rows a cue multiplies: on the graph path each set gets its own nearest rows, so
        a boosted row below the overall top `want` is still scored."""
        out = []
        if focus_name is not None:
            out.append(lambda n, p=p: p.spoken_by(focus_name, slice(n)))
        if days:
            out.append(lambda n, p=p: np.isin(p.day[:n], list(days)))
        if temporal:
            out.append(lambda n, p=p: p.has_time[:n])
        if howto:
            out.append(lambda n, p=p: p.types[:n] == pb.MEMORY_TYPE_SKILL)
        return out

    parts = []
    for p in scope:
        if isinstance(p, Partition):
            c = p.candidates(f, now, qvec, query, want, boosted(p))
        else:
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
    if cfg.gate_hi > cfg.gate_lo and cfg.alpha > 0:  # alpha 0: words alone were asked for
        lex = lex * np.clip((dense - cfg.gate_lo) / (cfg.gate_hi - cfg.gate_lo), 0.0, 1.0)
    score = cfg.alpha * dense.astype(np.float64) + (1 - cfg.alpha) * lex
    if temporal:
        score *= 1 + cfg.time_boost * cat(lambda p, c: p.has_time[c.rows])
    if howto:
        score *= 1 + cfg.howto_boost * (types == pb.MEMORY_TYPE_SKILL)
    if days:
        score *= 1 + cfg.date_boost * np.isin(cat(lambda p, c: p.day[c.rows]), list(days))
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

    if cfg.echo_penalty and is_question(query):  # a lookup by words may want the echo
        score = _echo(parts, score, query, top_k, cfg)
    ids = cat(lambda p, c: p.ids[c.rows])
    if cfg.evidence_share:
        score = _below_evidence(parts, score, ids, types, top_k, cfg.evidence_share)

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
    top = top[np.lexsort((ids[top], -dense[top], -score[top]))][:k]
    if cfg.dense_keep and min_score is None and k > 2 * cfg.dense_keep:
        top = _keep_dense(top, dense, ids, cfg.dense_keep)
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
