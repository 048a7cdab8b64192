"""LoCoMo turn-level retrieval recall over the gRPC API.

Reads any file in LoCoMo's format (locomo10.json or a subset), ingests every turn as a
CONVERSATION memory (one user scope per conversation, the session date as occur time,
image captions kept), asks every question of categories 1-4 with SearchMemories and
reports recall@k (share of a question's evidence turns in the top k, averaged), per
category, plus ingest throughput and search latency measured at the client.

    python bench/locomo.py --data ../shared/data/locomo10-dev.json \
        --audit ../shared/data/locomo10-dev-audit.json --out bench/out/locomo.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (  # noqa: E402
    Server,
    best_rate,
    embedder_alone,
    percentile,
    tenant_api_key,
    write_json,
)
from memlake.client import MemlakeClient, find_api_key, scope, ts  # noqa: E402
from memlake.v1 import ingest_service_pb2 as ipb  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402

KS = (1, 5, 10, 20, 50)
TUNED = 3  # conversations 0-2 of the dev file are what ranking was tuned on
CATEGORIES = (1, 2, 3, 4)
DIA = re.compile(r"D\d+:\d+")
DATE_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%d %B %Y", "%Y-%m-%d")


def parse_date(s: str) -> datetime | None:
    for fmt in DATE_FORMATS:
        try:
            return datetime.strptime(s.strip(), fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return None


def evidence_ids(raw) -> list[str]:
    """Normalises evidence lists; some source ids are malformed ("D8:6; D9:17")."""
    out: list[str] = []
    for item in raw or []:
        out += DIA.findall(str(item))
    return list(dict.fromkeys(out))


def sessions(conv: dict) -> list[tuple[int, datetime | None, list[dict]]]:
    out = []
    for key, turns in conv.items():
        m = re.fullmatch(r"session_(\d+)", key)
        if m and isinstance(turns, list):
            n = int(m.group(1))
            out.append((n, parse_date(conv.get(f"session_{n}_date_time", "")), turns))
    return sorted(out, key=lambda x: x[0])


def turn_text(t: dict) -> str:
    """A turn's text, with the caption of an image it shares."""
    text = t.get("text", "")
    if t.get("blip_caption"):
        text = f"{text} [shares an image: {t['blip_caption']}]"
    return text


def turn_memories(sample: dict, user: str, source_uri: str):
    """(dia_id, StreamRememberRequest) for every turn, in conversation order."""
    for n, date, turns in sessions(sample["conversation"]):
        base = date or datetime(2000, 1, 1, tzinfo=UTC)
        for j, t in enumerate(turns):
            m = pb.Memory(
                type=pb.MEMORY_TYPE_CONVERSATION,
                content=turn_text(t),
                scope=scope(user, session_id=f"session_{n}"),
            )
            m.conversation.speaker = t.get("speaker", "")
            m.occur_time.CopyFrom(ts(base + timedelta(seconds=j)))
            m.source.kind, m.source.document_uri = "import", source_uri
            m.source.message_id = t.get("dia_id", "")
            yield (
                t.get("dia_id", ""),
                ipb.StreamRememberRequest(memory=m, request_id=f"{user}/{t.get('dia_id', j)}"),
            )


# Ranking weights switched off one at a time by --ablate (server settings; no re-ingest).
ABLATIONS = {
    "no speaker cue": {"MEMLAKE_RANK_SPEAKER_BOOST": "0"},
    "no date cue": {"MEMLAKE_RANK_DATE_BOOST": "0"},
    "no time cue": {"MEMLAKE_RANK_TIME_BOOST": "0"},
    "no question factor": {"MEMLAKE_RANK_QUESTION_FACTOR": "1"},
    "no echo penalty": {"MEMLAKE_RANK_ECHO_PENALTY": "0"},
    "no dense keep": {"MEMLAKE_RANK_DENSE_KEEP": "0"},
    "no outcome turn": {"MEMLAKE_RANK_OUTCOME": "0"},
    "no lexical gate": {"MEMLAKE_RANK_GATE_HI": "0"},
    "no neighbour smoothing": {"MEMLAKE_RANK_DENSE_NEXT": "0", "MEMLAKE_RANK_LEXICAL_PREV": "0"},
    "no window BM25": {"MEMLAKE_RANK_WINDOW_WEIGHT": "0"},
    "dense only (alpha 1)": {"MEMLAKE_RANK_ALPHA": "1"},
    "BM25 only (alpha 0)": {"MEMLAKE_RANK_ALPHA": "0"},
    "no cues, no smoothing": {
        "MEMLAKE_RANK_SPEAKER_BOOST": "0", "MEMLAKE_RANK_DATE_BOOST": "0",
        "MEMLAKE_RANK_TIME_BOOST": "0", "MEMLAKE_RANK_DENSE_NEXT": "0",
        "MEMLAKE_RANK_LEXICAL_PREV": "0", "MEMLAKE_RANK_WINDOW_WEIGHT": "0",
        "MEMLAKE_RANK_QUESTION_FACTOR": "1", "MEMLAKE_RANK_ECHO_PENALTY": "0",
        "MEMLAKE_RANK_DENSE_KEEP": "0", "MEMLAKE_RANK_OUTCOME": "0", "MEMLAKE_RANK_GATE_HI": "0",
    },
}  # fmt: skip


