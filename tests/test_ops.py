"""Operations: reflection, health, metrics, deadlines, restart durability."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from memlake.client import MemlakeClient, scope
from memlake.v1 import memory_pb2 as pb
from shared.server import start_metrics
from tests.conftest import start_suite
from tests.helpers import background, event, expect_error, turn

ROOT = Path(__file__).resolve().parent.parent
SERVICES = {
    "memlake.v1.IngestService",
    "memlake.v1.RetrievalService",
    "memlake.v1.VersioningService",
}


def test_reflection_lists_the_three_services(suite):
    with grpc.insecure_channel(suite.addr) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {s.name for s in resp.list_services_response.service}
    assert SERVICES <= names
    assert "grpc.health.v1.Health" in names


def test_health_reports_serving_per_service(suite):
    with grpc.insecure_channel(suite.addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for name in ["", *SERVICES]:
            r = stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert r.status == health_pb2.HealthCheckResponse.SERVING, name


def _metric(body: str, name: str, **labels) -> float:
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_move_after_a_call(suite, client):
    port = start_metrics("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/metrics"
    labels = dict(service="memlake.v1.RetrievalService", method="GetMemory", code="NOT_FOUND")
    before = _metric(
        urllib.request.urlopen(url).read().decode(), "memlake_grpc_requests_total", **labels
    )
    with expect_error("NOT_FOUND"):
        client.get("987654321")
    body = urllib.request.urlopen(url).read().decode()
    assert _metric(body, "memlake_grpc_requests_total", **labels) == before + 1
    assert _metric(body, "memlake_grpc_request_duration_seconds_count", **labels) >= 1


def test_min_seq_beyond_the_log_is_out_of_range_at_once(client):
    # No write has returned that seq, so waiting for it could only run out the deadline.
    t0 = time.monotonic()
    with expect_error("OUT_OF_RANGE"):
        client.search("anything", min_seq=10**12, timeout=5)
    assert time.monotonic() - t0 < 1


def test_restart_keeps_every_acknowledged_memory(fresh_backend):
    backend, settings = fresh_backend
    suite = start_suite(settings, backend)
    acked = {}
    with suite.client("acme") as c:
        for i in range(20):
            r = c.remember(event(f"event number {i}"))
            acked[r.memory.id] = r.memory.content
        acked[c.remember(background("name", "Zoe")).memory.id] = "Zoe"
        r = c.remember(turn("hello there", session="s1"))
        acked[r.memory.id] = "hello there"
        before = [
            (x.memory.id, round(x.score, 6))
            for x in c.search("event number 7", scope=scope("u1"), min_seq=r.seq).results
        ]
    suite.stop()
    suite = start_suite(settings, backend)
    try:
        with suite.client("acme") as c:
            got = {m.id: m.content for m in c.list_all(include_history=True)}
            assert got == acked
            after = [
                (x.memory.id, round(x.score, 6))
                for x in c.search("event number 7", scope=scope("u1")).results
            ]
            # Recency moves slightly with the clock; the ranking must not.
            assert [i for i, _ in after] == [i for i, _ in before]
            ctx = c.context(scope=scope("u1", session_id="s1"), intent="hello")
            assert "hello there" in ctx.rendered and "Zoe" in ctx.rendered
    finally:
        suite.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_process_sigterm_drains_and_restart_keeps_data(tmp_path):
    """The real entry point as a process: serve, SIGTERM, serve again."""
    port, mport = _free_port(), _free_port()
    env = dict(
        os.environ,
        MEMLAKE_DATA_DIR=str(tmp_path / "d"),
        MEMLAKE_EMBEDDER="hash",
        MEMLAKE_ALLINONE_PORT=str(port),
        MEMLAKE_ALLINONE_METRICS_PORT=str(mport),
        MEMLAKE_HTTP_PORT=str(_free_port()),
        MEMLAKE_LOG_REQUESTS="true",
    )
    env.pop("MEMLAKE_DATABASE_URL", None)
    env.pop("MEMLAKE_REDIS_URL", None)

    def serve():
        p = subprocess.Popen(
            [sys.executable, "-m", "memlake", "serve"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            while time.monotonic() < deadline:
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return p
                except grpc.RpcError:
                    pass
                assert p.poll() is None, p.stdout.read()
                time.sleep(0.1)
        p.kill()
        pytest.fail("server did not become SERVING")

    p = serve()
    key_file = tmp_path / "d" / "admin.key"
    key = key_file.read_text().strip()
    assert key_file.stat().st_mode & 0o777 == 0o600  # readable by its owner only
    with MemlakeClient(f"127.0.0.1:{port}", api_key=key) as c:
        ids = [c.remember(event(f"kept {i}")).memory.id for i in range(5)]
        body = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics").read().decode()
        assert _metric(body, "memlake_grpc_requests_total", method="Remember", code="OK") == 5
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=90)
    assert p.returncode == 0, out
    assert '"method": "/memlake.v1.IngestService/Remember"' in out  # one log line per request
    assert out.count(key) == 1  # the bootstrap key is printed once, never logged
    p = serve()
    try:
        with MemlakeClient(f"127.0.0.1:{port}", api_key=key) as c:
            assert sorted(m.id for m in c.list_all()) == sorted(ids)
            assert c.get(ids[0]).type == pb.MEMORY_TYPE_EVENT
    finally:
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=90)
        assert key not in out  # a restart does not show the key again
