"""Cue/trigger recall: a later remark that needs an earlier turn sharing no word with it
("my knee has been bad since the weekend" needs "I signed up for the trail race on
Saturday"). Each trigger of bench/data/cuetrigger.json becomes one more turn of a LoCoMo dev
conversation (its first speaker, at the end of a session, so some 550 turns surround it);
its cue is searched in that conversation. Reports recall@k of the trigger for memlake's
ranking and for dense-only search over the same index (alpha 1, no cues, no smoothing):
ranking must not lose what plain dense retrieval finds.

    python bench/cuetrigger.py --data ../shared/data/locomo10-dev.json \
        --out bench/out/cuetrigger.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, cpu_info, percentile, tenant_api_key, write_json  # noqa: E402
from bench.locomo import sessions, turn_memories  # noqa: E402
from memlake.client import MemlakeClient, scope  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402

PAIRS = Path(__file__).parent / "data" / "cuetrigger.json"
KS = (1, 5, 10, 20)
# Dense-only: the cosine with the stored vectors and nothing else.
DENSE_ONLY = {
    "MEMLAKE_RANK_ALPHA": "1", "MEMLAKE_RANK_SPEAKER_BOOST": "0",
    "MEMLAKE_RANK_DATE_BOOST": "0", "MEMLAKE_RANK_TIME_BOOST": "0",
    "MEMLAKE_RANK_QUESTION_FACTOR": "1", "MEMLAKE_RANK_DENSE_NEXT": "0",
    "MEMLAKE_RANK_LEXICAL_PREV": "0", "MEMLAKE_RANK_ECHO_PENALTY": "0",
}  # fmt: skip


RERUNS = {"no_dense_keep": {"MEMLAKE_RANK_DENSE_KEEP": "0"}, "dense_only": DENSE_ONLY}


def padded(data: list[dict], pairs: list[dict]) -> tuple[list[dict], list[tuple[int, str]]]:
    """A copy of the conversations with pair i's trigger appended to a session of
    conversation i % len(data) (sessions taken in turn, spread over the conversation);
    returns it and, per pair, (conversation index, the trigger's dia id)."""
    out = copy.deepcopy(data)
    where = []
    for i, pair in enumerate(pairs):
        ci = i % len(out)
        conv = out[ci]["conversation"]
        numbers = [n for n, _, _ in sessions(conv)]
        n = numbers[(i // len(out) * 7 + ci) % len(numbers)]
        dia = f"CT:{pair['id']}"
        conv[f"session_{n}"].append(
            {"speaker": conv["speaker_a"], "dia_id": dia, "text": pair["trigger"]}
        )
        where.append((ci, dia))
    return out, where


def _ask(c: MemlakeClient, data, pairs, where) -> dict:
    ranks, lat = [], []
    for pair, (ci, dia) in zip(pairs, where, strict=True):
        user = str(data[ci].get("sample_id", f"conv-{ci}"))
        t = time.perf_counter()
        r = c.search(pair["cue"], scope=scope(user), types=[pb.MEMORY_TYPE_CONVERSATION], top_k=50)
        lat.append((time.perf_counter() - t) * 1000)
        got = [x.memory.source.message_id for x in r.results]
        ranks.append(got.index(dia) + 1 if dia in got else None)
    n = len(ranks)
    return {
        "recall_at": {str(k): round(sum(1 for x in ranks if x and x <= k) / n, 4) for k in KS},
        "mrr": round(sum(1 / x for x in ranks if x) / n, 4),
        "ranks": ranks,
        "search_ms": {"p50": round(percentile(lat, 50), 2), "p99": round(percentile(lat, 99), 2)},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="LoCoMo-format conversations to pad with")
    p.add_argument("--out", default="bench/out/cuetrigger.json")
    p.add_argument("--env", action="append", default=[], help="server setting NAME=VALUE")
    a = p.parse_args(argv)
    pairs = json.loads(PAIRS.read_text())["pairs"]
    data, where = padded(json.loads(Path(a.data).read_text()), pairs)
    env = dict(kv.split("=", 1) for kv in a.env)
    tmp = tempfile.TemporaryDirectory(prefix="memlake-cue-")
    data_dir = Path(tmp.name) / "data"
    server = Server(data_dir, env)
    result = {"pairs": len(pairs), "data": a.data, "env": env}
    try:
        server.wait_serving()
        key = tenant_api_key(server.addr, server.operator_key(), "cuetrigger")
        with MemlakeClient(server.addr, api_key=key, timeout=120) as c:
            seq = 0
            for ci, sample in enumerate(data):
                user = str(sample.get("sample_id", f"conv-{ci}"))
                reqs = [r for _, r in turn_memories(sample, user, "cuetrigger")]
                resp = c.stream_remember(reqs)
                if resp.failed:
                    raise RuntimeError(f"{resp.failed} turns failed to ingest")
                seq = max(seq, resp.seq)
                print(f"  ingested conversation {ci} ({user}): {len(reqs)} turns", flush=True)
            c.search("warm up", scope=scope("x"), min_seq=seq, timeout=600)
            result["memlake"] = _ask(c, data, pairs, where)
        for name, extra in RERUNS.items():
            server.stop()
            server = Server(data_dir, {**env, **extra})
            server.wait_serving()
            with MemlakeClient(server.addr, api_key=key, timeout=120) as c:
                result[name] = _ask(c, data, pairs, where)
    finally:
        server.stop()
        tmp.cleanup()
    result["cpu"] = cpu_info()
    for name in ("memlake", *RERUNS):
        r = result[name]
        print(
            f"{name:<13} recall@1 {r['recall_at']['1']:.3f}  @5 {r['recall_at']['5']:.3f}  "
            f"@10 {r['recall_at']['10']:.3f}  @20 {r['recall_at']['20']:.3f}  MRR {r['mrr']:.3f}"
        )
    write_json(a.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
