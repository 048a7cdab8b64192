"""Batched appends (EVENT, CONVERSATION) are written in a few statements: turn numbers,
change-log order and request_id replays must be as item-by-item writes give them."""

from __future__ import annotations

from memlake.client import scope
from memlake.v1 import ingest_service_pb2 as ipb
from tests.helpers import background, event, turn


def _req(m, rid: str = "") -> ipb.StreamRememberRequest:
    return ipb.StreamRememberRequest(memory=m, request_id=rid)


def test_batched_turns_are_numbered_in_order_per_session(client):
    first = client.stream_remember([_req(turn(f"a{i}", session="s1", user="bk")) for i in range(3)])
    reqs = []
    for i in range(10):
        reqs.append(_req(turn(f"t{i}", session=f"s{i % 2}", user="bk"), f"rid-{i}"))
    reqs.insert(4, _req(background("name", "Bea", user="bk")))  # a keyed item in between
    resp = client.stream_remember(reqs)
    assert resp.failed == 0 and first.failed == 0
    turns = {r.memory.content: r.memory.conversation.turn_index for r in resp.results}
    assert [turns[f"t{i}"] for i in range(0, 10, 2)] == [0, 1, 2, 3, 4]  # s0 was new
    assert [turns[f"t{i}"] for i in range(1, 10, 2)] == [3, 4, 5, 6, 7]  # s1 had 3 turns
    seqs = [r.seq for r in resp.results]
    assert len(set(seqs)) == len(seqs)
    hits = client.search("t7", scope=scope("bk"), min_seq=resp.seq, top_k=20)
    assert "t7" in [h.memory.content for h in hits.results]

    # The same stream again: every item answers as the first time, nothing new is stored.
    again = client.stream_remember(reqs)
    assert [r.memory.id for r in again.results] == [r.memory.id for r in resp.results]
    assert len(list(client.list_all(scope=scope("bk"), page_size=100))) == 3 + 11

    # A request_id reused for other content fails alone; one repeated in a batch is one write.
    changed = _req(turn("something else", session="s0", user="bk"), "rid-0")
    twice = event("twice", user="bk")
    dup = [_req(twice, "rid-dup"), _req(twice, "rid-dup")]
    mixed = client.stream_remember([changed, *dup, _req(event("fresh", user="bk"))])
    assert mixed.results[0].error.code == 6  # ALREADY_EXISTS
    assert mixed.results[1].memory.id == mixed.results[2].memory.id, mixed.results[2]
    assert not mixed.results[3].HasField("error")


def test_a_long_stream_is_written_chunk_by_chunk_in_order(client):
    """More than two chunks (the next is embedded while the current one is written)."""
    from ingest_service.servicer import STREAM_CHUNK

    n = 2 * STREAM_CHUNK + 17
    resp = client.stream_remember([event(f"long stream item {i}", user="ls") for i in range(n)])
    assert resp.accepted == n and resp.failed == 0
    assert [r.index for r in resp.results] == list(range(n))
    assert [r.memory.content for r in resp.results] == [f"long stream item {i}" for i in range(n)]
    ids = [int(r.memory.id) for r in resp.results]
    assert ids == sorted(ids) and len(set(ids)) == n
