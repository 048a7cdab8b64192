"""HTTP/JSON over real HTTP: the gateway in front of a running suite, called with urllib the
way curl would. Also: the committed OpenAPI matches what the protos generate."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from google.rpc import error_details_pb2

from shared.gateway import openapi
from shared.gateway.registry import methods
from shared.gateway.server import Upstreams, start_gateway


@pytest.fixture
def http(suite, client):
    """(post, base url) for a gateway forwarding to the suite, with the client's credentials."""
    up = Upstreams(suite.addr)
    httpd = start_gateway("127.0.0.1", 0, up, openapi.OUT.read_bytes())
    base = f"http://127.0.0.1:{httpd.server_port}"
    headers = {k: v for k, v in client.metadata if k in ("authorization", "x-memlake-tenant")}

    def post(path: str, body, ctype: str = "application/json", extra=None):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(
            base + path,
            data=data,
            method="POST",
            headers={"content-type": ctype, **headers, **(extra or {})},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, r.headers["content-type"], raw
        except urllib.error.HTTPError as e:
            return e.code, e.headers["content-type"], e.read()

    yield post, base
    httpd.shutdown()
    httpd.server_close()
    up.close()


def _json(resp):
    status, ctype, raw = resp
    return status, json.loads(raw)


def _detail(err: dict, type_name: str):
    for d in err.get("details", []):
        if d["type"] == type_name:
            return d
    raise AssertionError(f"no {type_name} in {err}")


def test_remember_search_context_and_fact_over_http(http, client):
    post, _ = http
    status, r = _json(
        post(
            "/memlake.v1.IngestService/Remember",
            {
                "memory": {
                    "type": "MEMORY_TYPE_EVENT",
                    "content": "Deployed the billing service v2 to production",
                    "scope": {"userId": "carol"},
                    "occurTime": "2024-05-01T10:00:00Z",
                    "event": {"kind": "deploy"},
                },
                "requestId": "deploy-v2",
            },
        )
    )
    assert status == 200, r
    assert r["outcome"] == "WRITE_OUTCOME_CREATED" and int(r["seq"]) > 0
    mem_id = r["memory"]["id"]
    assert client.get(mem_id).content.startswith("Deployed the billing")

    status, r = _json(
        post(
            "/memlake.v1.RetrievalService/SearchMemories",
            {"query": "billing deploy", "scope": {"userId": "carol"}, "minSeq": r["seq"]},
        )
    )
    assert status == 200
    assert r["results"][0]["memory"]["id"] == mem_id
    assert r["results"][0]["memory"]["occurTime"] == "2024-05-01T10:00:00Z"

    status, r = _json(
        post(
            "/memlake.v1.RetrievalService/GetContext",
            {"scope": {"userId": "carol"}, "intent": "what shipped", "tokenBudget": 300},
        )
    )
    assert status == 200 and "billing service v2" in r["rendered"]

    status, r = _json(
        post(
            "/memlake.v1.VersioningService/AssertFact",
            {
                "scope": {"userId": "carol"},
                "subject": "carol",
                "predicate": "team",
                "value": "infra",
            },
        )
    )
    assert status == 200 and r["outcome"] == "WRITE_OUTCOME_CREATED"
    from memlake.client import scope

    assert client.get_fact("carol", "team", scope=scope("carol")).fact.value == "infra"

    # The binary protobuf form of the same route.
    from memlake.v1 import retrieval_service_pb2 as rpb

    req = rpb.GetMemoryRequest(id=mem_id).SerializeToString()
    status, ctype, raw = post("/memlake.v1.RetrievalService/GetMemory", req, "application/proto")
    assert status == 200 and ctype == "application/proto"
    assert rpb.GetMemoryResponse.FromString(raw).memory.id == mem_id


def test_errors_carry_the_grpc_code_and_details(http, client):
    post, _ = http
    status, err = _json(post("/memlake.v1.RetrievalService/SearchMemories", {"query": " "}))
    assert status == 400 and err["code"] == "invalid_argument"
    assert "query" in err["message"]
    info = _detail(err, "google.rpc.ErrorInfo")
    assert info["debug"]["metadata"]["field"] == "query"
    decoded = error_details_pb2.ErrorInfo.FromString(base64.b64decode(info["value"] + "=="))
    assert decoded.reason == "INVALID_FIELD" and decoded.domain == "memlake.dev"
    br = _detail(err, "google.rpc.BadRequest")
    assert br["debug"]["fieldViolations"][0]["field"] == "query"

    status, err = _json(post("/memlake.v1.RetrievalService/GetMemory", {"id": "999999999"}))
    assert status == 404 and err["code"] == "not_found"

    # A rejected fact: 400 failed_precondition with the current Fact in the details, as in gRPC.
    body = {"scope": {"userId": "dan"}, "subject": "dan", "predicate": "city", "value": "Oslo"}
    assert post("/memlake.v1.VersioningService/AssertFact", body)[0] == 200
    status, err = _json(
        post(
            "/memlake.v1.VersioningService/AssertFact",
            {**body, "value": "Rome", "policy": "CONFLICT_POLICY_REJECT"},
        )
    )
    assert status == 400 and err["code"] == "failed_precondition"
    fact = _detail(err, "memlake.v1.Fact")
    assert fact["debug"]["value"] == "Oslo"

    # No key: 401, with the same reason gRPC gives.
    status, err = _json(
        post(
            "/memlake.v1.RetrievalService/SearchMemories",
            {"query": "x"},
            extra={"authorization": ""},
        )
    )
    assert status == 401 and err["code"] == "unauthenticated"
    assert _detail(err, "google.rpc.ErrorInfo")["debug"]["reason"] == "CREDENTIALS_MISSING"

    status, err = _json(post("/memlake.v1.RetrievalService/SearchMemories", b"{not json"))
    assert status == 400 and err["code"] == "invalid_argument"
    status, err = _json(post("/memlake.v1.Nope/Nothing", {}))
    assert status == 404 and err["code"] == "not_found"
    status, err = _json(post("/memlake.v1.RetrievalService/GetMemory", {"id": "1"}, "text/plain"))
    assert status == 400


def test_client_streaming_remember_over_connect_envelopes(http, client):
    post, _ = http

    def env(flags: int, obj) -> bytes:
        data = json.dumps(obj).encode()
        return struct.pack(">BI", flags, len(data)) + data

    items = [
        {
            "memory": {
                "type": "MEMORY_TYPE_BACKGROUND",
                "content": f"value {i}",
                "scope": {"userId": "erin"},
                "background": {"key": f"k{i}"},
            }
        }
        for i in range(3)
    ]
    body = b"".join(env(0, it) for it in items)
    status, ctype, raw = post(
        "/memlake.v1.IngestService/StreamRemember", body, "application/connect+json"
    )
    assert status == 200 and ctype == "application/connect+json"
    flags, n = struct.unpack(">BI", raw[:5])
    assert flags == 0
    resp = json.loads(raw[5 : 5 + n])
    assert int(resp["accepted"]) == 3
    end_flags, m = struct.unpack(">BI", raw[5 + n : 10 + n])
    assert end_flags == 2 and json.loads(raw[10 + n : 10 + n + m]) == {}


def test_openapi_is_served_and_matches_the_protos(http):
    _, base = http
    with urllib.request.urlopen(base + "/openapi.json", timeout=10) as r:
        served = json.loads(r.read())
    committed = openapi.OUT.read_text()
    assert json.loads(committed) == served
    # Drift: regenerating from proto/ changes nothing (run `make proto` after editing protos).
    assert openapi.render() == committed, "shared/gateway/openapi.json is stale: run make proto"
    # Every RPC the server has is described, with its request schema.
    for path, m in methods().items():
        assert path in served["paths"], path
        op = served["paths"][path]["post"]
        if m.unary:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith(m.desc.input_type.full_name)
    refs = set()

    def walk(x):
        if isinstance(x, dict):
            if "$ref" in x:
                refs.add(x["$ref"].rsplit("/", 1)[-1])
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(served)
    comps = served["components"]
    missing = {
        r
        for r in refs
        if r not in comps["schemas"]
        and r not in comps["parameters"]
        and r not in comps["responses"]
    }
    assert not missing, missing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_port_in_use_is_a_clear_message(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        env = {
            **os.environ,
            "MEMLAKE_ADDR": f"127.0.0.1:{port}",
            "MEMLAKE_DATA_DIR": str(tmp_path),
            "MEMLAKE_EMBEDDER": "hash",
            "MEMLAKE_ALLINONE_METRICS_PORT": str(_free_port()),
            "MEMLAKE_HTTP_PORT": str(_free_port()),
            "MEMLAKE_DATABASE_URL": "",
            "MEMLAKE_REDIS_URL": "",
        }
        p = subprocess.run(
            [sys.executable, "-m", "memlake", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=Path(__file__).resolve().parent.parent,
        )
    assert p.returncode == 1
    assert f"127.0.0.1:{port}" in p.stderr and "in use" in p.stderr
    assert "MEMLAKE_ADDR" in p.stderr
    assert "Traceback" not in p.stderr


def test_server_streaming_export_over_connect_envelopes(http, client):
    from memlake import memories

    post, _ = http
    client.remember(memories.background("city", "Fay lives in Oslo", user="fay"))

    def env(flags: int, obj) -> bytes:
        data = json.dumps(obj).encode()
        return struct.pack(">BI", flags, len(data)) + data

    body = env(0, {"subject": {"userId": "fay"}})
    status, ctype, raw = post(
        "/memlake.v1.PrivacyService/ExportSubject", body, "application/connect+json"
    )
    assert status == 200 and ctype == "application/connect+json"
    frames, i = [], 0
    while i < len(raw):
        flags, n = struct.unpack(">BI", raw[i : i + 5])
        frames.append((flags, json.loads(raw[i + 5 : i + 5 + n])))
        i += 5 + n
    assert frames[-1] == (2, {}) and all(f == 0 for f, _ in frames[:-1])
    lines = [json.loads(line) for _, msg in frames[:-1] for line in msg.get("lines", [])]
    assert any("Fay lives in Oslo" in json.dumps(x) for x in lines)
    # A unary body on a streaming route is refused with a reason.
    status, err = _json(post("/memlake.v1.PrivacyService/ExportSubject", {"subject": {}}))
    assert status == 400 and "connect+json" in err["message"]
