"""What an agent receives: GetContext on LoCoMo at several token budgets.

Ingests a LoCoMo-format file like bench/locomo.py, then for every question of categories
1-4 asks GetContext (the question as intent, the conversation's user as scope) at each
budget and reports context recall (the share of the question's evidence turns inside the
returned context) per budget and category, the tokens used, and Search recall@10 from the
same run for comparison. Where bpe_openai is installed it also counts the rendered context
with GPT-4o's o200k BPE, to show how far memlake's WordPiece count is from it.

    python bench/context.py --data ../shared/data/locomo10-dev.json \
        --audit ../shared/data/locomo10-dev-audit.json --out bench/out/context.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, cpu_info, percentile, tenant_api_key, write_json  # noqa: E402
from bench.locomo import CATEGORIES, _ingest, questions  # noqa: E402
from memlake.client import MemlakeClient, scope  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402

BUDGETS = (250, 500, 1000, 2000)
NAMES = {1: "multi-hop", 2: "temporal", 3: "open-dom", 4: "single-hop"}


def _bpe():
    try:
        from bpe_openai import get_encoding

        return get_encoding("o200k_base")
    except Exception:  # noqa: BLE001 - optional
        return None


def measure(c: MemlakeClient, data, audit, ids) -> dict:
    bpe = _bpe()
    rec = {b: {cat: [] for cat in CATEGORIES} for b in BUDGETS}
    search10 = {cat: [] for cat in CATEGORIES}
    used = {b: [] for b in BUDGETS}
    ratio = {b: [] for b in BUDGETS}
    lat = {b: [] for b in BUDGETS}
    for ci, user, cat, question, ev in questions(data, audit, ids):
        if not ev:
            continue
        r = c.search(question, scope=scope(user), types=[pb.MEMORY_TYPE_CONVERSATION])
        got = {ids[ci].get(x.memory.id) for x in r.results[:10]}
        search10[cat].append(len(ev & got) / len(ev))
        for b in BUDGETS:
            t = time.perf_counter()
            ctx = c.context(scope=scope(user), intent=question, token_budget=b)
            lat[b].append((time.perf_counter() - t) * 1000)
            got = {ids[ci].get(i.memory.id) for i in ctx.items}
            rec[b][cat].append(len(ev & got) / len(ev))
            used[b].append(ctx.token_count)
            if bpe is not None and ctx.rendered:
                ratio[b].append(ctx.token_count / len(bpe.encode(ctx.rendered)))

    def mean(xs):
        return round(sum(xs) / len(xs), 4) if xs else None

    out = {"budgets": {}, "search_recall_at_10": {}}
    all_s = [x for cat in CATEGORIES for x in search10[cat]]
    out["search_recall_at_10"] = {
        "all": mean(all_s),
        **{str(cat): mean(search10[cat]) for cat in CATEGORIES},
    }
    for b in BUDGETS:
        all_r = [x for cat in CATEGORIES for x in rec[b][cat]]
        out["budgets"][str(b)] = {
            "context_recall": {"all": mean(all_r), **{str(k): mean(rec[b][k]) for k in CATEGORIES}},
            "tokens_used_mean": mean(used[b]),
            "tokens_used_max": max(used[b]) if used[b] else None,
            "wordpiece_over_o200k": {
                "mean": mean(ratio[b]),
                "p5": round(percentile(ratio[b], 5), 3) if ratio[b] else None,
                "p95": round(percentile(ratio[b], 95), 3) if ratio[b] else None,
            },
            "context_ms": {
                "p50": round(percentile(lat[b], 50), 2),
                "p99": round(percentile(lat[b], 99), 2),
            },
        }
    out["questions"] = len(all_s)
    return out


def _f(x) -> str:
    return f"{x:>12.3f}" if x is not None else f"{'-':>12}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--audit", default="")
    p.add_argument("--out", default="bench/out/context.json")
    p.add_argument("--embedder", default="", help="server embedder (default: the server's)")
    args = p.parse_args(argv)
    args.addr = ""
    data = json.loads(Path(args.data).read_text())
    audit = json.loads(Path(args.audit).read_text()) if args.audit else {}
    tmp = tempfile.TemporaryDirectory(prefix="memlake-context-")
    server = Server(
        Path(tmp.name) / "data", {"MEMLAKE_EMBEDDER": args.embedder} if args.embedder else {}
    )
    try:
        server.wait_serving()
        key = tenant_api_key(server.addr, server.operator_key(), "context-bench")
        with MemlakeClient(server.addr, api_key=key, timeout=120) as c:
            ids, max_seq, _, n_turns = _ingest(c, args, data)
            c.search("warm up", scope=scope("x"), min_seq=max_seq, timeout=600)
            r = measure(c, data, audit, ids)
    finally:
        server.stop()
        tmp.cleanup()
    r.update(data=args.data, audit=args.audit, turns=n_turns, cpu=cpu_info())
    cpu = r["cpu"]
    print(
        f"\nGetContext on {args.data}: {r['questions']} questions; CPU {cpu['model']} "
        f"({cpu['cpus']} cpus; {' '.join(cpu['simd_flags'])})"
    )
    s = r["search_recall_at_10"]
    print(
        f"{'':>14}"
        + "".join(f"{n:>12}" for n in ["all", *NAMES.values()])
        + "   tokens used (mean/max)  WordPiece/o200k"
    )
    print(f"{'search @10':>14}" + "".join(_f(s[k]) for k in ["all", "1", "2", "3", "4"]))
    for b in BUDGETS:
        x = r["budgets"][str(b)]
        cr = x["context_recall"]
        w = x["wordpiece_over_o200k"]
        wtxt = f"{w['mean']} ({w['p5']}-{w['p95']})" if w["mean"] else "-"
        print(
            f"{'context ' + str(b):>14}"
            + "".join(_f(cr[k]) for k in ["all", "1", "2", "3", "4"])
            + f"   {x['tokens_used_mean']:>8}/{x['tokens_used_max']:<6}  {wtxt}"
        )
    write_json(args.out, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
