"""What the HTTP/JSON gateway adds over calling gRPC directly.

Starts `memlake serve` (all-in-one, its gateway on a free port), writes --memories events for
one user, then times the same calls, one client, sequentially, through each interface:
GetMemory (a database read) and SearchMemories (query embedding and index search), over gRPC
(the Python SDK) and over HTTP/JSON (urllib, keep-alive off: one TCP connection per call,
as curl does). Prints a table, writes JSON.

    python bench/interfaces.py --out bench/out/interfaces.json [--embedder hash|minilm]
        [--memories 2000] [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Server, cpu_info, free_port, percentile, tenant_api_key, write_json  # noqa: E402
from memlake import memories  # noqa: E402
from memlake.client import MemlakeClient, scope  # noqa: E402


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench/out/interfaces.json")
    ap.add_argument("--embedder", default="hash")
    ap.add_argument("--memories", type=int, default=2000)
    ap.add_argument("--calls", type=int, default=300)
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="memlake-bench-")
    http_port = free_port()
    server = Server(
        Path(tmp.name) / "data",
        {"MEMLAKE_EMBEDDER": a.embedder, "MEMLAKE_HTTP_PORT": str(http_port)},
    )
    print(f"starting memlake on {server.addr}, HTTP on :{http_port} ...", flush=True)
    try:
        server.wait_serving()
        key = tenant_api_key(server.addr, server.operator_key(), "bench")
        base = f"http://127.0.0.1:{http_port}"
        with MemlakeClient(server.addr, api_key=key) as c:
            t0 = datetime(2024, 1, 1, tzinfo=UTC)
            batch = [
                memories.event(
                    f"event {i}: met person {i % 97} about topic {i % 13}",
                    user="u",
                    occurred_at=t0 + timedelta(hours=i),
                )
                for i in range(a.memories)
            ]
            ids, seq = [], 0
            for i in range(0, len(batch), 500):
                r = c.remember_batch(batch[i : i + 500])
                ids += [x.memory.id for x in r.results]
                seq = max(seq, r.seq)
            c.search("warm up", scope=scope("u"), min_seq=seq)
            print(f"wrote {len(ids)} memories", flush=True)

            def http(path: str, body: dict) -> dict:
                req = urllib.request.Request(
                    base + path,
                    data=json.dumps(body).encode(),
                    headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
                )
                with urllib.request.urlopen(req, timeout=30) as r:
                    return json.loads(r.read())

            queries = [f"who did I meet about topic {i % 13}" for i in range(a.calls)]
            rows = {
                ("GetMemory", "gRPC"): timed(lambda i: c.get(ids[i % len(ids)]), a.calls),
                ("GetMemory", "HTTP/JSON"): timed(
                    lambda i: http(
                        "/memlake.v1.RetrievalService/GetMemory", {"id": ids[i % len(ids)]}
                    ),
                    a.calls,
                ),
                ("SearchMemories", "gRPC"): timed(
                    lambda i: c.search(queries[i], scope=scope("u"), top_k=10), a.calls
                ),
                ("SearchMemories", "HTTP/JSON"): timed(
                    lambda i: http(
                        "/memlake.v1.RetrievalService/SearchMemories",
                        {"query": queries[i], "scope": {"userId": "u"}, "topK": 10},
                    ),
                    a.calls,
                ),
            }
    finally:
        server.stop()
    cpu = cpu_info()
    print(
        f"\nCPU: {cpu['model']} ({cpu['cpus']} cpus); embedder {a.embedder}; "
        f"{a.memories} memories; {a.calls} calls each, one client"
    )
    print(f"{'call':<16}{'interface':<12}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}")
    out = {"cpu": cpu, "embedder": a.embedder, "memories": a.memories, "calls": a.calls, "rows": []}
    for (call, iface), ms in rows.items():
        p = [percentile(ms, q) for q in (50, 95, 99)]
        print(f"{call:<16}{iface:<12}{p[0]:>8.2f}{p[1]:>8.2f}{p[2]:>8.2f}")
        out["rows"].append(
            {"call": call, "interface": iface, "p50_ms": p[0], "p95_ms": p[1], "p99_ms": p[2]}
        )
    write_json(a.out, out)


if __name__ == "__main__":
    main()
