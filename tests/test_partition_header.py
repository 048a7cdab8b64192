"""The SDK names the index partition of a user-scoped query in a request header
(x-memlake-partition: "<tenant>/u:<user>", the value the replicas compute themselves),
so a service mesh can hash on it; unscoped queries carry none. A plain gRPC server
records what reaches it (no storage is involved: this is about the wire)."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from memlake import client as sdk
from memlake.client import MemlakeClient, scope
from memlake.v1 import admin_service_pb2 as apb
from memlake.v1 import admin_service_pb2_grpc as apb_grpc
from memlake.v1 import retrieval_service_pb2 as rpb
from memlake.v1 import retrieval_service_pb2_grpc as rpb_grpc
from retrieval_service.index import partition_key
from retrieval_service.ownership import PARTITION_HEADER, partition_header


class Recorder(rpb_grpc.RetrievalServiceServicer, apb_grpc.AdminServiceServicer):
    def __init__(self, admin: bool) -> None:
        self.admin, self.seen = admin, []

    def _record(self, method, context) -> None:
        md = dict(context.invocation_metadata())
        self.seen.append((method, md.get(PARTITION_HEADER)))

    def SearchMemories(self, request, context):
        self._record("SearchMemories", context)
        return rpb.SearchMemoriesResponse()

    def GetContext(self, request, context):
        self._record("GetContext", context)
        return rpb.GetContextResponse()

    def GetMemoryByKey(self, request, context):
        self._record("GetMemoryByKey", context)
        return rpb.GetMemoryByKeyResponse()

    def GetCaller(self, request, context):
        if not self.admin:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not here")
        return apb.GetCallerResponse(tenant="acme")


@pytest.fixture(params=[True, False], ids=["admin-served", "retrieval-only"])
def server(request):
    rec = Recorder(admin=request.param)
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    rpb_grpc.add_RetrievalServiceServicer_to_server(rec, srv)
    apb_grpc.add_AdminServiceServicer_to_server(rec, srv)
    port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    yield rec, f"127.0.0.1:{port}"
    srv.stop(0)


def test_scoped_queries_carry_the_partition_header(server):
    rec, addr = server
    assert sdk.PARTITION_HEADER == PARTITION_HEADER
    with MemlakeClient(addr, api_key="mlk_bootstrap_" + "x" * 43) as c:
        c.search("harbour walk", scope=scope("alice"))
        c.context(scope=scope("alice", session_id="s1"), intent="walk")
        c.get_by_key("background", "name", scope=scope("bob"))
        c.search("harbour walk")  # unscoped: fans out, no partition
        c.search("notes", scope=scope(agent_id="helper"))  # an agent's: not one partition
    tenant = "acme" if rec.admin else ""  # learned from GetCaller when it is served
    want = partition_header(partition_key(tenant, "alice", ""))
    assert rec.seen == [
        ("SearchMemories", want),
        ("GetContext", want),
        ("GetMemoryByKey", partition_header(partition_key(tenant, "bob", ""))),
        ("SearchMemories", None),
        ("SearchMemories", None),
    ]
