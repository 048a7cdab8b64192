"""Each type's write semantics and validation (DESIGN.md table), on both backends."""

from __future__ import annotations

import uuid

from memlake.client import scope
from memlake.v1 import memory_pb2 as pb
from tests.helpers import background, event, expect_error, reflection, skill, turn


def test_background_upserts_by_key_keeping_history(client):
    r1 = client.remember(background("language", "Prefers English"))
    r2 = client.remember(background("language", "Prefers German"))
    assert r2.outcome == pb.WRITE_OUTCOME_UPDATED and r2.memory.id != r1.memory.id
    r3 = client.remember(background("language", "Prefers German"))
    assert r3.outcome == pb.WRITE_OUTCOME_DUPLICATE and r3.memory.id == r2.memory.id
    cur = list(client.list_all(types=[pb.MEMORY_TYPE_BACKGROUND], scope=scope("u1")))
    assert [m.content for m in cur] == ["Prefers German"]
    hist = list(
        client.list_all(types=[pb.MEMORY_TYPE_BACKGROUND], scope=scope("u1"), include_history=True)
    )
    assert {(m.content, m.current) for m in hist} == {
        ("Prefers English", False),
        ("Prefers German", True),
    }
    # Another user's key is a different item.
    r4 = client.remember(background("language", "Prefers Dutch", user="u2"))
    assert r4.outcome == pb.WRITE_OUTCOME_CREATED
    # Forgetting the current revision forgets the item, history included.
    client.forget(r2.memory.id)
    assert (
        list(
            client.list_all(
                types=[pb.MEMORY_TYPE_BACKGROUND], scope=scope("u1"), include_history=True
            )
        )
        == []
    )


def test_reflection_needs_evidence_and_confidence(client):
    ev = client.remember(event("User asked for a shorter answer")).memory.id
    with expect_error("INVALID_ARGUMENT", "memory.reflection.evidence_memory_ids"):
        client.remember(reflection("answer_length", "Prefers short answers", 0.7, []))
    with expect_error("INVALID_ARGUMENT", "memory.reflection.confidence"):
        client.remember(reflection("answer_length", "Prefers short answers", 1.5, [ev]))
    with expect_error("INVALID_ARGUMENT", "memory.reflection.evidence_memory_ids[1]"):
        client.remember(reflection("answer_length", "Prefers short answers", 0.7, [ev, "999999"]))
    r1 = client.remember(reflection("answer_length", "Prefers short answers", 0.6, [ev]))
    r2 = client.remember(reflection("answer_length", "Prefers very short answers", 0.9, [ev]))
    assert r2.outcome == pb.WRITE_OUTCOME_UPDATED
    assert r2.memory.reflection.confidence > 0.89
    assert list(r2.memory.reflection.evidence_memory_ids) == [ev]
    assert not client.get(r1.memory.id).current


def test_skill_is_versioned_by_name(client):
    with expect_error("INVALID_ARGUMENT", "memory.skill.steps"):
        client.remember(skill("deploy", []))
    with expect_error("INVALID_ARGUMENT", "memory.skill.name"):
        client.remember(skill("", ["x"]))
    r1 = client.remember(skill("deploy", ["build", "push"]))
    r2 = client.remember(skill("deploy", ["build", "test", "push"]))
    assert (r1.memory.skill.revision, r2.memory.skill.revision) == (1, 2)
    assert list(r2.memory.skill.steps) == ["build", "test", "push"]
    revs = [
        m.skill.revision
        for m in client.list_all(
            types=[pb.MEMORY_TYPE_SKILL], scope=scope("u1"), include_history=True
        )
    ]
    assert sorted(revs) == [1, 2]


def test_event_needs_occur_time_and_is_append_only(client):
    with expect_error("INVALID_ARGUMENT", "memory.occur_time"):
        client.remember(pb.Memory(type=pb.MEMORY_TYPE_EVENT, content="x", scope=scope("u1")))
    a = client.remember(event("Same text"))
    b = client.remember(event("Same text"))
    assert a.memory.id != b.memory.id
    assert b.outcome == pb.WRITE_OUTCOME_CREATED


def test_conversation_appends_in_turn_order(client):
    s = f"s-{uuid.uuid4().hex[:6]}"
    with expect_error("INVALID_ARGUMENT", "memory.scope.session_id"):
        client.remember(turn("hello", session=""))
    ids = [client.remember(turn(f"turn {i}", session=s)).memory for i in range(5)]
    assert [m.conversation.turn_index for m in ids] == [0, 1, 2, 3, 4]
    listed = list(
        client.list_all(types=[pb.MEMORY_TYPE_CONVERSATION], scope=scope("u1", session_id=s))
    )
    assert [m.content for m in listed] == [f"turn {i}" for i in range(5)]
    other = client.remember(turn("first of another session", session=s + "x"))
    assert other.memory.conversation.turn_index == 0


def test_importance_and_content_limits(client):
    with expect_error("INVALID_ARGUMENT", "memory.importance"):
        client.remember(event("x", importance=2.0))
    with expect_error("INVALID_ARGUMENT", "memory.content"):
        client.remember(event("x" * 40000))
    # A FACT can be forgotten (it erases the fact key; see tests/test_erasure.py).
    m = pb.Memory(type=pb.MEMORY_TYPE_FACT, content="f", scope=scope("u1"))
    m.fact.subject, m.fact.predicate, m.fact.value = "s", "p", "v"
    client.forget(client.remember(m).memory.id)
    with expect_error("NOT_FOUND"):
        client.get_fact("s", "p", scope=scope("u1"))
