"""Bulk ingest against the embedder alone, in one run: LoCoMo turns through StreamRemember
and through RememberBatch (a fresh all-in-one server each, so no cached embedding helps),
and the model alone on the same texts in length-sorted batches of 32 (one worker, and one
per core). Prints both figures and their ratio (issue 8 asks for at least 0.8), by wall
clock and per CPU-second (the server process's against this one's; steadier when the
machine is shared).

    python bench/ingest.py --data ../shared/data/locomo10-dev.json --out bench/out/ingest.json

Ingest time ends when the write call returns; the index catching up is reported apart.
The machine is shared: compare figures of one run only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.client_vectors import cpu_seconds  # noqa: E402
from bench.common import (  # noqa: E402
    Server,
    best_rate,
    embedder_alone,
    tenant_api_key,
    write_json,
)
from bench.locomo import turn_memories  # noqa: E402
from memlake.client import MemlakeClient, scope  # noqa: E402
from shared.cpu import cpu_info  # noqa: E402
from shared.settings import Settings  # noqa: E402

BATCH = 256  # RememberBatch items per call


def load(path: str, n: int) -> list[list]:
    """Each conversation's StreamRememberRequests, at most n turns in all."""
    import json

    out, left = [], n
    for ci, sample in enumerate(json.loads(Path(path).read_text())):
        reqs = [r for _, r in turn_memories(sample, f"c{ci}", Path(path).name)][:left]
        if reqs:
            out.append(reqs)
        left -= len(reqs)
    return out


def ingest(convs: list[list], mode: str, env: dict) -> dict:
    n = sum(len(c) for c in convs)
    with tempfile.TemporaryDirectory(prefix=f"memlake-ingest-{mode}-") as tmp:
        server = Server(Path(tmp) / "data", env)
        try:
            server.wait_serving()
            key = tenant_api_key(server.addr, server.operator_key(), "bench")
            with MemlakeClient(server.addr, api_key=key, timeout=600) as c:
                top = 0
                cpu0 = cpu_seconds(server.proc.pid)
                t = time.perf_counter()
                for reqs in convs:
                    if mode == "stream":
                        resp = c.stream_remember(reqs)
                        bad = [r.error.message for r in resp.results if r.HasField("error")]
                        top = max(top, resp.seq)
                    else:
                        bad = []
                        for s in range(0, len(reqs), BATCH):
                            resp = c.remember_batch([r.memory for r in reqs[s : s + BATCH]])
                            bad += [r.error.message for r in resp.results if r.HasField("error")]
                            top = max(top, resp.seq)
                    assert not bad, bad[:3]
                secs = time.perf_counter() - t
                cpu = cpu_seconds(server.proc.pid) - cpu0
                t = time.perf_counter()
                c.search("warm up", scope=scope("c0"), min_seq=top, timeout=600)
                catch_up = time.perf_counter() - t
        finally:
            server.stop()
    return {"turns": n, "per_s": round(n / secs, 1), "s": round(secs, 2),
            "per_server_cpu_s": round(n / cpu, 1),
            "index_catch_up_s": round(catch_up, 2)}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/locomo10-dev.json")
    )
    p.add_argument("--n", type=int, default=2000, help="turns (from the first conversations)")
    p.add_argument("--modes", default="stream,batch")
    p.add_argument("--out", default="bench/out/ingest.json")
    args = p.parse_args(argv)
    info = cpu_info(setting=Settings().embed_precision)
    print(f"CPU {info['model']}; {info['cores']} cores; flags {' '.join(info['flags'])}; "
          f"path {info['chosen']}; load {os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
    convs = load(args.data, args.n)
    raw = embedder_alone(r.memory for reqs in convs for r in reqs)
    best, best_cpu = best_rate(raw), best_rate(raw, per_cpu_s=True)
    print(f"embedder alone, length-sorted batches of 32 (texts/s): {raw}", flush=True)
    result = {"cpu": info, "embedder_alone_per_s": raw, "modes": {}}
    for mode in args.modes.split(","):
        r = ingest(convs, mode, {})
        r["vs_embedder"] = round(r["per_s"] / best, 2)
        # Per CPU-second (server process vs this one): less swayed by other jobs.
        r["vs_embedder_per_cpu_s"] = round(r["per_server_cpu_s"] / best_cpu, 2)
        result["modes"][mode] = r
        print(
            f"{mode:<6} {r['turns']} turns: {r['per_s']} turns/s ({r['s']} s; index caught up "
            f"{r['index_catch_up_s']} s later); ingest / embedder alone = {r['vs_embedder']}; "
            f"per CPU-second {r['per_server_cpu_s']} vs {best_cpu} = {r['vs_embedder_per_cpu_s']}",
            flush=True,
        )
    result["load_after"] = round(os.getloadavg()[0], 2)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
