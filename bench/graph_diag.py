"""Why the graph path's top 10 differs from the exact path's: builds one partition of n
memories (the vectors and texts of bench/scale.py: real MiniLM embeddings of LoCoMo
sentence mixes, derived ones past the pool), then answers the same LoCoMo questions on
the exact path and on the graph path under several candidate settings (graph depth,
efSearch, neighbours, lexical candidates), printing top-10 agreement and latency.

    python bench/graph_diag.py --n 100000 [--m 32]

Needs the pool cache bench/scale.py writes (bench/out/scale-pool-seed7.*).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import faiss  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import scale  # noqa: E402
from bench.common import percentile, write_json  # noqa: E402
from retrieval_service.index import Filters  # noqa: E402
from retrieval_service.index import candidates as pt  # noqa: E402
from retrieval_service.index import graph as pg  # noqa: E402
from retrieval_service.ranking import search  # noqa: E402


def variants(spec: str) -> list[dict]:
    """'depth=1,2;ef=2,4' -> every combination (depth: times want; ef: times k);
    'shipped' alone: the service's own settings."""
    out = [{}]
    for part in spec.split(";"):
        if part == "shipped":
            continue
        if not part:
            continue
        k, _, vals = part.partition("=")
        out = [{**o, k: float(v)} for o in out for v in vals.split(",")]
    return out


DEFAULTS = {
    "graph_depth": pt.graph_depth,
    "graph_ef": pt.graph_ef,
    "NEIGHBOURS": getattr(pt, "NEIGHBOURS", None),
    "LEXICAL_CANDIDATES": pt.LEXICAL_CANDIDATES,
    "lexical_depth": getattr(pt, "lexical_depth", None),
    "LEXICAL_GRAPH": getattr(pt, "LEXICAL_GRAPH", None),
}