def run(args) -> dict:
    data = json.loads(Path(args.data).read_text())
    audit = json.loads(Path(args.audit).read_text()) if args.audit else {}
    tenant = args.tenant or f"locomo-{int(time.time())}"
    if args.addr:
        key = tenant_api_key(args.addr, find_api_key(), tenant)
        with MemlakeClient(args.addr, api_key=key, timeout=60) as c:
            return _bench(c, args, data, audit)
    tmp = tempfile.TemporaryDirectory(prefix="memlake-locomo-")
    data_dir = Path(tmp.name) / "data"
    base_env = {"MEMLAKE_EMBEDDER": args.embedder} if args.embedder else {}
    server = Server(data_dir, base_env)
    print(f"starting memlake on {server.addr} (data in {tmp.name}) ...", flush=True)
    try:
        server.wait_serving()
        key = tenant_api_key(server.addr, server.operator_key(), tenant)
        with MemlakeClient(server.addr, api_key=key, timeout=60) as c:
            result = _bench(c, args, data, audit)
        if args.ablate:
            result["ablations"] = {}
            for name, env in ABLATIONS.items():
                server.stop()
                server = Server(data_dir, {**base_env, **env})
                server.wait_serving()
                with MemlakeClient(server.addr, api_key=key, timeout=60) as c:
                    r = _questions(c, data, audit, result["_ids"])
                result["ablations"][name] = {"env": env, **r}
                print(
                    f"  {name:<24} recall@5 {r['recall_at']['5']:.3f}  "
                    f"@10 {r['recall_at']['10']:.3f}",
                    flush=True,
                )
        return result
    finally:
        server.stop()
        tmp.cleanup()


def _ingest(client, args, data) -> tuple[list[dict[str, str]], int, float, int]:
    ids: list[dict[str, str]] = []
    n_turns, max_seq = 0, 0
    t0 = time.perf_counter()
    for ci, sample in enumerate(data):
        user = str(sample.get("sample_id", f"conv-{ci}"))
        pairs = list(turn_memories(sample, user, Path(args.data).name))
        resp = client.stream_remember([r for _, r in pairs])
        if resp.failed:
            errs = [r.error.message for r in resp.results if r.HasField("error")][:3]
            raise RuntimeError(f"{resp.failed} turns failed to ingest: {errs}")
        ids.append({r.memory.id: dia for (dia, _), r in zip(pairs, resp.results, strict=True)})
        n_turns += len(pairs)
        max_seq = max(max_seq, resp.seq)
        print(f"  ingested conversation {ci} ({user}): {len(pairs)} turns", flush=True)
    return ids, max_seq, time.perf_counter() - t0, n_turns


def questions(data, audit, ids):
    """(conversation index, user, category, question, evidence dia ids) for every question of
    categories 1-4 whose evidence turns were ingested; the audit's evidence where it has it."""
    for ci, sample in enumerate(data):
        user = str(sample.get("sample_id", f"conv-{ci}"))
        for qi, q in enumerate(sample.get("qa", [])):
            cat = q.get("category")
            if cat not in CATEGORIES:
                continue
            fix = audit.get(f"locomo_{ci}_qa{qi}")
            ev = set(evidence_ids(fix["correct_evidence"] if fix else q.get("evidence")))
            yield ci, user, cat, q["question"], ev & set(ids[ci].values())


def _questions(client, data, audit, ids) -> dict:
    hits = {k: [] for k in KS}
    by_cat = {c: {k: [] for k in KS} for c in CATEGORIES}
    by_part: dict[str, dict[int, list[float]]] = {}
    lat: list[float] = []
    skipped = 0
    for ci, user, cat, question, ev in questions(data, audit, ids):
        if not ev:
            skipped += 1
            continue
        t = time.perf_counter()
        r = client.search(
            question, scope=scope(user), types=[pb.MEMORY_TYPE_CONVERSATION], top_k=max(KS)
        )
        lat.append((time.perf_counter() - t) * 1000)
        ranked = [ids[ci].get(x.memory.id) for x in r.results]
        for k in KS:
            rec = len(ev & set(ranked[:k])) / len(ev)
            hits[k].append(rec)
            by_cat[cat][k].append(rec)
            part = "tuned" if ci < TUNED else "held_out"
            by_part.setdefault(part, {kk: [] for kk in KS})[k].append(rec)

    def mean(xs):
        return round(sum(xs) / len(xs), 4) if xs else None

    return {
        "questions": len(hits[1]),
        "questions_without_evidence": skipped,
        "recall_at": {str(k): mean(hits[k]) for k in KS},
        "recall_at_10_by_category": {str(c): mean(by_cat[c][10]) for c in CATEGORIES},
        "recall_by_category": {
            str(c): {str(k): mean(by_cat[c][k]) for k in KS} for c in CATEGORIES
        },
        "questions_by_category": {str(c): len(by_cat[c][1]) for c in CATEGORIES},
        # Ranking is tuned on conversations 0-2 of the dev file; 3-4 are held out.
        "recall_by_part": {
            part: {str(k): mean(v[k]) for k in KS} for part, v in sorted(by_part.items())
        },
        "search_ms": {
            "p50": round(percentile(lat, 50), 2),
            "p95": round(percentile(lat, 95), 2),
            "p99": round(percentile(lat, 99), 2),
            "mean": round(sum(lat) / len(lat), 2) if lat else None,
        },
    }


