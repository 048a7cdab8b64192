"""Issue 12's ranking rules: a memory that only echoes the query ranks below the one that
answers, the best match by meaning alone is never buried by shared words, and a how-to
question finds the SKILL. Runs ranking.search over an in-process index (no services)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, IndexManager
from retrieval_service.lexical import is_howto_query, is_question
from retrieval_service.ranking import DEFAULT, rank_config_from, search
from shared.settings import Settings
from tests.helpers import ranking_index

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DIM = 8
OFF = dataclasses.replace(DEFAULT, echo_penalty=0.0, dense_keep=0, howto_boost=0.0)


def _index(items: list[tuple[int, str, np.ndarray, dict]]) -> IndexManager:
    return ranking_index(items, DIM, T0)


def _unit(i: int, lean: float = 0.0) -> np.ndarray:
    """A unit vector along axis i, leaning towards axis 0 (the query's) by `lean`."""
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    v[0] += lean
    return v / np.linalg.norm(v)


def _ids(index, query: str, cfg, top_k: int = 10, f: Filters | None = None) -> list[int]:
    hits = search(index, "t", _unit(0), query, f or Filters(user_id="u"), top_k, cfg)
    return [h.memory_id for h in hits]


def test_a_memory_that_echoes_the_question_ranks_below_the_answer():
    """Same cosine; the user's question shares every word with the query, the answer few."""
    index = _index([
        (pb.MEMORY_TYPE_CONVERSATION, "Why is my PCR giving no bands?", _unit(1, 1.0), {}),
        (pb.MEMORY_TYPE_CONVERSATION,
         "The annealing temperature is too high: run a gradient, PCR bands come back",
         _unit(2, 1.0), {}),
    ])  # fmt: skip
    q = "why is the PCR giving no bands"
    assert _ids(index, q, OFF) == [1, 2]  # on its words the question wins
    assert _ids(index, q, DEFAULT) == [2, 1]
    # The penalty scales the score; nothing else moves.
    off = {h.memory_id: h.score for h in search(index, "t", _unit(0), q, Filters(), 10, OFF)}
    on = {h.memory_id: h.score for h in search(index, "t", _unit(0), q, Filters(), 10, DEFAULT)}
    assert on[2] == off[2] and on[1] < off[1] * (1 - DEFAULT.echo_penalty) + 1e-6


def test_a_background_naming_only_the_subject_ranks_below_the_fact():
    index = _index([
        (pb.MEMORY_TYPE_BACKGROUND, "Has a cat", _unit(1, 1.2), {"key": "pets"}),
        (pb.MEMORY_TYPE_EVENT, "Adopted the cat Pepper, a grey tabby, in 2022",
         _unit(2, 1.0), {}),
    ])  # fmt: skip
    assert _ids(index, "what is the cat called", OFF)[0] == 1
    assert _ids(index, "what is the cat called", DEFAULT)[0] == 2


def test_an_echo_penalty_is_applied_to_every_returned_memory():
    """Twenty echoes outscore five answers before the penalty; with top_k 2 the first look
    covers two echoes, so the answers rise from further down and are looked at too. Each
    returned score equals the one a search returning everything gives it."""
    items = [(pb.MEMORY_TYPE_EVENT, "swimming pool opening", _unit(1, 3.0), {})] * 20
    items += [(pb.MEMORY_TYPE_EVENT, f"opens at nine on day {i} for lanes", _unit(2, 1.0), {})
              for i in range(5)]  # fmt: skip
    index = _index(items)
    q = "when is the swimming pool opening?"
    every = {h.memory_id: h.score for h in search(index, "t", _unit(0), q, Filters(), 100)}
    two = search(index, "t", _unit(0), q, Filters(), 2, dataclasses.replace(DEFAULT, dense_keep=0))
    assert {h.memory_id for h in two} <= set(range(21, 26))
    for h in two:
        assert abs(h.score - every[h.memory_id]) < 1e-9


def test_the_best_match_by_meaning_keeps_a_place_in_the_first_ten():
    """The trigger shares no word with the cue but is the closest by cosine; twelve turns
    sharing the cue's words bury it on the fused score."""
    cue = "my knee has been bad since the weekend"
    items = [(pb.MEMORY_TYPE_CONVERSATION, "I signed up for the trail race on Saturday",
              _unit(1, 1.0), {})]  # fmt: skip
    items += [
        (pb.MEMORY_TYPE_CONVERSATION,
         f"{who} weekend away at the coast with cousins {i} was lovely, the weather bad",
         _unit(i % 6 + 2, 0.9), {})
        for i, who in enumerate(["my", "our", "her", "his", "the", "that"] * 2)
    ]  # fmt: skip
    index = _index(items)
    off = _ids(index, cue, dataclasses.replace(DEFAULT, dense_keep=0), top_k=50)
    assert off.index(1) >= 10  # buried
    on = search(index, "t", _unit(0), cue, Filters(user_id="u"), 50, DEFAULT)
    ranked = [h.memory_id for h in on]
    assert ranked.index(1) == 9  # the last of the first ten places
    assert sorted(ranked) == sorted(off)  # the same memories, one moved up
    # It keeps its own score, the one it has without the rule.
    plain = search(index, "t", _unit(0), cue, Filters(user_id="u"), 50, OFF)
    assert next(h.score for h in on if h.memory_id == 1) == next(
        h.score for h in plain if h.memory_id == 1
    )
    # Not under a min_score cut, and not when only a few results are asked for.
    cut = search(index, "t", _unit(0), cue, Filters(user_id="u"), 50, DEFAULT, min_score=-1.0)
    assert [h.memory_id for h in cut] == off
    assert 1 not in _ids(index, cue, DEFAULT, top_k=2)


def test_a_how_to_question_finds_the_skill():
    index = _index([
        (pb.MEMORY_TYPE_BACKGROUND, "Plays badminton on Wednesdays", _unit(1, 1.0),
         {"key": "sport"}),
        (pb.MEMORY_TYPE_SKILL, "Warm-up routine", _unit(2, 0.9),
         {"name": "pre-match", "steps": ["jog five minutes", "easy rallies"]}),
    ])  # fmt: skip
    assert _ids(index, "how should I warm up before badminton", OFF)[0] == 1
    assert _ids(index, "how should I warm up before badminton", DEFAULT)[0] == 2
    assert is_howto_query("How do I cast an agarose gel?")
    assert is_howto_query("what is the way to... how to reset it")
    assert not is_howto_query("How did Tom fix the bike?")
    assert not is_howto_query("How many dogs does Maria have?")


def test_the_new_weights_come_from_settings():
    cfg = rank_config_from(
        Settings(rank_echo_penalty=0.2, rank_echo_share=0.4, rank_dense_keep=0,
                 rank_howto_boost=0.0)
    )  # fmt: skip
    assert (cfg.echo_penalty, cfg.echo_share, cfg.dense_keep, cfg.howto_boost) == (
        0.2, 0.4, 0, 0.0)  # fmt: skip
    assert rank_config_from(Settings()) == DEFAULT  # the settings' defaults are the code's


def test_a_lookup_by_words_keeps_the_memory_that_says_them():
    """The echo penalty is for questions: "buy milk" looks for the note that says it."""
    index = _index([
        (pb.MEMORY_TYPE_EVENT, "Buy milk", _unit(1, 1.0), {}),
        (pb.MEMORY_TYPE_EVENT, "Bought oat milk at the corner shop yesterday", _unit(2, 1.2), {}),
    ])  # fmt: skip
    assert _ids(index, "buy milk", DEFAULT)[0] == 1
    assert _ids(index, "should I buy milk?", DEFAULT)[0] == 2  # a question: the echo drops
    assert is_question("what is the cat called") and is_question("Is it open?")
    assert not is_question("buy milk") and not is_question("my knee has been bad")
