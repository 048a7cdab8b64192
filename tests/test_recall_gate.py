"""Two ranking rules of issue 12 (session 5): a word match counts only as far as the memory
is also near the query by meaning (the lexical gate), and a REFLECTION ranks below the
evidence it cites when that evidence matches the query too. Runs ranking.search over an
in-process index (no services)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, IndexManager
from retrieval_service.ranking import DEFAULT, rank_config_from, search
from shared.settings import Settings
from tests.helpers import ranking_index

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DIM = 8
NO_KEEP = dataclasses.replace(DEFAULT, dense_keep=0)
NO_GATE = dataclasses.replace(NO_KEEP, gate_hi=0.0)
NO_EVIDENCE = dataclasses.replace(DEFAULT, evidence_share=0.0)


def _index(items: list[tuple[int, str, np.ndarray, dict]]) -> IndexManager:
    return ranking_index(items, DIM, T0)


def _toward(i: int, cosine: float) -> np.ndarray:
    """A unit vector whose cosine with the query (axis 0) is `cosine`, otherwise along i."""
    v = np.zeros(DIM, dtype=np.float32)
    v[0], v[i] = cosine, np.sqrt(1 - cosine**2)
    return v


def _hits(index, query: str, cfg, top_k: int = 10, f: Filters | None = None):
    q = np.zeros(DIM, dtype=np.float32)
    q[0] = 1.0
    return search(index, "t", q, query, f or Filters(user_id="u"), top_k, cfg)


def _ids(index, query: str, cfg, **kw) -> list[int]:
    return [h.memory_id for h in _hits(index, query, cfg, **kw)]


# -- the lexical gate ------------------------------------------------------------------------

CUE = "is this satay sauce safe for me to eat"


def _cue_index() -> IndexManager:
    """The trigger shares no word with the cue and is the nearest by meaning (cosine 0.35);
    twelve turns share its words ("safe", "eat", "sauce") and are unrelated (cosine 0.02)."""
    items = [(pb.MEMORY_TYPE_CONVERSATION, "I'm allergic to peanuts.", _toward(1, 0.35), {})]
    items += [
        (pb.MEMORY_TYPE_CONVERSATION,
         f"the pottery class {i} said the glaze is safe, eat off it, sauce and all",
         _toward(i % 6 + 2, 0.02), {})
        for i in range(12)
    ]  # fmt: skip
    return _index(items)


def test_a_word_match_far_from_the_query_by_meaning_does_not_bury_the_nearest():
    index = _cue_index()
    assert _ids(index, CUE, NO_GATE, top_k=20).index(1) >= 10  # buried by shared words
    assert _ids(index, CUE, NO_KEEP)[0] == 1
    # The unrelated turns keep none of their lexical score below gate_lo.
    for h in _hits(index, CUE, NO_KEEP, top_k=20):
        if h.memory_id != 1:
            assert h.lexical == 0.0


def test_the_gate_leaves_a_word_match_near_the_query_alone():
    """At or above gate_hi a memory's lexical score is its own; between, a share of it."""
    near = _toward(1, DEFAULT.gate_hi + 0.05)
    half = _toward(2, (DEFAULT.gate_lo + DEFAULT.gate_hi) / 2)
    text = "the satay sauce is safe to eat"
    index = _index([(pb.MEMORY_TYPE_EVENT, text, near, {}), (pb.MEMORY_TYPE_EVENT, text, half, {})])
    on = {h.memory_id: h for h in _hits(index, CUE, NO_KEEP)}
    off = {h.memory_id: h for h in _hits(index, CUE, NO_GATE)}
    assert off[1].lexical > 0 and on[1].lexical == off[1].lexical and on[1].score == off[1].score
    assert abs(on[2].lexical - off[2].lexical / 2) < 1e-3


def test_no_gate_when_words_alone_are_asked_for():
    """alpha 0 is BM25 alone: the cosine must not come back in through the gate."""
    index = _cue_index()
    words = dataclasses.replace(NO_KEEP, alpha=0.0)
    assert _ids(index, CUE, words, top_k=20).index(1) >= 10
    assert _ids(index, CUE, words) == _ids(index, CUE, dataclasses.replace(words, gate_hi=0.0))


# -- a reflection and its evidence -----------------------------------------------------------

Q = "what does Priya take before exercise for her asthma"


def _reflection_index(evidence_cosine: float = 0.5) -> IndexManager:
    return _index([
        (pb.MEMORY_TYPE_REFLECTION,
         "Hard exercise can set off her asthma; she should warm up and carry her inhaler",
         _toward(1, 0.72), {"key": "exercise and asthma", "confidence": 0.8,
                            "evidence_memory_ids": ["2"]}),
        (pb.MEMORY_TYPE_EVENT, "Inhaler prescription: salbutamol, two puffs before exercise",
         _toward(2, evidence_cosine), {}),
        (pb.MEMORY_TYPE_EVENT, "Had an asthma attack during a badminton match",
         _toward(3, 0.45), {}),
    ])  # fmt: skip


def test_a_reflection_ranks_below_its_evidence_that_matches_the_query():
    index = _reflection_index()
    assert _ids(index, Q, NO_EVIDENCE)[:2] == [1, 2]  # the general conclusion first
    on = _hits(index, Q, DEFAULT)
    assert [h.memory_id for h in on[:3]] == [2, 1, 3]  # the specific answer, then it
    assert on[1].score < on[0].score and on[1].score > on[0].score - 1e-9
    # Nothing else moves.
    off = {h.memory_id: h.score for h in _hits(index, Q, NO_EVIDENCE)}
    assert {h.memory_id: h.score for h in on if h.memory_id != 1} == {
        k: v for k, v in off.items() if k != 1
    }


def test_a_reflection_stays_first_when_its_evidence_hardly_matches():
    """Evidence scoring below evidence_share of the reflection: the question is about the
    pattern ("what sets off her asthma"), not one of its instances."""
    index = _reflection_index(evidence_cosine=0.05)
    assert _ids(index, Q, DEFAULT)[0] == 1


def test_evidence_the_filters_drop_does_not_move_the_reflection():
    index = _reflection_index()
    f = Filters(user_id="u", types=frozenset([pb.MEMORY_TYPE_REFLECTION]))
    assert _ids(index, Q, DEFAULT, f=f) == [1]
    assert _hits(index, Q, DEFAULT, f=f)[0].score == _hits(index, Q, NO_EVIDENCE, f=f)[0].score


def test_the_rules_come_from_settings():
    cfg = rank_config_from(Settings(rank_gate_lo=0.1, rank_gate_hi=0.2, rank_evidence_share=0))
    assert (cfg.gate_lo, cfg.gate_hi, cfg.evidence_share) == (0.1, 0.2, 0.0)
    assert rank_config_from(Settings()) == DEFAULT
