"""Access-control review: what a key may NOT learn, in answers, replays and error messages.

A key that may write but not read a scope gets back its own write, never the values already
stored there; a read outside the grant by id or key does not tell which user it belongs to
or whether it exists; the gateway and the MCP server add no credentials of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

import grpc
import pytest
from grpc_status import rpc_status

from memlake.client import MemlakeClient, MemlakeError, grant, scope
from memlake.v1 import ingest_service_pb2 as ipb
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb
from tests.helpers import background, event, reflection

FACT = pb.MEMORY_TYPE_FACT


def member(suite, admin: MemlakeClient, **g) -> MemlakeClient:
    key = admin.create_api_key(grants=[grant(**g)], ttl_seconds=600)
    return MemlakeClient(suite.addr, api_key=key.secret, timeout=20)


def _raw_error(fn, req, c: MemlakeClient) -> tuple[grpc.StatusCode, str, str]:
    """(code, message, every detail as text) of a call expected to fail."""
    with pytest.raises(grpc.RpcError) as e:
        fn(req, metadata=c.metadata, timeout=20)
    st = rpc_status.from_call(e.value)
    details = " ".join(str(d) for d in st.details) if st else ""
    return e.value.code(), e.value.details(), details


def test_reject_tells_a_write_only_key_no_stored_value(suite, client):
    marker = f"tea{uuid.uuid4().hex[:8]}"
    client.assert_fact("alice", "drinks", marker, scope=scope("u1"))
    wo = member(suite, client, users=["u1"], types=["fact"], write=True)
    rw = member(suite, client, users=["u1"], types=["fact"], read=True, write=True)
    req = vpb.AssertFactRequest(
        scope=scope("u1"),
        subject="alice",
        predicate="drinks",
        value="coffee",
        policy=pb.CONFLICT_POLICY_REJECT,
    )
    code, msg, details = _raw_error(wo.versioning.AssertFact, req, wo)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert marker not in msg and marker not in details
    assert "FACT_CONFLICT" in details  # still says why

    m = pb.Memory(type=FACT, content="alice drinks coffee", scope=scope("u1"))
    m.fact.subject, m.fact.predicate, m.fact.value = "alice", "drinks", "coffee"
    ireq = ipb.RememberRequest(memory=m, conflict_policy=pb.CONFLICT_POLICY_REJECT)
    code, msg, details = _raw_error(wo.ingest.Remember, ireq, wo)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert marker not in msg and marker not in details

    # A key that may read the scope still gets the current value in the details.
    code, msg, details = _raw_error(rw.versioning.AssertFact, req, rw)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and marker in details
    wo.close()
    rw.close()


def test_write_only_fact_writes_and_replays_return_no_stored_value(suite, client):
    sc = scope("u1")
    first = f"juice{uuid.uuid4().hex[:8]}"
    client.assert_fact("bob", "drinks", first, scope=sc)
    wo = member(suite, client, users=["u1"], types=["fact"], write=True)
    rw = member(suite, client, users=["u1"], types=["fact"], read=True, write=True)

    r = wo.assert_fact("bob", "drinks", "water", scope=sc)
    assert r.outcome == pb.WRITE_OUTCOME_UPDATED and r.fact.value == "water"
    assert first not in str(r)

    # The same request_id and request from a narrower key replays the first answer, but
    # not what it may not read.
    rid = f"rid-{uuid.uuid4().hex}"
    full = rw.assert_fact("bob", "drinks", "milk", scope=sc, request_id=rid)
    assert full.previous.value == "water"
    replay = wo.assert_fact("bob", "drinks", "milk", scope=sc, request_id=rid)
    assert replay.fact.id == full.fact.id and "water" not in str(replay)

    gone = wo.retract_fact("bob", "drinks", scope=sc)
    assert "milk" not in str(gone) and gone.fact.status == pb.FACT_STATUS_RETRACTED
    wo.close()
    rw.close()


def test_a_duplicate_fact_shows_a_write_only_key_nobody_elses_source(suite, client):
    actor = f"actor{uuid.uuid4().hex[:8]}"

    def fact() -> pb.Memory:
        m = pb.Memory(type=FACT, content="dave drinks tea", scope=scope("u1"))
        m.fact.subject, m.fact.predicate, m.fact.value = "dave", "drinks", "tea"
        return m

    first = fact()
    first.source.actor = actor
    client.remember(first)
    wo = member(suite, client, users=["u1"], types=["fact"], write=True)
    r = wo.remember(fact())
    assert r.outcome == pb.WRITE_OUTCOME_DUPLICATE and r.memory.id
    assert actor not in str(r)
    again = wo.assert_fact("dave", "drinks", "tea", scope=scope("u1"))
    assert again.outcome == pb.WRITE_OUTCOME_DUPLICATE and actor not in str(again)
    assert actor in str(client.remember(fact()))  # the admin may read it
    wo.close()


def test_resolving_a_conflict_with_a_write_only_key_shows_no_values(suite, client):
    sc = scope("u1")
    a, b = f"oslo{uuid.uuid4().hex[:6]}", f"rome{uuid.uuid4().hex[:6]}"
    client.assert_fact("carol", "lives_in", a, scope=sc)
    r = client.assert_fact("carol", "lives_in", b, scope=sc, policy=pb.CONFLICT_POLICY_REVIEW)
    assert r.conflict_id
    wo = member(suite, client, users=["u1"], types=["fact"], write=True)
    res = wo.resolve_conflict(r.conflict_id, vpb.CONFLICT_RESOLUTION_KEEP_BOTH)
    assert res.conflict.facts and a not in str(res) and b not in str(res)
    # Outside the grant it is refused, and a reader sees the values.
    other = member(suite, client, users=["u2"], types=["fact"], read=True, write=True)
    with pytest.raises(MemlakeError) as e:
        other.resolve_conflict(r.conflict_id, vpb.CONFLICT_RESOLUTION_KEEP_BOTH)
    assert e.value.code == "PERMISSION_DENIED" and a not in e.value.message
    assert a in str(client.list_conflicts(scope=sc, status=vpb.CONFLICT_STATUS_RESOLVED))
    wo.close()
    other.close()


def test_a_denied_read_or_forget_by_id_does_not_name_the_memorys_scope(suite, client):
    hidden = f"hidden{uuid.uuid4().hex[:8]}"
    mid = client.remember(event("private", user=hidden)).memory.id
    k = member(suite, client, users=["u1"], read=True, write=True)
    for call in (k.get, k.forget):
        with pytest.raises(MemlakeError) as e:
            call(mid)
        assert e.value.code == "PERMISSION_DENIED", e.value
        assert hidden not in e.value.message and "EVENT" not in e.value.message
    assert client.get(mid).content == "private"
    k.close()


def test_get_by_key_outside_the_grant_does_not_tell_whether_it_exists(suite, client):
    client.remember(background("name", "Zed", user="u2"))
    client.remember(background("name", "Yan", user="u1"))
    k = member(suite, client, users=["u1"], read=True)
    for key in ("name", "no-such-key"):
        with pytest.raises(MemlakeError) as e:
            k.get_by_key("background", key, scope=scope("u2"))
        assert e.value.code == "PERMISSION_DENIED", (key, e.value)
    assert k.get_by_key("background", "name", scope=scope("u1")).content == "Yan"
    # A grant to one session of u1: an item of another session of u1 looks absent.
    s = member(suite, client, users=["u1"], sessions=["s9"], read=True)
    for key in ("name", "no-such-key"):
        with pytest.raises(MemlakeError) as e:
            s.get_by_key("background", key, scope=scope("u1"))
        assert e.value.code == "NOT_FOUND", (key, e.value)
    k.close()
    s.close()


def test_reflection_evidence_outside_the_grant_looks_absent(suite, client):
    theirs = client.remember(event("u2's private event", user="u2")).memory.id
    mine = client.remember(event("u1's event", user="u1")).memory.id
    k = member(suite, client, users=["u1"], read=True, write=True)
    missing = str(int(theirs) + 10_000_000)
    msgs = []
    for ev in (theirs, missing):
        with pytest.raises(MemlakeError) as e:
            k.remember(reflection("style", "prefers short answers", 0.8, [ev], user="u1"))
        assert e.value.code == "INVALID_ARGUMENT", e.value
        assert e.value.field == "memory.reflection.evidence_memory_ids[0]"
        msgs.append(e.value.message.replace(ev, "ID"))
    assert msgs[0] == msgs[1]
    r = k.remember(reflection("style", "prefers short answers", 0.8, [mine], user="u1"))
    assert r.memory.reflection.evidence_memory_ids == [mine]
    k.close()


def test_alias_errors_name_no_subject_to_a_write_only_key(suite, client):
    target = f"robert{uuid.uuid4().hex[:6]}"
    client.add_subject_alias("bobby", target, scope=scope("u1"))
    wo = member(suite, client, users=["u1"], types=["fact"], write=True)
    with pytest.raises(MemlakeError) as e:
        wo.add_subject_alias("bobby", "someone else", scope=scope("u1"))
    assert e.value.code == "ALREADY_EXISTS" and target not in e.value.message
    with pytest.raises(MemlakeError) as e:
        client.add_subject_alias("bobby", "someone else", scope=scope("u1"))
    assert target in e.value.message  # a reader is told which subject
    wo.close()


def test_request_ids_are_per_tenant(suite, client):
    rid = f"shared-{uuid.uuid4().hex}"
    mine = client.remember(event("tenant one's text"), request_id=rid)
    with suite.client() as other:
        theirs = other.remember(event("tenant one's text"), request_id=rid)
        assert theirs.memory.id != mine.memory.id
        assert theirs.outcome == pb.WRITE_OUTCOME_CREATED
        different = other.remember(event("other words"), request_id=f"{rid}-2")
        assert different.memory.content == "other words"


def test_shard_candidates_name_no_speaker_outside_the_grant(suite, client):
    """ShardService answers any key (peers call it with the caller's key): a key granted
    one session gets the speaker names of that session only, not of its whole partition."""
    import numpy as np

    from memlake.v1 import shard_service_pb2 as spb
    from memlake.v1 import shard_service_pb2_grpc as spb_grpc
    from tests.helpers import turn

    seq = client.remember(turn("zebra crossing at noon", session="s1", speaker="Alice")).seq
    seq = max(seq, client.remember(turn("zebra secret plan", session="s2", speaker="Mallory")).seq)
    k = member(suite, client, users=["u1"], sessions=["s1"], read=True)
    req = spb.SearchCandidatesRequest(
        query="zebra",
        query_vector=np.zeros(suite.runtime.embedder.dim, np.float32).tobytes(),
        want=50,
        start_time=0.0,
        end_time=4e9,
        min_seq=seq,
    )
    with grpc.insecure_channel(suite.addr) as ch:
        resp = spb_grpc.ShardServiceStub(ch).SearchCandidates(req, metadata=k.metadata, timeout=20)
    names = {n for p in resp.partitions for n in p.speaker_names}
    assert "alice" in names and "mallory" not in names, names
    k.close()


# -- the gateway and the MCP server ----------------------------------------------------------


def test_gateway_adds_no_credentials_of_its_own(suite, client, monkeypatch, tmp_path):
    """Even where the SDK would find a key (environment, key file, the server's data
    directory), the gateway sends only the HTTP request's own credentials."""
    from shared.gateway.server import FORWARDED, Upstreams, start_gateway

    key = client.api_key
    kf = tmp_path / "k"
    kf.write_text(key)
    monkeypatch.setenv("MEMLAKE_API_KEY", key)
    monkeypatch.setenv("MEMLAKE_API_KEY_FILE", str(kf))
    monkeypatch.setenv("MEMLAKE_DATA_DIR", str(suite.settings.data_dir))
    # Identity headers only the services' own hops or a trusted mesh may set.
    assert not {"x-forwarded-client-cert", "x-memlake-on-behalf-of"} & set(FORWARDED)
    up = Upstreams(suite.addr)
    httpd = start_gateway("127.0.0.1", 0, up)
    base = f"http://127.0.0.1:{httpd.server_port}"

    def post(headers):
        req = urllib.request.Request(
            base + "/memlake.v1.RetrievalService/SearchMemories",
            data=json.dumps({"query": "x"}).encode(),
            method="POST",
            headers={"content-type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    try:
        status, err = post({})
        assert status == 401 and err["code"] == "unauthenticated", err
        status, err = post(
            {
                "x-forwarded-client-cert": 'Subject="CN=default"',
                "x-memlake-on-behalf-of": json.dumps({"tenant": "default", "role": 2}),
            }
        )
        assert status == 401, err
        status, err = post({"authorization": f"Bearer {key}", "x-memlake-tenant": "default"})
        assert status == 403 and err["code"] == "permission_denied", err
        status, _ = post({"authorization": f"Bearer {key}"})
        assert status == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
        up.close()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_mcp_over_http_binds_loopback_only(host):
    from memlake.mcp_server import McpConfig, serve

    with pytest.raises(SystemExit) as e:
        serve(McpConfig(api_key="mlk_x"), "http", host, 1)
    assert "loopback" in str(e.value)


def test_mcp_cli_refuses_a_public_listen_address():
    env = {**os.environ, "MEMLAKE_API_KEY": "unused"}
    p = subprocess.run(
        [sys.executable, "-m", "memlake", "mcp", "--transport", "http", "--listen", "0.0.0.0:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode != 0 and "loopback" in p.stderr, p.stderr
