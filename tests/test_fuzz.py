"""Generated requests for every RPC (strategies derived from the message descriptors):
no call may end UNKNOWN or INTERNAL, or run past its deadline, and the server stays
SERVING. `make bench-fuzz` runs the same at >= 10,000 cases per RPC."""

from __future__ import annotations

import os

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

from tests.fuzzing import ALLOWED, garbage, requests, rpcs

EXAMPLES = int(os.environ.get("MEMLAKE_FUZZ_EXAMPLES", "100"))  # per backend: 200 per RPC
RPCS = rpcs()


def _settings(n: int):
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )


def _code(rpc, channel, request, metadata) -> str:
    try:
        rpc.call(channel, request, metadata, timeout=10)
        return "OK"
    except grpc.RpcError as exc:
        return exc.code().name


@pytest.mark.parametrize("rpc", RPCS, ids=lambda r: r.name)
def test_generated_requests(suite, rpc):
    with suite.client() as client:
        channel = next(iter(client._channels.values()))
        bad: list = []

        @_settings(EXAMPLES)
        @given(requests(rpc))
        def run(request):
            code = _code(rpc, channel, request, client.metadata)
            if code not in ALLOWED:
                bad.append((code, request))

        run()

        @_settings(max(EXAMPLES // 10, 10))
        @given(garbage)
        def run_garbage(body):
            code = _code(rpc, channel, [body] if rpc.client_streaming else body, client.metadata)
            if code not in ALLOWED:
                bad.append((code, body))

        run_garbage()
        assert not bad, f"{len(bad)} bad answers, first: {bad[0][0]} for {str(bad[0][1])[:500]}"
        stub = health_pb2_grpc.HealthStub(channel)
        resp = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
