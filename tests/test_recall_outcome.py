"""An exchange's outcome (retrieval_service/index/outcome.py): a question about what was
done finds the user's turn that reports it, not the question or the advice before it; only
for such questions, and only when an assistant gave the advice. Also: "now" is a stop word.
Runs ranking.search over an in-process index (no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index import Filters, IndexManager, Smoothing
from retrieval_service.index.manager import smoothing_from
from retrieval_service.lexical import is_outcome_query, tokenize
from retrieval_service.ranking import DEFAULT, search
from shared.db.models import MemoryRecord
from shared.embedding import to_bytes
from shared.settings import Settings

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DIM = 8
ASKED = "My jollof keeps burning at the bottom of the big pot, any idea why?"
ADVICE = "Use a heavy-based pot, lower the heat after the boil and do not stir."
OUTCOME = "Borrowed my aunt's cast iron pot and it came out perfect."
FIX = "How did Sam fix the burnt jollof?"


def _unit(i: int, lean: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1.0
    v[0] += lean
    return v / np.linalg.norm(v)


def _exchange(
    speakers=("user", "assistant", "user"),
    roles=("", "", ""),
    filler: int = 0,
    lean: float = 1.2,
    outcome_text: str = OUTCOME,
    **kw,
) -> IndexManager:
    """One session: the question (closest to the query), the advice, the outcome (farthest),
    then an unrelated event, and `filler` events nearer the query than the outcome."""
    kw.setdefault("ann_threshold", 10**9)
    index = IndexManager(None, DIM, embed_model="test", **kw)
    turns = [(ASKED, _unit(1, lean)), (ADVICE, _unit(2, 1.0)), (outcome_text, _unit(3, 0.6))]
    for i, ((text, vec), who, role) in enumerate(zip(turns, speakers, roles, strict=True)):
        index._put(_record(i + 1, text, vec, i, {"speaker": who, "role": role}))
    index._put(_record(4, "Ran a 10k along the canal", _unit(4, 0.5), None, {}))
    rng = np.random.default_rng(7)
    for i in range(filler):  # cosines 0.62-0.83: above the outcome's, below the question's
        v = _unit(5 + i % 3, float(rng.uniform(0.8, 1.5)))
        index._put(_record(5 + i, f"market stall note {i}", v, None, {}))
    return index


def _record(i: int, text: str, vec, turn: int | None, attrs: dict) -> MemoryRecord:
    conv = turn is not None
    rec = MemoryRecord(
        id=i, tenant="t", user_id="u", agent_id="", session_id="s1" if conv else "",
        type=pb.MEMORY_TYPE_CONVERSATION if conv else pb.MEMORY_TYPE_EVENT, content=text,
        attributes={k: v for k, v in attrs.items() if v}, importance=0.5, source={},
        create_time=T0 + timedelta(minutes=i), occur_time=None, expire_time=None,
        turn_index=turn, etag="e", current=True, revision=1, conflicted=False,
    )  # fmt: skip
    rec.embedding = to_bytes(np.asarray(vec, dtype=np.float32))
    return rec


def _ids(index: IndexManager, query: str, f: Filters | None = None) -> list[int]:
    hits = search(index, "t", _unit(0, 0.0), query, f or Filters(user_id="u"), 10, DEFAULT)
    return [h.memory_id for h in hits]


def test_a_question_about_what_was_done_finds_the_outcome_turn():
    off = _exchange(smoothing=Smoothing(outcome=0.0))
    assert _ids(off, FIX)[:3] == [1, 2, 3]  # without the rule: the question, the advice
    assert _ids(_exchange(), FIX)[0] == 3
    # The advice still answers a question about the advice.
    assert _ids(_exchange(), "Why does the jollof burn at the bottom of the pot?")[0] != 3


def test_the_outcome_takes_at_least_its_question_s_scores_and_keeps_its_own_above_them():
    on = {h.memory_id: h for h in search(
        _exchange(), "t", _unit(0, 0.0), FIX, Filters(user_id="u"), 10, DEFAULT)}  # fmt: skip
    off = {h.memory_id: h for h in search(
        _exchange(smoothing=Smoothing(outcome=0.0)), "t", _unit(0, 0.0), FIX,
        Filters(user_id="u"), 10, DEFAULT)}  # fmt: skip
    assert on[3].dense > off[3].dense and on[3].lexical > off[3].lexical
    assert on[3].lexical >= off[1].lexical  # the question's own lexical score
    for i in (1, 2, 4):  # nothing else moves
        assert on[i].score == off[i].score


def test_an_exchange_between_people_is_left_alone():
    people = _exchange(speakers=("ana", "ben", "ana"))
    assert _ids(people, FIX)[:3] == [1, 2, 3]
    # An assistant by role (with a name as speaker) counts.
    named = _exchange(speakers=("ana", "max", "ana"), roles=("user", "assistant", "user"))
    assert _ids(named, FIX)[0] == 3
    # The answer by the asker's own second turn is no exchange.
    same = _exchange(speakers=("user", "user", "user"))
    assert _ids(same, FIX)[:3] == [1, 2, 3]


def test_a_new_question_after_the_advice_is_no_outcome():
    index = _exchange(outcome_text="Thanks! And what about the rice for the party?")
    assert _ids(index, FIX)[:3] == [1, 2, 3]


def test_the_outcome_needs_its_exchange_to_pass_the_filters():
    """A filter that drops the question (a time range starting after it) drops the rule."""
    index = _exchange()
    f = Filters(user_id="u", start=(T0 + timedelta(minutes=2)).timestamp())
    assert 1 not in _ids(index, FIX, f)
    on = {h.memory_id: h.score for h in search(index, "t", _unit(0, 0.0), FIX, f, 10, DEFAULT)}
    off_index = _exchange(smoothing=Smoothing(outcome=0.0))
    off = {h.memory_id: h.score for h in search(off_index, "t", _unit(0, 0.0), FIX, f, 10, DEFAULT)}
    assert on == off


def test_the_graph_path_scores_the_outcome_as_the_exact_path_does():
    """Above the graph threshold, with no word of the query in the exchange, the question is
    among the nearest rows and the outcome is not: it competes as the turn two after it."""
    query = "How did Sam sort out that dinner disaster?"
    exact = _exchange(filler=300, lean=3.0)
    graph = _exchange(filler=300, lean=3.0, ann_threshold=50)
    (part,) = graph.partitions.values()
    part.build_ann()
    f = Filters(user_id="u")
    by_exact = search(exact, "t", _unit(0, 0.0), query, f, 10, DEFAULT)
    by_graph = search(graph, "t", _unit(0, 0.0), query, f, 10, DEFAULT)
    assert by_graph[0].memory_id == 3 == by_exact[0].memory_id
    assert [(h.memory_id, h.score) for h in by_graph] == [(h.memory_id, h.score) for h in by_exact]


def test_outcome_questions_and_the_setting():
    assert is_outcome_query(FIX)
    assert is_outcome_query("What annealing temperature worked for the PCR?")
    assert is_outcome_query("what did Priya buy for her mum")  # a question word first
    assert not is_outcome_query("Why does the jollof burn?")
    assert not is_outcome_query("the plan that worked")  # no question: a lookup by words
    assert smoothing_from(Settings(rank_outcome=0.0)).outcome == 0.0
    assert smoothing_from(Settings()) == Smoothing()  # the settings' defaults are the code's


def test_now_is_a_stop_word():
    """ "Where does Sam live now?" matched "now that beef costs went up" on its one word."""
    assert tokenize("where does sam live now") == tokenize("where does sam live")
