"""Ingest of memories that bring their own vectors (Memory.vector): memories/s through
StreamRemember over gRPC into a fresh all-in-one server (SQLite), then searches that bring
their own query vector. Vectors are random unit vectors of the server model's dimension:
their meaning does not matter for write throughput.

    python bench/client_vectors.py --n 20000 --out bench/out/client_vectors.json
    python bench/client_vectors.py --database-url postgresql+psycopg://postgres@127.0.0.1/DB

The machine is shared: compare figures of one run only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, percentile, tenant_api_key, write_json  # noqa: E402
from memlake.client import MemlakeClient, scope, ts  # noqa: E402
from memlake.v1 import ingest_service_pb2 as ipb  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402
from shared.cpu import cpu_info  # noqa: E402
from shared.minilm import DIM, MiniLMEmbedder  # noqa: E402

MODEL = MiniLMEmbedder.name


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests(n: int, users: int, kind: str, rng) -> list[ipb.StreamRememberRequest]:
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        user = f"u{i % users}"
        if kind == "turn":
            m = pb.Memory(
                type=pb.MEMORY_TYPE_CONVERSATION,
                content=f"turn {i} of a conversation",
                scope=scope(user, session_id=f"s{i % (users * 4)}"),
            )
            m.conversation.speaker = "user"
        else:
            m = pb.Memory(type=pb.MEMORY_TYPE_EVENT, content=f"event {i}", scope=scope(user))
            m.event.SetInParent()
        m.occur_time.CopyFrom(ts(t0 + timedelta(seconds=i)))
        m.vector.model = MODEL
        m.vector.values.extend(vecs[i].tolist())
        out.append(ipb.StreamRememberRequest(memory=m, request_id=f"r{i}"))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--kind", choices=["event", "turn"], default="event")
    p.add_argument("--out", default="bench/out/client_vectors.json")
    p.add_argument(
        "--database-url", default="", help="an empty Postgres database (default: SQLite)"
    )
    args = p.parse_args(argv)
    info = cpu_info()
    print(f"CPU {info['model']}; {info['cores']} cores; flags {' '.join(info['flags'])}")
    rng = np.random.default_rng(0)
    reqs = requests(args.n, args.users, args.kind, rng)
    with tempfile.TemporaryDirectory(prefix="memlake-vec-") as tmp:
        env = {"MEMLAKE_DATABASE_URL": args.database_url} if args.database_url else {}
        server = Server(Path(tmp) / "data", env=env)
        try:
            server.wait_serving()
            key = tenant_api_key(server.addr, server.operator_key(), "bench")
            with MemlakeClient(server.addr, api_key=key, timeout=600) as c:
                cpu0 = cpu_seconds(server.proc.pid)
                t = time.perf_counter()
                resp = c.stream_remember(reqs)
                secs = time.perf_counter() - t
                server_cpu = cpu_seconds(server.proc.pid) - cpu0
                assert resp.failed == 0, [r.error.message for r in resp.results[:3]]
                t = time.perf_counter()
                c.search("warm up", scope=scope("u0"), min_seq=resp.seq, timeout=600)
                index_s = time.perf_counter() - t
                lat = []
                for i in range(200):
                    q = pb.Vector(model=MODEL, values=reqs[i].memory.vector.values)
                    t = time.perf_counter()
                    r = c.search("", scope=scope(f"u{i % args.users}"), vector=q)
                    lat.append((time.perf_counter() - t) * 1000)
                    assert r.results[0].memory.content == reqs[i].memory.content
        finally:
            server.stop()
    result = {
        "cpu": info,
        "n": args.n,
        "database": "postgresql" if args.database_url else "sqlite",
        "kind": args.kind,
        "users": args.users,
        "ingest_per_s": round(args.n / secs, 1),
        "ingest_s": round(secs, 2),
        # CPU seconds the server used while ingesting (both cores, index tailing included):
        # less sensitive to other jobs on a shared machine than the wall-clock rate.
        "server_cpu_s": round(server_cpu, 2),
        "per_server_cpu_s": round(args.n / server_cpu, 1),
        "index_catch_up_s": round(index_s, 2),
        "search_vector_ms": {
            "p50": round(percentile(lat, 50), 2),
            "p99": round(percentile(lat, 99), 2),
        },
    }
    print(
        f"{args.n} {args.kind} memories with client vectors: {result['ingest_per_s']}/s "
        f"({secs:.1f} s; server CPU {server_cpu:.1f} s = {result['per_server_cpu_s']}/CPU-s; "
        f"index caught up {index_s:.1f} s later); search by vector "
        f"p50 {result['search_vector_ms']['p50']} ms, p99 {result['search_vector_ms']['p99']} ms"
    )
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
