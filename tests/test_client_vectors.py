"""Client-supplied vectors on writes and queries: used as given, checked against the
server's model and dimension (the test suite's server embeds with hash-256)."""

from __future__ import annotations

import numpy as np

from memlake.client import scope
from memlake.v1 import memory_pb2 as pb
from shared.embedding import HashEmbedder
from tests.helpers import event, expect_error, turn

MODEL, DIM = HashEmbedder.name, HashEmbedder.dim


def _vec(seed: int, model: str = MODEL, dim: int = DIM) -> pb.Vector:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return pb.Vector(model=model, values=v.tolist())


def test_written_and_queried_vectors_are_used_as_given(client):
    items = []
    for i in range(20):
        m = event(f"unrelated words {i}", user="vu")
        m.vector.CopyFrom(_vec(i))
        items.append(m)
    resp = client.stream_remember(items)
    assert resp.failed == 0
    ids = [r.memory.id for r in resp.results]
    for i in (3, 11):
        r = client.search("", scope=scope("vu"), vector=_vec(i), min_seq=resp.seq)
        assert r.results[0].memory.id == ids[i]
        # stored normalised, used as is (the index holds bfloat16: a cosine within 1e-3)
        assert abs(r.results[0].parts.dense - 1.0) < 1e-3
    # A text query still works over client vectors (the server embeds the query).
    r = client.search("unrelated words 5", scope=scope("vu"), min_seq=resp.seq)
    assert r.results and r.results[0].parts.lexical > 0


def test_mixed_batch_embeds_only_what_has_no_vector(client):
    with_vec = turn("hello there", session="s1", user="vm")
    with_vec.vector.CopyFrom(_vec(42))
    plain = turn("general kenobi", session="s1", user="vm")
    resp = client.remember_batch([with_vec, plain])
    assert all(not r.HasField("error") for r in resp.results)
    r = client.search("", scope=scope("vm"), vector=_vec(42), min_seq=resp.seq, top_k=2)
    assert r.results[0].memory.content == "hello there"
    # The other turn was embedded from its text by the server.
    r = client.search("general kenobi", scope=scope("vm"), top_k=1)
    assert r.results[0].memory.content == "general kenobi" and r.results[0].parts.dense > 0.3


def test_bad_vectors_are_refused_naming_the_field(client):
    bad = [
        (_vec(1, model="text-embedding-3-small"), "memory.vector.model"),
        (_vec(1, dim=DIM - 1), "memory.vector.values"),
        (pb.Vector(model=MODEL, values=[0.0] * DIM), "memory.vector.values"),
        (pb.Vector(model=MODEL, values=[float("nan")] + [1.0] * (DIM - 1)), "memory.vector.values"),
    ]
    for vec, field in bad:
        m = event("x", user="vb")
        m.vector.CopyFrom(vec)
        with expect_error("INVALID_ARGUMENT", field):
            client.remember(m)
    # In a batch: only the bad item fails, with its index in the field.
    good, wrong = event("fine", user="vb"), event("wrong", user="vb")
    wrong.vector.CopyFrom(_vec(1, dim=3))
    resp = client.remember_batch([good, wrong])
    assert not resp.results[0].HasField("error")
    assert resp.results[1].error.field == "requests[1].memory.vector.values"
    assert "3 values" in resp.results[1].error.message
    # On the query.
    with expect_error("INVALID_ARGUMENT", "vector.model"):
        client.search("x", scope=scope("vb"), vector=_vec(1, model="other"))
    with expect_error("INVALID_ARGUMENT", "vector.values"):
        client.search("x", scope=scope("vb"), vector=_vec(1, dim=8))
    with expect_error("INVALID_ARGUMENT", "query"):
        client.search("", scope=scope("vb"))
    # FACT items are embedded by versioning.
    f = pb.Memory(type=pb.MEMORY_TYPE_FACT, content="x", scope=scope("vb"))
    f.fact.subject, f.fact.value = "alice", "paris"
    f.vector.CopyFrom(_vec(1))
    with expect_error("INVALID_ARGUMENT", "memory.vector"):
        client.remember(f)
