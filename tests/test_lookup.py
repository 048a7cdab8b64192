"""GetMemoryByKey: the current BACKGROUND/REFLECTION by key and SKILL by name."""

from __future__ import annotations

from datetime import UTC, datetime

from memlake import memories
from memlake.client import scope
from tests.helpers import expect_error


def test_exact_lookup_returns_the_current_revision(client):
    sc = scope("ann")
    client.remember(memories.background("language", "Ann speaks German", user="ann"))
    new = client.remember(memories.background("language", "Ann speaks Dutch", user="ann"))
    got = client.get_by_key("background", "language", scope=sc)
    assert got.id == new.memory.id and got.content == "Ann speaks Dutch"

    client.remember(memories.skill("deploy", "Deploy v1", steps=["a"], user="ann"))
    s2 = client.remember(memories.skill("deploy", "Deploy v2", steps=["a", "b"], user="ann"))
    got = client.get_by_key("skill", "deploy", scope=sc)
    assert got.id == s2.memory.id and list(got.skill.steps) == ["a", "b"]
    assert got.skill.revision == 2

    ev = client.remember(memories.event("Ann moved", user="ann", occurred_at=datetime.now(UTC)))
    rf = client.remember(
        memories.reflection(
            "moves", "Ann moves often", confidence=0.6, evidence=[ev.memory.id], user="ann"
        )
    )
    assert client.get_by_key("reflection", "moves", scope=sc).id == rf.memory.id
    # Another user's scope does not see it.
    with expect_error("NOT_FOUND"):
        client.get_by_key("skill", "deploy", scope=scope("someone-else"))


def test_exact_lookup_errors(client):
    with expect_error("INVALID_ARGUMENT", "type"):
        client.get_by_key("event", "x", scope=scope("ann"))
    with expect_error("INVALID_ARGUMENT", "key"):
        client.get_by_key("background", "  ", scope=scope("ann"))