def raw_embedder(data, source_uri: str, embedder: str) -> dict:
    """The model alone on every turn's index text (bench.common.embedder_alone); nothing
    for the hash embedder."""
    if embedder == "hash":
        return {}
    return embedder_alone(
        req.memory
        for ci, sample in enumerate(data)
        for _, req in turn_memories(sample, f"c{ci}", source_uri)
    )


def _bench(client, args, data, audit) -> dict:
    from shared.cpu import cpu_info
    from shared.settings import Settings

    info = cpu_info(setting=Settings().embed_precision)
    print(f"CPU {info['model']}; {info['cores']} cores; flags {' '.join(info['flags'])}")
    raw = raw_embedder(data, Path(args.data).name, args.embedder)
    if raw:
        print(f"  embedder alone (texts/s by workers): {raw}", flush=True)
    ids, max_seq, ingest_s, n_turns = _ingest(client, args, data)
    # Readable: the first search waits until the index has applied every write.
    client.search("warm up", scope=scope("x"), min_seq=max_seq, timeout=600)
    result = {
        "data": str(args.data),
        "audit": str(args.audit or ""),
        "conversations": len(data),
        "turns": n_turns,
        **_questions(client, data, audit, ids),
        "ingest_per_s": round(n_turns / ingest_s, 1),
        "ingest_s": round(ingest_s, 2),
        "embedder_alone_per_s": raw,
        "ingest_vs_embedder": (
            round(n_turns / ingest_s / best_rate(raw), 2) if raw and not args.addr else None
        ),
        "cpu": info,
        "embedder": args.embedder or "server default",
        "addr": args.addr or "own all-in-one process",
    }
    result["_ids"] = ids
    return result


def print_table(r: dict) -> None:
    print()
    print(
        f"LoCoMo retrieval: {r['conversations']} conversations, {r['turns']} turns, "
        f"{r['questions']} questions (categories 1-4){' with audit' if r['audit'] else ''}"
    )
    print("recall@k     " + "  ".join(f"{k:>6}" for k in KS))
    print("all          " + "  ".join(f"{r['recall_at'][str(k)]:>6.3f}" for k in KS))
    names = {1: "multi-hop", 2: "temporal", 3: "open-dom", 4: "single-hop"}
    for c in CATEGORIES:
        row = r["recall_by_category"][str(c)]
        print(
            f"{c} {names[c]:<10} "
            + "  ".join(f"{row[str(k)]:>6.3f}" if row[str(k)] is not None else "     -" for k in KS)
            + f"   (n={r['questions_by_category'][str(c)]})"
        )
    for part, row in r.get("recall_by_part", {}).items():
        print(f"{part:<12} " + "  ".join(f"{row[str(k)]:>6.3f}" for k in KS))
    s = r["search_ms"]
    print(
        f"ingest {r['ingest_per_s']} turns/s ({r['ingest_s']} s); search over gRPC "
        f"p50 {s['p50']} ms, p95 {s['p95']} ms, p99 {s['p99']} ms"
    )
    if r.get("embedder_alone_per_s"):
        print(
            f"embedder alone in this run: {r['embedder_alone_per_s']} texts/s; "
            f"ingest / best of those: {r['ingest_vs_embedder']}"
        )
    c = r.get("cpu") or {}
    print(f"CPU {c.get('model')}, flags {' '.join(c.get('flags', []))}, path {c.get('chosen')}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--audit", default="")
    p.add_argument("--out", default="bench/out/locomo.json")
    p.add_argument("--addr", default="", help="a running memlake; default: start one")
    p.add_argument("--tenant", default="")
    p.add_argument("--embedder", default="", help="server embedder when starting one")
    p.add_argument(
        "--ablate",
        action="store_true",
        help="then rerun the questions with each ranking weight switched off",
    )
    args = p.parse_args(argv)
    r = run(args)
    r.pop("_ids", None)
    print_table(r)
    for name, a in r.get("ablations", {}).items():
        print(f"ablation {name:<24} " + "  ".join(f"{a['recall_at'][str(k)]:>6.3f}" for k in KS))
    write_json(args.out, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
