"""GetContext: the active session's newest turns always fit, the hot tail is cached at
ingest, and the budget is counted in tokens of a real tokenizer."""

from __future__ import annotations

from memlake.client import scope
from shared.tails import session_tail_key
from shared.tokens import _tokenizer, count_tokens
from tests.helpers import background, turn


def test_newest_session_turns_fit_a_small_budget(client):
    client.remember(background("name", "The user is Ada, who sails"))
    for i in range(25):  # an older session full of turns relevant to the intent
        client.remember(turn(f"Ada planned the sailing trip to Lisbon, part {i}", session="old"))
    last = None
    for text in ["shall we pick up the sailing plan?", "yes, book the Lisbon boat today"]:
        last = client.remember(turn(text, session="now"))
    r = client.context(
        scope=scope("u1", session_id="now"),
        intent="sailing trip to Lisbon",
        token_budget=80,
        min_seq=last.seq,
    )
    assert "yes, book the Lisbon boat today" in r.rendered  # the newest turn
    assert sum(i.tokens for i in r.items) <= 80
    tail = [i for i in r.items if i.reason == "session_tail"]
    assert tail and tail[0].memory.content == "yes, book the Lisbon boat today"
    # Shown in turn order under "## Current session".
    section = r.rendered.split("## Current session\n", 1)[1]
    if "shall we pick up" in section:
        assert section.index("shall we pick up") < section.index("yes, book")


def test_session_tail_is_cached_at_ingest(suite, client):
    user = "tailuser"
    for i in range(3):
        client.remember(turn(f"turn number {i}", session="hot", user=user))
    tenant = client.whoami().tenant
    cached = suite.runtime.cache.get_tail(session_tail_key(tenant, user, "", "hot"))
    assert cached is not None, "no GetContext has run: ingest must have filled the tail"
    from memlake.v1 import memory_pb2 as pb

    assert [pb.Memory.FromString(b).content for b in cached] == [
        f"turn number {i}" for i in range(3)
    ]


def test_budget_counts_wordpiece_tokens(client):
    assert _tokenizer() is not None  # the embedder's tokenizer is installed
    text = "Supercalifragilisticexpialidocious antidisestablishmentarianism"
    wp = len(_tokenizer().encode(text, add_special_tokens=False).ids)
    assert count_tokens(text) == wp and wp != -(-len(text) // 4)
    for i in range(10):
        client.remember(background(f"k{i}", f"A longer profile attribute number {i} " * 4))
    r = client.context(scope=scope("u1"), intent="profile", token_budget=60)
    assert r.token_count == count_tokens(r.rendered) and r.token_count <= 60


def test_token_count_of_parts_equals_the_rendered_blocks_count():
    """assemble adds up the counts of its lines and headers instead of encoding the whole
    block again: the sum must be exactly the block's own count."""
    from datetime import UTC, datetime

    from memlake.v1 import memory_pb2 as pb
    from retrieval_service.context import Candidate, assemble
    from shared.tokens import _count

    cands = []
    for i in range(6):
        m = pb.Memory(
            id=str(i + 1), type=pb.MEMORY_TYPE_BACKGROUND, content=f"Zoë’s café n°{i} " * 9
        )
        m.background.key = f"k{i}"
        cands.append(Candidate(m, 1.0, "background"))
    for i in range(8):
        m = pb.Memory(id=str(100 + i), type=pb.MEMORY_TYPE_EVENT, content=f"trip-{i} to Kraków!?")
        m.occur_time.FromDatetime(datetime(2024, 5, i + 1, tzinfo=UTC))
        cands.append(Candidate(m, 0.5, "relevant", conflicted=i % 2 == 0))
    for i in range(3):
        m = pb.Memory(id=str(200 + i), type=pb.MEMORY_TYPE_CONVERSATION, content=f"turn {i}…")
        m.conversation.speaker, m.conversation.turn_index = "Ada", i
        cands.append(Candidate(m, 0.0, "session_tail"))
    sections = []
    for budget in (40, 90, 150, 400, 2000):
        chosen, rendered, total = assemble(cands, budget)
        assert total == _count(rendered) and total <= budget
        sections.append(rendered.count("## "))
    assert max(sections) == 3  # every kind of section, headers included, at some budget
