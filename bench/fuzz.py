"""Fuzz every RPC of a running memlake: requests generated from the message descriptors
(tests/fuzzing.py) and raw garbage bodies, against `memlake serve` in a child process.
Counts answers by status code; fails (exit 1) on any UNKNOWN, INTERNAL or hang (a call
that ran past its deadline), or if the server is not SERVING afterwards.

    make bench-fuzz                       # embedded default (SQLite), 10,000 per RPC
    make bench-fuzz N=2000 DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/x \\
        REDIS_URL=redis://127.0.0.1:6379/13
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, cpu_info, tenant_api_key, write_json  # noqa: E402
from memlake.client import MemlakeClient  # noqa: E402
from tests.fuzzing import ALLOWED, garbage, requests, rpcs  # noqa: E402

TIMEOUT = 10.0


def _reason(exc: grpc.RpcError) -> str:
    from google.rpc import error_details_pb2

    try:
        status = rpc_status.from_call(exc)
    except Exception:  # noqa: BLE001
        return ""
    for d in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return info.reason
    return ""


def one(rpc, channel, request, metadata) -> str:
    t0 = time.monotonic()
    try:
        rpc.call(channel, request, metadata, timeout=TIMEOUT)
        return "OK"
    except grpc.RpcError as exc:
        code = exc.code().name
        if code == "DEADLINE_EXCEEDED" and (
            time.monotonic() - t0 >= TIMEOUT - 0.05 and _reason(exc) == ""
        ):
            return "HANG"
        return code


def progress(done: int, total: int, label: str, t0: float) -> None:
    width = 30
    fill = int(width * done / max(total, 1))
    rate = done / max(time.monotonic() - t0, 1e-9)
    sys.stderr.write(
        f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{total} {label:<40} {rate:6.0f}/s"
    )
    sys.stderr.flush()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000, help="generated requests per RPC")
    ap.add_argument("--garbage", type=int, default=1_000, help="garbage bodies per RPC")
    ap.add_argument("--database-url", default="")
    ap.add_argument("--redis-url", default="")
    ap.add_argument("--only", default="", help="substring of the RPC names to run")
    ap.add_argument("--out", default="bench/out/fuzz.json")
    args = ap.parse_args()

    env = {"MEMLAKE_EMBEDDER": "hash"}
    if args.database_url:
        env["MEMLAKE_DATABASE_URL"] = args.database_url
    if args.redis_url:
        env["MEMLAKE_REDIS_URL"] = args.redis_url
    tmp = Path(tempfile.mkdtemp(prefix="memlake-fuzz-"))
    server = Server(tmp / "data", env)
    server.wait_serving()
    targets = [r for r in rpcs() if args.only in r.path]
    counts: dict[str, collections.Counter] = {}
    total = len(targets) * (args.n + args.garbage)
    done, t0 = 0, time.monotonic()
    operator = server.operator_key()
    cfg = dict(deadline=None, database=None, suppress_health_check=list(HealthCheck))
    try:
        for rpc in targets:
            c = counts[rpc.name] = collections.Counter()
            # A tenant per RPC: EraseSubject may erase its whole tenant (and its keys).
            key = tenant_api_key(server.addr, operator, f"fuzz{uuid.uuid4().hex[:8]}")
            client = MemlakeClient(server.addr, api_key=key)
            channel = next(iter(client._channels.values()))

            def record(code: str, rpc=rpc, c=c) -> None:
                nonlocal done
                c[code] += 1
                done += 1
                if done % 50 == 0:
                    progress(done, total, rpc.name, t0)

            @settings(max_examples=args.n, **cfg)
            @given(requests(rpc))
            def gen(request):
                record(one(rpc, channel, request, client.metadata))  # noqa: B023

            gen()

            @settings(max_examples=args.garbage, **cfg)
            @given(garbage)
            def junk(body):
                req = [body] if rpc.client_streaming else body  # noqa: B023
                record("garbage:" + one(rpc, channel, req, client.metadata))  # noqa: B023

            junk()
            client.close()
        sys.stderr.write("\n")
        with grpc.insecure_channel(server.addr) as ch:
            status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        serving = status.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        server.stop()
    elapsed = time.monotonic() - t0
    totals: collections.Counter = collections.Counter()
    print(f"{'rpc':<22} {'calls':>7}  codes")
    for name, c in counts.items():
        for k, v in c.items():
            totals[k.removeprefix("garbage:")] += v
        codes = ", ".join(f"{k}={v}" for k, v in sorted(c.items()))
        print(f"{name:<22} {sum(c.values()):>7}  {codes}")
    print(
        f"{'total':<22} {sum(totals.values()):>7}  "
        + ", ".join(f"{k}={v}" for k, v in sorted(totals.items()))
    )
    bad = {k: v for k, v in totals.items() if k not in ALLOWED and k != "OK"}
    print(
        f"server SERVING afterwards: {serving}; {elapsed:.0f} s; backend "
        f"{'postgres' if args.database_url else 'sqlite'}; bad: {bad or 'none'}"
    )
    write_json(
        args.out,
        {
            "backend": "postgres" if args.database_url else "sqlite",
            "per_rpc_generated": args.n,
            "per_rpc_garbage": args.garbage,
            "counts": {k: dict(v) for k, v in counts.items()},
            "totals": dict(totals),
            "serving_after": serving,
            "seconds": round(elapsed, 1),
            "cpu": cpu_info(),
        },
    )
    return 0 if serving and not bad else 1


if __name__ == "__main__":
    sys.exit(main())