def apply(v: dict) -> None:
    """Settings a variant names replace the service's own; the rest stay as shipped."""
    for name, value in DEFAULTS.items():
        setattr(pt, name, value)
    if "depth" in v:
        pt.graph_depth = lambda want, count: int(want * v["depth"])
    if "ef" in v:
        pt.graph_ef = lambda k: max(int(v["ef"] * k), 64)
    if "nb" in v:
        pt.NEIGHBOURS = bool(v["nb"])
    if "lex" in v:
        pt.LEXICAL_CANDIDATES = int(v["lex"])
        pt.lexical_depth = lambda k, count: max(k, int(v["lex"]))
    if "lexgraph" in v:
        pt.LEXICAL_GRAPH = bool(v["lexgraph"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--variants", default="depth=1,2,4;ef=2;nb=0,1")
    # The graph's storage is the partition's bfloat16 rows (graph.GRAPH_STORAGE); the
    # 8- and 4-bit copies this once compared are gone. Kept for the cache file's name.
    ap.add_argument("--graph-storage", default="bf16", choices=["bf16"])
    ap.add_argument("--m", type=int, default=pg.HNSW_M)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--pool", type=int, default=0, help="use at most this many real vectors")
    ap.add_argument("--out", default="bench/out/graph_diag.json")
    ap.add_argument("--cache", action="store_true", help="keep the built partition in out/")
    ap.add_argument("--build-threads", type=int, default=1, help="faiss threads for the graph")
    ap.add_argument("--profile", action="store_true", help="profile the last variant")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    pg.HNSW_M = args.m
    sents, names, questions = scale.locomo(Path(scale.DEFAULT_DATA))
    vpath, tpath = scale.cache_paths(args.seed)
    pool = np.load(vpath, mmap_mode="r")
    rnd = random.Random(args.seed)
    qtexts = rnd.sample(questions, min(args.queries, len(questions)))
    qcache = scale.OUT_DIR / f"graph-diag-queries-{args.seed}-{len(qtexts)}.npy"
    if qcache.exists():
        qv = np.load(qcache)
    else:
        from shared.minilm import MiniLMEmbedder

        qv = MiniLMEmbedder(threads=1).embed(qtexts)
        np.save(qcache, qv)
    cfg = {
        "pool_path": str(vpath),
        "texts_path": str(tpath),
        "pool": min(len(pool), args.pool) if args.pool else len(pool),
        "sents": sents,
        "names": names,
        "model": "all-MiniLM-L6-v2-int8",
        "noise": 0.1,
        "seed": args.seed,
        "n": args.n,
        "per_partition": 1000,
    }
    cache = scale.OUT_DIR / f"graph-diag-{args.n}-{cfg['pool']}-{args.graph_storage}-{args.m}.bin"
    if args.cache and cache.exists():  # the partition (graph included) as a snapshot holds it
        from retrieval_service.index import IndexManager, snapshots

        t = time.perf_counter()
        index = IndexManager(None, pool.shape[1], embed_model=cfg["model"])
        p = snapshots.decode(cache.read_bytes(), pool.shape[1], index.ann_threshold, 1, None)
        index.partitions[("bench", "u:user-0")] = p
        real, graph_s = min(args.n, cfg["pool"]), None
        print(f"loaded {cache.name} in {time.perf_counter() - t:.1f} s", flush=True)
    else:
        index, real, put_s, rows_rss, vecs = scale.build(cfg, "one")
        (p,) = index.partitions.values()
        print(f"{args.n} rows ({real} real vectors) in {put_s:.1f} s", flush=True)
        t = time.perf_counter()
        faiss.omp_set_num_threads(args.build_threads)
        p.build_ann()
        faiss.omp_set_num_threads(1)
        graph_s = time.perf_counter() - t
        print(f"graph ({args.graph_storage}, M={args.m}) in {graph_s:.1f} s", flush=True)
        if args.cache:
            from retrieval_service.index import snapshots

            cache.write_bytes(snapshots.encode(snapshots.copy_partition(p)))
    scale.warm_lexical([p])
    f = Filters(user_id="user-0")
    nq = len(qtexts)

    def run(threshold):
        p.ann_threshold = threshold
        ms, tops = [], []
        for i in range(nq):
            t = time.perf_counter()
            hits = search(index, "bench", qv[i], qtexts[i], f, scale.TOP_K)
            ms.append((time.perf_counter() - t) * 1000)
            tops.append([h.memory_id for h in hits])
        return ms, tops

    # The dense channel alone, against float32 truth: the stored (bfloat16) rows scanned
    # exactly, and the graph's rows re-scored from them as candidates() takes them.
    if "vecs" not in locals():
        texts = json.loads(Path(tpath).read_text())["texts"][: cfg["pool"]]
        vecs, _ = scale.corpus(args.n, real, pool[: cfg["pool"]], texts, sents, 0.1, args.seed)
    m = p.mask(f, time.time())
    truth = scale.exact_truth([p] * nq, [m] * nq, qv, vecs)
    stored = [scale.dense_exact(p, m, qv[i], scale.TOP_K) for i in range(nq)]
    k = min(pt.graph_depth(scale.WANT, int(m.sum())), int(m.sum()))
    graph = [scale.dense_hnsw(p, m, qv[i], k, pt.graph_ef(k)) for i in range(nq)]
    dense = {"stored_exact_recall_at_10": scale.recall(stored, truth),
             "graph_rescored_recall_at_10": scale.recall(graph, truth), "graph_k": k}  # fmt: skip
    print(f"dense recall@10 vs float32: {dense}", flush=True)
    del vecs
    ms, exact = run(scale.EXACT)
    res = {"n": args.n, "real_vectors": real, "graph_s": graph_s, "graph": args.graph_storage,
           "m": args.m, "exact_ms_p50": percentile(ms, 50), "variants": [], **dense}  # fmt: skip
    print(f"exact: p50 {percentile(ms, 50):.2f} ms", flush=True)
    for v in variants(args.variants):
        apply(v)
        ms, got = run(scale.HNSW)
        a = scale.agreement(exact, got)
        row = {**v, "agreement": a, "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99)}
        res["variants"].append(row)
        print(f"{json.dumps(v):50s} agree {a:.4f}  p50 {row['p50_ms']:.2f} ms  "
              f"p99 {row['p99_ms']:.2f} ms", flush=True)  # fmt: skip
    if args.profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        run(scale.HNSW)
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)
    write_json(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
