"""Ranking weights come from settings and reach the running service."""

from __future__ import annotations

from memlake.client import scope
from tests.conftest import settings_for, start_suite
from tests.helpers import turn


def _speakers_ranked(tmp_path, name: str, **weights) -> list[str]:
    suite = start_suite(settings_for("sqlite", tmp_path / name, **weights), "sqlite")
    try:
        with suite.client("acme") as c:
            last = None
            for text, who in [
                ("Bob adopted a puppy from the shelter", "Ann"),  # the better text match
                ("I finally got one, so happy", "Bob"),  # spoken by the one the query names
                ("The weather is nice today", "Cid"),
            ]:  # one session each: no windows or neighbours between them
                last = c.remember(turn(text, session=who, speaker=who))
            res = c.search("What did Bob adopt?", scope=scope("u1"), min_seq=last.seq)
            return [x.memory.conversation.speaker for x in res.results]
    finally:
        suite.stop()


def test_speaker_boost_setting_reaches_the_service(tmp_path):
    # alpha 0: the lexical channel alone (the test embedder's cosines are noise).
    assert _speakers_ranked(tmp_path, "off", rank_alpha=0.0, rank_speaker_boost=0.0) == [
        "Ann", "Bob", "Cid"]  # fmt: skip
    assert _speakers_ranked(tmp_path, "on", rank_alpha=0.0, rank_speaker_boost=5.0)[0] == "Bob"


def _qa_ranked(tmp_path, name: str, **weights) -> list[str]:
    suite = start_suite(settings_for("sqlite", tmp_path / name, **weights), "sqlite")
    try:
        with suite.client("acme") as c:
            c.remember(turn("When does the swimming pool open on Sunday?", session="qa"))
            c.remember(turn("Sunday opening is at nine for the pool", session="qa"))
            last = c.remember(turn("I went swimming", session="other"))  # the least relevant
            res = c.search("When does the swimming pool open?", scope=scope("u1"), min_seq=last.seq)
            return [x.memory.content for x in res.results]
    finally:
        suite.stop()


def test_an_answered_question_ranks_below_its_answer(tmp_path):
    """The question turn shares the query's words; the answer after it is what is wanted."""
    words_only = dict(
        rank_alpha=0.0, rank_window_weight=0.0, rank_lexical_prev=0.0, rank_echo_penalty=0.0
    )
    off = _qa_ranked(tmp_path, "off", rank_question_factor=1.0, **words_only)
    assert off[0].startswith("When does")  # on its own words the question wins
    on = _qa_ranked(tmp_path, "on", rank_question_factor=0.2, **words_only)
    assert on[0].startswith("Sunday opening")
