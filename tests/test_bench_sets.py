"""The benchmark sets of issue 12 hold what they claim: small-scope answers name memories of
the persona, every persona has all six types, and no cue shares a word with its trigger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.cuetrigger import PAIRS, padded
from retrieval_service.lexical import tokenize

DATA = Path(__file__).resolve().parent.parent / "bench" / "data"
TYPES = {"background", "event", "conversation", "reflection", "skill", "fact"}


@pytest.mark.parametrize("name", ["smallscope.json", "smallscope-dev.json"])
def test_small_scope_sets_are_consistent(name):
    personas = json.loads((DATA / name).read_text())["personas"]
    users = [p["user"] for p in personas]
    assert len(set(users)) == len(users)
    for p in personas:
        labels = [m["label"] for m in p["memories"]]
        assert len(set(labels)) == len(labels)
        assert {m["type"] for m in p["memories"]} == TYPES
        for m in p["memories"]:
            assert set(m.get("evidence", [])) <= set(labels)
        for q in p["questions"]:
            assert q["answer"] and set(q["answer"]) <= set(labels), q


def test_dev_and_held_out_personas_differ():
    dev = {p["user"] for p in json.loads((DATA / "smallscope-dev.json").read_text())["personas"]}
    held = {p["user"] for p in json.loads((DATA / "smallscope.json").read_text())["personas"]}
    assert not dev & held


def test_no_cue_shares_a_word_with_its_trigger():
    pairs = json.loads(PAIRS.read_text())["pairs"]
    assert len(pairs) >= 30
    for p in pairs:
        assert not set(tokenize(p["trigger"])) & set(tokenize(p["cue"])), p


def test_each_trigger_is_one_more_turn_of_a_session():
    pairs = json.loads(PAIRS.read_text())["pairs"]
    convs = [
        {"sample_id": f"c{i}", "conversation": {
            "speaker_a": "Ann", "speaker_b": "Bo",
            **{f"session_{n}": [{"speaker": "Bo", "dia_id": f"D{n}:1", "text": "hi"}]
               for n in range(1, 6)},
        }}
        for i in range(3)
    ]  # fmt: skip
    out, where = padded(convs, pairs)
    assert convs[0]["conversation"]["session_1"] == [
        {"speaker": "Bo", "dia_id": "D1:1", "text": "hi"}
    ]  # fmt: skip  (a copy was changed)
    placed = []
    for ci, conv in enumerate(out):
        for key, turns in conv["conversation"].items():
            if key.startswith("session_"):
                assert turns[0]["dia_id"].startswith("D")  # appended after the session's turns
                placed += [(ci, t["dia_id"]) for t in turns if t["dia_id"].startswith("CT:")]
    assert sorted(placed) == sorted(where) and len(set(where)) == len(pairs)
