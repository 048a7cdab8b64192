"""Each RPC over a real gRPC channel, on SQLite and on Postgres + Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from memlake.client import scope, ts
from memlake.v1 import ingest_service_pb2 as ipb
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import retrieval_service_pb2 as rpb
from tests.helpers import background, event, expect_error, turn


def test_remember_get_and_forget(client):
    r = client.remember(event("Deployed the billing service v2"))
    assert r.outcome == pb.WRITE_OUTCOME_CREATED
    assert r.seq > 0 and r.memory.id.isdigit()
    got = client.get(r.memory.id)
    assert got.content == "Deployed the billing service v2"
    assert got.type == pb.MEMORY_TYPE_EVENT and got.current and got.etag
    seq = client.forget(r.memory.id)
    assert seq > r.seq
    with expect_error("NOT_FOUND"):
        client.get(r.memory.id)
    with expect_error("NOT_FOUND"):
        client.forget(r.memory.id)


def test_remember_batch_is_atomic_per_item(client):
    bad = pb.Memory(type=pb.MEMORY_TYPE_EVENT, content="no time", scope=scope("u1"))
    resp = client.remember_batch([event("one"), bad, event("three")])
    assert [r.index for r in resp.results] == [0, 1, 2]
    assert not resp.results[0].HasField("error") and not resp.results[2].HasField("error")
    err = resp.results[1].error
    assert err.code == 3 and err.field == "requests[1].memory.occur_time"
    ids = {m.id for m in client.list_all(scope=scope("u1"))}
    assert ids == {resp.results[0].memory.id, resp.results[2].memory.id}
    assert resp.seq == max(resp.results[0].seq, resp.results[2].seq)


def test_stream_remember_bulk(client):
    items = [event(f"bulk item {i}") for i in range(150)]
    items.insert(70, pb.Memory(type=pb.MEMORY_TYPE_EVENT, content="", scope=scope("u1")))
    resp = client.stream_remember(items)
    assert resp.accepted == 150 and resp.failed == 1
    assert resp.results[70].error.field == "item[70].memory.content"
    assert len(list(client.list_all(scope=scope("u1"), page_size=40))) == 150


def test_list_memories_filters_and_pages(client):
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(7):
        client.remember(event(f"e{i}", when=t0 + timedelta(days=i)))
    client.remember(background("name", "Name is Una"))
    client.remember(event("other user", user="u2", when=t0))
    resp = client.list(types=[pb.MEMORY_TYPE_EVENT], scope=scope("u1"), page_size=3)
    assert [m.content for m in resp.memories] == ["e0", "e1", "e2"]
    pages = [
        m.content
        for m in client.list_all(types=[pb.MEMORY_TYPE_EVENT], scope=scope("u1"), page_size=3)
    ]
    assert pages == [f"e{i}" for i in range(7)]
    req_range = pb.TimeRange(
        start_time=ts(t0 + timedelta(days=2)), end_time=ts(t0 + timedelta(days=4))
    )
    r = client.retrieval.ListMemories(
        rpb.ListMemoriesRequest(scope=scope("u1"), time_range=req_range), metadata=client.metadata
    )
    assert [m.content for m in r.memories] == ["e2", "e3"]
    with expect_error("INVALID_ARGUMENT", "page_token"):
        client.list(scope=scope("u1"), page_token="garbage!")


def test_search_ranks_and_scores(client):
    client.remember(event("The user adopted a golden retriever puppy named Max"))
    client.remember(event("Quarterly taxes were filed with the accountant"))
    r = client.remember(event("Max the dog learned to fetch a frisbee"))
    resp = client.search("dog named max", scope=scope("u1"), top_k=2, min_seq=r.seq)
    assert len(resp.results) == 2
    assert all("Max" in x.memory.content for x in resp.results)
    top = resp.results[0]
    assert top.score > 0 and top.parts.lexical > 0
    assert resp.index_seq >= r.seq
    with expect_error("INVALID_ARGUMENT", "query"):
        client.search("  ", scope=scope("u1"))
    with expect_error("INVALID_ARGUMENT", "top_k"):
        client.search("x", top_k=5000)


def test_get_context_background_first_within_budget(client):
    client.remember(background("name", "The user's name is Ada"))
    client.remember(background("language", "Ada prefers answers in French"))
    for i in range(30):
        client.remember(event(f"Ada worked on the compiler project, milestone {i}"))
    r = client.remember(turn("Let's continue the compiler work", session="s1"))
    resp = client.context(
        scope=scope("u1", session_id="s1"),
        intent="compiler project",
        token_budget=120,
        min_seq=r.seq,
    )
    assert resp.token_count <= 120
    assert sum(i.tokens for i in resp.items) <= 120
    reasons = [i.reason for i in resp.items]
    assert reasons[:2] == ["background", "background"]
    assert "relevant" in reasons
    assert resp.rendered.startswith("## Background")
    assert "Ada prefers answers in French" in resp.rendered


def test_facts_through_ingest_and_versioning(client):
    m = pb.Memory(type=pb.MEMORY_TYPE_FACT, content="Ada lives in Paris", scope=scope("u1"))
    m.fact.subject, m.fact.predicate, m.fact.value = "Ada", "lives_in", "Paris"
    r1 = client.remember(m)
    assert r1.outcome == pb.WRITE_OUTCOME_CREATED
    assert r1.memory.type == pb.MEMORY_TYPE_FACT and r1.memory.fact.status == pb.FACT_STATUS_CURRENT
    r2 = client.assert_fact("ada", "Lives In", "Berlin", scope=scope("u1"))
    assert r2.outcome == pb.WRITE_OUTCOME_UPDATED and r2.previous.value == "Paris"
    cur = client.get_fact("ADA ", "lives_in", scope=scope("u1"))
    assert cur.fact.value == "Berlin" and not cur.conflicted
    hist = client.fact_history("ada", "lives_in", scope=scope("u1"))
    assert [(v.value, v.status) for v in hist][-1] == ("Berlin", pb.FACT_STATUS_CURRENT)
    assert any(v.value == "Paris" and v.status == pb.FACT_STATUS_SUPERSEDED for v in hist)
    # Search returns only the current version by default.
    res = client.search(
        "where does ada live", scope=scope("u1"), min_seq=r2.seq, types=[pb.MEMORY_TYPE_FACT]
    )
    assert [x.memory.fact.value for x in res.results] == ["Berlin"]
    with expect_error("NOT_FOUND"):
        client.get_fact("nobody", "lives_in", scope=scope("u1"))


def test_bad_input_gets_named_field(client):
    with expect_error("INVALID_ARGUMENT", "memory.type"):
        client.remember(pb.Memory(content="x"))
    with expect_error("INVALID_ARGUMENT", "memory.event"):
        m = background("k", "v")
        m.event.SetInParent()
        client.remember(m)
    with expect_error("INVALID_ARGUMENT", "id"):
        client.get("abc")
    with expect_error("INVALID_ARGUMENT", "memory.scope.tenant"):
        m = event("x")
        m.scope.tenant = "someone-else"
        client.remember(m)
    with expect_error("PERMISSION_DENIED"):  # a key is never mapped to another tenant
        _raw_remember(client, [("x-memlake-tenant", "bad tenant!"), *client.metadata])


def _raw_remember(client, md):
    import grpc

    from memlake.client import _wrap

    try:
        client.ingest.Remember(ipb.RememberRequest(memory=event("x")), metadata=md)
    except grpc.RpcError as exc:
        raise _wrap(exc) from None


def test_tenants_are_isolated(suite):
    with suite.client() as a, suite.client() as b:
        r = a.remember(event("secret plans of tenant a"))
        with expect_error("NOT_FOUND"):
            b.get(r.memory.id)
        assert list(b.list_all()) == []
        assert b.search("secret plans", min_seq=r.seq).results == []
