"""The right item first in a small scope: precision@1 and MRR of SearchMemories over four
personas of 34-36 memories of all six types (bench/data/smallscope.json, written once and
not tuned on). Ranking is tuned on bench/data/smallscope-dev.json instead (three other
personas, same format), so this set stays held out.

    python bench/smallscope.py --out bench/out/smallscope.json
    python bench/smallscope.py --data bench/data/smallscope-dev.json --out bench/out/ss-dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, cpu_info, percentile, tenant_api_key, write_json  # noqa: E402
from memlake.client import MemlakeClient, scope, ts  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402

DATA = Path(__file__).parent / "data" / "smallscope.json"
TYPES = {
    "background": pb.MEMORY_TYPE_BACKGROUND,
    "event": pb.MEMORY_TYPE_EVENT,
    "conversation": pb.MEMORY_TYPE_CONVERSATION,
    "reflection": pb.MEMORY_TYPE_REFLECTION,
    "skill": pb.MEMORY_TYPE_SKILL,
}


def load(c: MemlakeClient, persona: dict) -> tuple[dict[str, str], int]:
    """Writes a persona's memories in order; returns label -> memory id, and the last seq."""
    user, ids, seq = persona["user"], {}, 0
    for m in persona["memories"]:
        if m["type"] == "fact":
            r = c.assert_fact(m["subject"], m["predicate"], m["value"], scope=scope(user))
            ids[m["label"]], seq = r.fact.memory_id, max(seq, r.seq)
            continue
        mem = pb.Memory(type=TYPES[m["type"]], content=m["content"], scope=scope(user))
        if m["type"] == "background":
            mem.background.key = m["key"]
        elif m["type"] == "event":
            mem.occur_time.CopyFrom(ts(datetime.fromisoformat(m["when"]).replace(tzinfo=UTC)))
        elif m["type"] == "conversation":
            mem.scope.session_id = m["session"]
            mem.conversation.speaker = m["speaker"]
            mem.conversation.role = m["speaker"]
        elif m["type"] == "reflection":
            mem.reflection.key = m["key"]
            mem.reflection.confidence = m["confidence"]
            mem.reflection.evidence_memory_ids.extend(ids[e] for e in m["evidence"])
        elif m["type"] == "skill":
            mem.skill.name = m["name"]
            mem.skill.steps.extend(m["steps"])
        r = c.remember(mem)
        ids[m["label"]], seq = r.memory.id, max(seq, r.seq)
    return ids, seq


def run(c: MemlakeClient, data: dict) -> dict:
    per_q, lat = [], []
    for persona in data["personas"]:
        ids, seq = load(c, persona)
        c.search("warm up", scope=scope(persona["user"]), min_seq=seq, timeout=120)
        label_of = {v: k for k, v in ids.items()}
        for q in persona["questions"]:
            t = time.perf_counter()
            r = c.search(q["q"], scope=scope(persona["user"]), top_k=10)
            lat.append((time.perf_counter() - t) * 1000)
            ranked = [label_of.get(x.memory.id, "?") for x in r.results]
            rank = next((i + 1 for i, lab in enumerate(ranked) if lab in q["answer"]), None)
            per_q.append(
                {"user": persona["user"], "q": q["q"], "answer": q["answer"], "rank": rank,
                 "top3": ranked[:3]}
            )  # fmt: skip
    n = len(per_q)
    return {
        "questions": n,
        "precision_at_1": round(sum(1 for x in per_q if x["rank"] == 1) / n, 4),
        "mrr": round(sum(1 / x["rank"] for x in per_q if x["rank"]) / n, 4),
        "recall_at_10": round(sum(1 for x in per_q if x["rank"]) / n, 4),
        "search_ms": {"p50": round(percentile(lat, 50), 2), "p99": round(percentile(lat, 99), 2)},
        "per_question": per_q,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="bench/out/smallscope.json")
    p.add_argument(
        "--data", default=str(DATA), help="the set (bench/data/smallscope-dev.json: the tuning set)"
    )
    p.add_argument("--embedder", default="", help="server embedder (default: the server's)")
    p.add_argument("--env", action="append", default=[], help="server setting NAME=VALUE")
    p.add_argument("--verbose", action="store_true", help="print every miss")
    a = p.parse_args(argv)
    data = json.loads(Path(a.data).read_text())
    env = dict(kv.split("=", 1) for kv in a.env)
    if a.embedder:
        env["MEMLAKE_EMBEDDER"] = a.embedder
    tmp = tempfile.TemporaryDirectory(prefix="memlake-small-")
    server = Server(Path(tmp.name) / "data", env)
    try:
        server.wait_serving()
        key = tenant_api_key(server.addr, server.operator_key(), "smallscope")
        with MemlakeClient(server.addr, api_key=key, timeout=60) as c:
            r = run(c, data)
    finally:
        server.stop()
        tmp.cleanup()
    r.update(cpu=cpu_info(), env=env, data=a.data)
    if a.verbose:
        for x in r["per_question"]:
            if x["rank"] != 1:
                print(
                    f"  rank {x['rank']}: {x['user']}: {x['q']} -> {x['top3']} (want {x['answer']})"
                )
    print(
        f"small scope: {r['questions']} questions, precision@1 {r['precision_at_1']:.3f}, "
        f"MRR {r['mrr']:.3f}, recall@10 {r['recall_at_10']:.3f}; search p50 "
        f"{r['search_ms']['p50']} ms; CPU {r['cpu']['model']} ({' '.join(r['cpu']['simd_flags'])})"
    )
    write_json(a.out, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
