"""A created key's secret never reaches a log line (request logs, error logs, the gateway's
logs, at DEBUG) or a metric: a suite run with request logging on, through successful,
refused, failing, revoked and malformed-credential calls, over gRPC and HTTP."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

import grpc
import pytest
from prometheus_client import REGISTRY, generate_latest

from memlake.client import MemlakeClient, MemlakeError, grant, scope
from memlake.v1 import admin_service_pb2 as apb
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import retrieval_service_pb2 as rpb
from shared.auth import keys
from shared.server import JsonFormatter
from tests.helpers import event


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.fmt = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        # The production formatter's line, and every attribute a formatter could print.
        self.lines.append(self.fmt.format(record))
        self.lines.append(repr({k: v for k, v in vars(record).items() if k != "exc_info"}))


@pytest.fixture
def captured():
    root = logging.getLogger()
    cap, level = _Capture(), root.level
    root.addHandler(cap)
    root.setLevel(logging.DEBUG)
    yield cap
    root.removeHandler(cap)
    root.setLevel(level)


def test_no_secret_in_logs_or_metrics(fresh_backend, captured):
    from shared.gateway.server import Upstreams, start_gateway
    from tests.conftest import start_suite

    backend, settings = fresh_backend
    suite = start_suite(settings.model_copy(update={"log_requests": True}), backend)
    up = Upstreams(suite.addr)
    httpd = start_gateway("127.0.0.1", 0, up)
    secrets: list[str] = []
    try:
        with suite.operator() as op:
            op.create_tenant("logs")
            admin_key = op.create_api_key(tenant="logs", role=apb.KEY_ROLE_ADMIN).secret
        secrets.append(admin_key)
        with MemlakeClient(suite.addr, api_key=admin_key, timeout=20) as admin:
            k = admin.create_api_key(grants=[grant(users=["u1"], read=True, write=True)])
            secrets.append(k.secret)
            with MemlakeClient(suite.addr, api_key=k.secret, timeout=20) as m:
                m.remember(event("hello", user="u1"))
                m.assert_fact("u1", "likes", "tea", scope=scope("u1"))  # ingest -> versioning
                fact = pb.Memory(type=pb.MEMORY_TYPE_FACT, content="x", scope=scope("u1"))
                fact.fact.subject, fact.fact.predicate, fact.fact.value = "u1", "likes", "tea2"
                m.remember(fact)
                for bad in (
                    lambda: m.remember(event("forged", user="u2")),  # PERMISSION_DENIED
                    lambda: m.get("not-an-id"),  # INVALID_ARGUMENT
                    lambda: m.get("99999999"),  # NOT_FOUND
                    lambda: m.assert_fact("u1", "likes", "", scope=scope("u1")),
                ):
                    with pytest.raises(MemlakeError):
                        bad()
            admin.revoke_api_key(k.key.key_id)
        # Revoked, altered, malformed and wrongly-schemed credentials.
        altered = k.secret[:-1] + ("A" if k.secret[-1] != "A" else "B")
        with grpc.insecure_channel(suite.addr) as ch:
            from memlake.v1 import retrieval_service_pb2_grpc as rpb_grpc

            stub = rpb_grpc.RetrievalServiceStub(ch)
            for auth in (
                f"Bearer {k.secret}",
                f"Bearer {altered}",
                f"Bearer {k.secret}xyz",
                f"Basic {k.secret}",
                k.secret,
            ):
                with pytest.raises(grpc.RpcError) as e:
                    stub.GetMemory(rpb.GetMemoryRequest(id="1"), metadata=[("authorization", auth)])
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert k.secret not in (e.value.details() or "")
        # The gateway, with a good key and a revoked one.
        base = f"http://127.0.0.1:{httpd.server_port}"
        for key, want in ((admin_key, 200), (k.secret, 401)):
            req = urllib.request.Request(
                base + "/memlake.v1.RetrievalService/SearchMemories",
                data=json.dumps({"query": "hello"}).encode(),
                method="POST",
                headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    status = r.status
            except urllib.error.HTTPError as e:
                status = e.code
                assert key not in e.read().decode()
            assert status == want
    finally:
        httpd.shutdown()
        httpd.server_close()
        up.close()
        suite.stop()

    logs = "\n".join(captured.lines)
    assert '"method": "/memlake.v1.IngestService/Remember"' in logs  # request logs were on
    assert k.key.key_id in logs  # the key id is logged; its secret is not
    metrics = generate_latest(REGISTRY).decode()
    for s in secrets:
        secret_part = keys.parse(s)[1]
        for text, where in ((logs, "logs"), (metrics, "metrics")):
            assert s not in text and secret_part not in text, f"a key secret is in the {where}"
