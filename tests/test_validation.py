"""Bad input gets INVALID_ARGUMENT naming the field, never INTERNAL: each case below was
INTERNAL (or worse) before the rules in shared/validation.py. Runs on SQLite and
Postgres + Redis."""

from __future__ import annotations

import base64
import json
import math
import re
import uuid
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from memlake.client import MemlakeError, scope
from memlake.v1 import ingest_service_pb2 as ipb
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import retrieval_service_pb2 as rpb
from memlake.v1 import versioning_service_pb2 as vpb
from shared import validation
from tests.helpers import background, event, expect_error

PROTO = Path(__file__).resolve().parent.parent / "proto" / "memlake" / "v1"


def _call(client, method, request):
    return client._call(method, request)


def _token(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()


@pytest.mark.parametrize(
    "where",
    ["content", "user_id", "request_id", "background.key", "source.actor"],
)
def test_nul_bytes_are_invalid_argument(client, where):
    m = background("k", "text")
    rid = ""
    if where == "content":
        m.content = "a\x00b"
    elif where == "user_id":
        m.scope.user_id = "u\x00"
    elif where == "background.key":
        m.background.key = "k\x00"
    elif where == "source.actor":
        m.source.actor = "a\x00"
    else:
        rid = "r\x00"
    field = {
        "content": "memory.content",
        "user_id": "memory.scope.user_id",
        "request_id": "request_id",
        "background.key": "memory.background.key",
        "source.actor": "memory.source.actor",
    }[where]
    with expect_error("INVALID_ARGUMENT", field):
        client.remember(m, request_id=rid)


def test_strings_longer_than_their_column(client):
    with expect_error("INVALID_ARGUMENT", "request_id"):
        client.remember(event("x"), request_id="r" * 300)
    with expect_error("INVALID_ARGUMENT", "subject"):
        client.assert_fact("s" * 600, "p", "v", scope=scope("u1"))
    with expect_error("INVALID_ARGUMENT", "actor"):
        _call(
            client,
            client.versioning.SetConflictPolicy,
            vpb.SetConflictPolicyRequest(policy=pb.CONFLICT_POLICY_REVIEW, actor="a" * 300),
        )


@pytest.mark.parametrize("bad", ["9223372036854775808", "99999999999999999999", "²", "-1", " 1"])
def test_ids_out_of_range_or_not_decimal(client, bad):
    with expect_error("INVALID_ARGUMENT", "id"):
        client.get(bad)
    with expect_error("INVALID_ARGUMENT", "id"):
        client.forget(bad)


def test_a_huge_id_is_not_echoed(client):
    with expect_error("INVALID_ARGUMENT", "id") as info:
        client.get("7" * 40_000)
    assert len(info.value.message) < 200


@pytest.mark.parametrize(
    "seconds,nanos,field",
    [
        (validation.TS_MAX + 1, 0, "memory.occur_time"),
        (validation.TS_MIN - 1, 0, "memory.occur_time"),
        (0, -1, "memory.occur_time"),
        (1, 1_000_000_000, "memory.occur_time"),
    ],
)
def test_timestamps_outside_years_1_to_9999(client, seconds, nanos, field):
    m = event("when?")
    m.occur_time.seconds, m.occur_time.nanos = seconds, nanos
    with expect_error("INVALID_ARGUMENT", field):
        client.remember(m)


def test_fact_typed_value_infinity_and_deep_nesting(client):
    req = vpb.AssertFactRequest(subject="s", predicate="p", value="v", scope=scope("u1"))
    req.typed_value.number_value = math.inf
    with expect_error("INVALID_ARGUMENT", "typed_value"):
        _call(client, client.versioning.AssertFact, req)
    deep = struct_pb2.Value(string_value="leaf")
    for _ in range(validation.MAX_VALUE_DEPTH + 2):
        outer = struct_pb2.Value()
        outer.list_value.values.append(deep)
        deep = outer
    req = vpb.AssertFactRequest(subject="s", predicate="p", value="v", scope=scope("u1"))
    req.typed_value.CopyFrom(deep)
    with expect_error("INVALID_ARGUMENT", "typed_value"):
        _call(client, client.versioning.AssertFact, req)


def test_enum_values_not_declared(client):
    with expect_error("INVALID_ARGUMENT", "status"):
        _call(
            client,
            client.versioning.ListConflicts,
            vpb.ListConflictsRequest(status=2**31 - 1),
        )
    with expect_error("INVALID_ARGUMENT", "types[0]"):
        client.search("x", types=[99])


@pytest.mark.parametrize(
    "token",
    [
        base64.urlsafe_b64encode(b"1e400").decode(),
        _token(True),
        _token({"t": "2020-01-01T00:00:00", "id": 1}),
        _token({"t": "2020-01-01T00:00:00+00:00", "id": 1e400}),
        _token({"t": "2020-01-01T00:00:00+00:00", "id": 2**63}),
        _token({"after": True}),
        _token({"after": 1e400}),
        _token({"after": 2**64}),
        base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode(),
        "not base64 at all!",
    ],
)
def test_page_tokens_that_were_not_issued(client, token):
    with expect_error("INVALID_ARGUMENT", "page_token"):
        client.list(page_token=token)
    for method, req in (
        (client.versioning.ListFacts, vpb.ListFactsRequest(page_token=token)),
        (client.versioning.ListConflicts, vpb.ListConflictsRequest(page_token=token)),
        (client.versioning.ListAuditEvents, vpb.ListAuditEventsRequest(page_token=token)),
    ):
        with expect_error("INVALID_ARGUMENT", "page_token"):
            _call(client, method, req)


@pytest.mark.parametrize(
    "method",
    [
        "/memlake.v1.IngestService/Remember",
        "/memlake.v1.RetrievalService/SearchMemories",
        "/memlake.v1.VersioningService/AssertFact",
    ],
)
def test_unparseable_bodies(client, method):
    channel = next(iter(client._channels.values()))
    call = channel.unary_unary(method)
    for body in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x12" + b"\xff" * 9):
        with pytest.raises(grpc.RpcError) as info:
            call(body, metadata=client.metadata, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()


def test_one_bad_item_fails_only_itself_in_a_batch(client):
    good, bad = event("good item"), event("bad time")
    bad.occur_time.seconds = validation.TS_MAX + 10
    nul = event("nul \x00 inside")
    resp = client.remember_batch([good, bad, nul])
    assert [r.HasField("error") for r in resp.results] == [False, True, True]
    assert resp.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert resp.results[1].error.field == "requests[1].memory.occur_time"
    assert resp.results[2].error.field == "requests[2].memory.content"


def test_a_5_mib_fact_value_is_refused_and_poisons_nothing(client):
    u = scope(f"u{uuid.uuid4().hex[:6]}")
    fact = pb.Memory(type=pb.MEMORY_TYPE_FACT, content="big", scope=u)
    fact.fact.subject, fact.fact.predicate = "user", "notes"
    fact.fact.value = "x" * (5 * 1024 * 1024)
    for _ in range(2):  # a retry with the same request_id gets the same answer
        with expect_error("INVALID_ARGUMENT", "memory.fact.value"):
            client.remember(fact, request_id="big-1")
    with pytest.raises(MemlakeError) as info:
        client.get_fact("user", "notes", scope=u)
    assert info.value.code == "NOT_FOUND"
    fact.fact.value = "short notes"
    r = client.remember(fact, request_id="big-2")
    assert r.outcome == pb.WRITE_OUTCOME_CREATED
    assert client.get_fact("user", "notes", scope=u).fact.value == "short notes"


def test_limits_in_range_still_pass(client):
    m = background("k" * 256, "c" * 32_000)
    m.scope.user_id = "u" * 256
    assert client.remember(m, request_id="r" * 256).memory.id
    r = _call(
        client,
        client.retrieval.ListMemories,
        rpb.ListMemoriesRequest(page_size=1000, scope=scope("u" * 256)),
    )
    assert len(r.memories) == 1
    req = ipb.RememberRequest(memory=event("late"))
    req.memory.occur_time.seconds = validation.TS_MAX
    assert client.remember(req.memory).memory.id


def _documented(message: str, field: str) -> str:
    """The comment lines just above `field` in `message` of the protos."""
    for path in PROTO.glob("*.proto"):
        text = path.read_text()
        m = re.search(r"\nmessage " + message + r" \{\n(.*?)\n\}", text, re.S)
        if not m:
            continue
        lines = m.group(1).split("\n")
        for i, line in enumerate(lines):
            if re.match(r"\s*(repeated\s+)?[\w.]+\s+" + field + r"\s*=", line):
                j, comments = i - 1, []
                while j >= 0 and lines[j].strip().startswith("//"):
                    comments.append(lines[j])
                    j -= 1
                return "\n".join(comments)
    raise AssertionError(f"{message}.{field} not found in the protos")


def test_every_rule_is_documented_in_the_protos():
    missing = []
    rules = [(k, v) for k, v in validation.MAX_CHARS.items()]
    rules += [(k, v) for k, v in validation.MAX_ITEMS.items()]
    rules += [(k, hi) for k, (_, hi) in validation.INT_RANGE.items() if hi < 2**62]
    rules += [(k, "2^63") for k in validation.DECIMAL_IDS]
    for name, limit in rules:
        message, field = name.removeprefix("memlake.v1.").split(".")
        text = _documented(message, field)
        shown = {str(limit)} | ({f"{limit:,}"} if isinstance(limit, int) else set())
        if not any(x in text for x in shown):
            missing.append(f"{name} ({limit})")
    assert not missing, "limits not written in the protos: " + ", ".join(missing)


def test_an_echoed_value_never_overflows_the_trailers(client):
    """Within its length limit, a value a message repeats (here a 4,000-emoji key id) must
    not push the trailers past what clients accept (that was RESOURCE_EXHAUSTED)."""
    from memlake.v1 import admin_service_pb2 as apb

    with pytest.raises(MemlakeError) as info:
        _call(
            client, client.admin.RevokeApiKey, apb.RevokeApiKeyRequest(key_id="\U0001f600" * 4000)
        )
    assert info.value.code in ("NOT_FOUND", "INVALID_ARGUMENT", "PERMISSION_DENIED")


def test_rules_hold_on_a_second_request_of_a_kind():
    """The walk keeps each field's rules from the first request of a kind (validation's
    per-field cache): a later request of that kind is held to the same limits."""
    ok = ipb.StreamRememberRequest(memory=event("fine", user="u"), request_id="r" * 256)
    validation.check(ok)
    long_id = ipb.StreamRememberRequest(memory=event("fine", user="u"), request_id="r" * 257)
    with pytest.raises(validation.InvalidArgument) as exc:
        validation.check(long_id, "item[3]")
    assert exc.value.field == "item[3].request_id"
    nul = ipb.StreamRememberRequest(memory=event("fi\x00ne", user="u"))
    with pytest.raises(validation.InvalidArgument) as exc:
        validation.check(nul, "item[4]")
    assert exc.value.field == "item[4].memory.content"


def test_vector_values_are_checked_where_they_are_read():
    """check() leaves a Vector's numbers to client_vector (one conversion, not two), which
    refuses a non-finite value naming the field; finite values whose sum overflows pass."""
    from shared.vectors import client_vector

    model, dim = "all-MiniLM-L6-v2", 384
    bad = pb.Vector(model=model, values=[math.inf] + [1.0] * (dim - 1))
    validation.check(pb.Memory(vector=bad))
    with pytest.raises(validation.InvalidArgument) as exc:
        client_vector(bad, "memory.vector", model, dim)
    assert exc.value.field == "memory.vector.values"
    big = client_vector(pb.Vector(model=model, values=[3e38] * dim), "v", model, dim)
    assert abs(float(big @ big) - 1.0) < 1e-5
    # Other float fields are still checked here.
    with pytest.raises(validation.InvalidArgument):
        validation.check(rpb.SearchMemoriesRequest(query="x", min_score=math.nan))
