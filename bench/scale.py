"""Scale: search latency and recall@10 of the approximate index (HNSW) against exact search,
at 10k, 100k and 1M memories in one partition and spread over many user partitions, with
build time and memory use. Prints tables and writes JSON.

Everything runs in-process through the retrieval service's own code: an IndexManager fed
MemoryRecord-like rows with IndexManager._put (as load_all does), graphs built with
Partition.build_ann, queries answered by Partition.candidates and ranking.search. The exact
and approximate paths are chosen by setting a partition's ann_threshold (0 = the graph,
huge = exact), which is how candidates() decides.

Vectors are real all-MiniLM-L6-v2 embeddings (synthetic ones gave misleading recall):
a pool of distinct texts, each two or three sentences from different LoCoMo turns, is
embedded once and cached under bench/out/ (the first run embeds --pool texts at about
250/s on one thread). Tiers larger than the pool are filled with vectors derived from
real ones (normalised mean of two random pool vectors plus small noise); the output says
which. Queries are real embeddings of LoCoMo questions (not in the corpus). Each config
runs in a fresh process, so its memory figures are its own; faiss and BLAS run on one
thread, as one query does in the service.

    python bench/scale.py --out bench/out/scale.json     # 10k, 100k, 1M: ~15 min cached
    python bench/scale.py --quick                        # 10k and 100k only: ~3 min

The first run also embeds the pool (100k texts: 7-15 min on this 2-core box; --pool
sets the size, and a larger pool extends the cache). The 1M tier peaks near 9.5 GB RSS.
"""

from __future__ import annotations

import os

# One thread for BLAS (exact scans) as for faiss, before numpy is imported; the
# environment can override it to see what a second core does.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime, timedelta  # noqa: E402
from multiprocessing import get_context  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faiss  # noqa: E402

from bench.common import ROOT, percentile, write_json  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402
from retrieval_service import index as ix  # noqa: E402
from retrieval_service.index import COLUMNS, STRINGS, Filters, IndexManager  # noqa: E402
from retrieval_service.ranking import search  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo10-dev.json"
OUT_DIR = ROOT / "bench" / "out"
TOP_K = 10  # SearchMemories' default top_k
WANT = max(TOP_K * 5, 50)  # what ranking.search asks each partition for
SERVICE_EF = max(2 * WANT, 64)  # Partition.candidates' efSearch for that
T0 = datetime(2024, 1, 1, tzinfo=UTC)
TURNS_PER_SESSION = 20
EXACT, HNSW = 10**15, 0  # ann_threshold values that force each path


# -- the text pool and its embeddings ----------------------------------------------------


def locomo(path: Path) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(turn id, sentence) pairs, the speakers' names, and every distinct question."""
    data = json.loads(path.read_text())
    sents: list[tuple[str, str]] = []
    names: list[str] = []
    questions: list[str] = []
    for ci, sample in enumerate(data):
        conv = sample["conversation"]
        names += [conv.get("speaker_a", "A"), conv.get("speaker_b", "B")]
        for key, turns in conv.items():
            if not (re.fullmatch(r"session_\d+", key) and isinstance(turns, list)):
                continue
            for t in turns:
                for s in re.split(r"(?<=[.!?])\s+", t.get("text", "")):
                    if len(s.split()) >= 3:
                        sents.append((f"{ci}:{t.get('dia_id', '')}", s.strip()))
        questions += [q["question"] for q in sample.get("qa", []) if q.get("question")]
    return sents, list(dict.fromkeys(names)), list(dict.fromkeys(questions))


def recombine(sents: list[tuple[str, str]], rnd: random.Random) -> str:
    """Two or three sentences from different turns, as one memory's text."""
    while True:
        picks = rnd.sample(sents, rnd.choice((2, 3)))
        if len({turn for turn, _ in picks}) == len(picks):
            return " ".join(s for _, s in picks)


def pool_texts(sents, n: int, seed: int) -> list[str]:
    """n distinct texts; the first m of a larger pool are the pool of m (so caches grow)."""
    rnd = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        t = recombine(sents, rnd)
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


def cache_paths(seed: int) -> tuple[Path, Path]:
    return OUT_DIR / f"scale-pool-seed{seed}.npy", OUT_DIR / f"scale-pool-seed{seed}.json"


def embed_pool(texts: list[str], seed: int, embedder) -> tuple[np.ndarray, dict]:
    """Real embeddings of texts, from the cache where it has them; the rest are embedded
    (and the cache extended every 10k texts, so an interrupted run keeps its work)."""
    vpath, tpath = cache_paths(seed)
    vecs = np.zeros((0, embedder.dim), np.float32)
    if vpath.exists() and tpath.exists():
        meta = json.loads(tpath.read_text())
        cached = np.load(vpath)
        m = min(len(cached), len(meta["texts"]), len(texts))
        if meta.get("model") == embedder.name and meta["texts"][:m] == texts[:m]:
            vecs = cached[:m]
        else:
            print("  pool cache does not match these texts/model; embedding again", flush=True)
    stats = {"cached": int(min(len(vecs), len(texts))), "embedded": 0, "per_s": None}
    if len(vecs) >= len(texts):
        return vecs[: len(texts)], stats
    todo = len(texts) - len(vecs)
    print(f"  embedding {todo} pool texts (cache {vpath.name}) ...", flush=True)
    t0 = time.perf_counter()
    step = 10000
    for s in range(len(vecs), len(texts), step):
        chunk = embedder.embed(texts[s : s + step])
        vecs = np.concatenate([vecs, chunk])
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        np.save(vpath, vecs)
        tpath.write_text(json.dumps({"model": embedder.name, "texts": texts[: len(vecs)]}))
        rate = (len(vecs) - stats["cached"]) / (time.perf_counter() - t0)
        print(f"    {len(vecs)}/{len(texts)} ({rate:.0f} texts/s)", flush=True)
    stats["embedded"] = todo
    stats["per_s"] = round(todo / (time.perf_counter() - t0), 1)
    return vecs, stats


def corpus(n: int, real: int, pool: np.ndarray, texts: list[str], sents, noise: float, seed: int):
    """n vectors and texts: the pool's first `real` ones, then vectors derived from them
    (normalised mean of two random pool vectors plus noise of norm about `noise`)."""
    vecs = np.empty((n, pool.shape[1]), np.float32)
    vecs[:real] = pool[:real]
    out_texts = list(texts[:real])
    if n > real:
        rng = np.random.default_rng([seed, n, real])
        sigma = noise / np.sqrt(pool.shape[1])
        for s in range(real, n, 100000):
            e = min(n, s + 100000)
            a = pool[rng.integers(0, len(pool), e - s)]
            b = pool[rng.integers(0, len(pool), e - s)]
            v = (a + b) / 2 + rng.standard_normal(a.shape, dtype=np.float32) * sigma
            vecs[s:e] = v / np.linalg.norm(v, axis=1, keepdims=True)
        rnd = random.Random(f"{seed}/{n}/{real}")
        out_texts += [recombine(sents, rnd) for _ in range(n - real)]
    return vecs, out_texts


# -- records as the index receives them --------------------------------------------------


@dataclass(slots=True)
class Row:
    """The MemoryRecord fields the index reads (IndexManager._put, record_to_proto)."""

    id: int
    tenant: str
    type: int
    user_id: str
    agent_id: str
    session_id: str
    content: str
    attributes: dict
    importance: float
    source: dict
    create_time: datetime
    occur_time: datetime | None
    expire_time: datetime | None
    turn_index: int | None
    etag: str
    embedding: bytes
    current: bool = True
    revision: int = 1
    fact_status: int | None = None
    conflicted: bool = False
    key: str | None = None


def user_of(i: int, layout: str, per: int) -> str:
    return "user-0" if layout == "one" else f"user-{i // per}"


def make_row(i: int, vec: np.ndarray, text: str, layout: str, per: int, names) -> Row:
    """Memory i: a CONVERSATION turn (20 turns a session, two speakers taking turns)."""
    sess = i // TURNS_PER_SESSION
    when = T0 + timedelta(minutes=i)
    return Row(
        id=i + 1,
        tenant="bench",
        type=pb.MEMORY_TYPE_CONVERSATION,
        user_id=user_of(i, layout, per),
        agent_id="",
        session_id=f"session-{sess}",
        content=text,
        attributes={"speaker": names[(2 * sess + i) % len(names)]},
        importance=0.5,
        source={"kind": "import", "message_id": f"m{i}"},
        create_time=when,
        occur_time=when,
        expire_time=None,
        turn_index=i % TURNS_PER_SESSION,
        etag=f"e{i:x}",
        embedding=vec.tobytes(),
    )


# -- measuring ----------------------------------------------------------------------------


def rss() -> tuple[int, int]:
    """(current, peak) resident set size of this process in bytes."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) * 1024
    return out["VmRSS"], out["VmHWM"]


def stats(ms: list[float]) -> dict:
    return {
        "p50": round(percentile(ms, 50), 3),
        "p99": round(percentile(ms, 99), 3),
        "mean": round(sum(ms) / len(ms), 3) if ms else None,
        "n": len(ms),
    }


def timed(fn, n_queries: int, budget_s: float, min_n: int = 30, warm: int = 3) -> tuple:
    """Runs fn(i) for queries 0..n-1 (after a few warm-up calls), stopping early once the
    budget is spent and min_n ran; returns (latencies in ms, results)."""
    for i in range(min(warm, n_queries)):
        fn(i)
    ms, results = [], []
    start = time.perf_counter()
    for i in range(n_queries):
        t = time.perf_counter()
        r = fn(i)
        ms.append((time.perf_counter() - t) * 1000)
        results.append(r)
        if i + 1 >= min_n and time.perf_counter() - start > budget_s:
            break
    return ms, results


# The dense half of Partition.candidates, given the mask: the ANN's own cost and quality.
def dense_exact(p, m: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    rows = np.nonzero(m)[0]
    s = p._dense(rows, q)
    k = min(k, len(s))
    top = np.argpartition(-s, k - 1)[:k]
    return rows[top[np.argsort(-s[top], kind="stable")]]


def dense_hnsw(p, m: np.ndarray, q: np.ndarray, k: int, ef: int) -> np.ndarray:
    """The graph's k nearest rows, re-scored from the partition's stored vectors (the
    graph's own copy is 8-bit) and ordered by that score, as candidates() uses them."""
    bitmap = np.packbits(m, bitorder="little")
    sel = faiss.IDSelectorBitmap(p.n, faiss.swig_ptr(bitmap))
    params = faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
    _, labels = p.ann.search(q.reshape(1, -1), k, params=params)
    rows = labels[0][labels[0] >= 0]
    return rows[np.argsort(-p._dense(rows, q), kind="stable")]


class ExactGraph:
    """Stands in for a partition's graph with exact answers under a fixed mask, to tell
    what ranking over the candidate union does from what the graph misses."""

    def __init__(self, p, m: np.ndarray) -> None:
        self.p, self.rows = p, np.nonzero(m)[0]
        self.ntotal = p.n  # as a graph over every row (candidates() reads it)

    def search(self, x: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
        s = self.p._dense(self.rows, x[0])
        top = np.argsort(-s, kind="stable")[:k]
        return s[top][None], self.rows[top][None]


def recall(got: list[np.ndarray], truth: list[np.ndarray], k: int = TOP_K) -> float:
    vals = [
        len(set(g[:k].tolist()) & set(t[:k].tolist())) / k for g, t in zip(got, truth, strict=False)
    ]
    return round(float(np.mean(vals)), 4) if vals else float("nan")


def graph_bytes(p) -> dict:
    ann = p.ann
    h = ann.hnsw
    storage = faiss.downcast_index(ann.storage)
    code = getattr(storage, "code_size", int(ann.d) * 4)
    shared = storage.ntotal > 0 and p.vectors.ctypes.data == int(storage.codes.data())
    return {
        # the graph's own copy; none when its storage is the partition's rows
        "graph_vectors": 0 if shared else int(ann.ntotal) * int(code),
        "graph_links": int(h.neighbors.size()) * 4
        + int(h.offsets.size()) * 8
        + int(h.levels.size()) * 4,
    }


def bm25_bytes(b) -> int:
    """Postings arrays and dict; a pending posting counts its two list slots (its doc's
    int object is shared by the doc's terms and counted nowhere)."""
    bm = sys.getsizeof(b.postings) + b.doc_len.nbytes + b.live.nbytes
    for term, ps in b.postings.items():
        bm += sys.getsizeof(term) + sys.getsizeof(ps) + ps.docs.nbytes + ps.tfs.nbytes
        bm += sum(sys.getsizeof(x) for x in (ps.one, ps.new_docs, ps.new_tfs) if x is not None)
    return bm


def partition_bytes(parts) -> dict:
    """Bytes by component, numpy buffers exactly and Python objects by sys.getsizeof
    (shared objects counted once; a pending posting counted as its list slot)."""
    out = dict.fromkeys(("vectors", "columns", "bm25", "strings_docs", "maps"), 0)
    seen: set[int] = set()

    def obj(o) -> int:
        if id(o) in seen:
            return 0
        seen.add(id(o))
        return sys.getsizeof(o)

    for p in parts:
        # Rows in use: vector capacity beyond them is calloc'ed and untouched.
        out["vectors"] += p.vectors[: p.n].nbytes
        out["columns"] += sum(getattr(p, c).nbytes for c in COLUMNS)
        out["bm25"] += bm25_bytes(p.bm25) + bm25_bytes(p.bm25_window)
        sd = sys.getsizeof(p.docs) + sum(sys.getsizeof(d) for d in p.docs)
        for name in STRINGS:
            col = getattr(p, name)
            sd += sys.getsizeof(col) + sum(obj(s) for s in col)
        out["strings_docs"] += sd
        mp = sys.getsizeof(p.row_of) + sys.getsizeof(p.last_turn)
        rm = p.row_of
        mp += rm.ids.nbytes + rm.rows.nbytes + sys.getsizeof(rm.extra)
        out["maps"] += mp + sys.getsizeof(p)
    return out


def build(cfg: dict, layout: str, vectors_kind: str = "auto") -> tuple:
    """An IndexManager holding cfg['n'] memories in the layout, through _put; the RSS it
    grew by is taken with the inputs still alive, so nothing freed is netted out."""
    pool = np.load(cfg["pool_path"], mmap_mode="r")[: cfg["pool"]]
    texts = json.loads(Path(cfg["texts_path"]).read_text())["texts"][: cfg["pool"]]
    sents = [tuple(x) for x in cfg["sents"]]
    n = cfg["n"]
    # "derived": every vector derived from the pool (a check of what derived ones do).
    real = 0 if vectors_kind == "derived" else min(n, len(pool))
    vecs, rtexts = corpus(n, real, pool, texts, sents, cfg["noise"], cfg["seed"])
    index = IndexManager(None, vecs.shape[1], embed_model=cfg["model"])  # threshold: default
    per = cfg["per_partition"]
    gc.collect()
    rss0, _ = rss()
    t0 = time.perf_counter()
    for i in range(n):
        index._put(make_row(i, vecs[i], rtexts[i], layout, per, cfg["names"]))
    put_s = time.perf_counter() - t0
    gc.collect()
    rss1, _ = rss()
    del rtexts, pool, texts
    gc.collect()
    return index, real, put_s, rss1 - rss0, vecs


def warm_lexical(parts) -> float:
    """Moves every term's pending postings into its arrays, as the first query touching
    the term does after writes, so latencies are the steady state's; returns seconds."""
    t = time.perf_counter()
    for p in parts:
        for b in (p.bm25, p.bm25_window):
            for ps in b.postings.values():
                ps.arrays()
    return time.perf_counter() - t


def agreement(a: list[list[int]], b: list[list[int]]) -> float:
    k = min(len(a), len(b))
    return round(float(np.mean([len(set(a[i]) & set(b[i])) / TOP_K for i in range(k)])), 4)


def measure(index, part, masks, filt, qv, qt, truth, budget, ef=(), parts_of=False) -> dict:
    """Query i goes to partition part[i] with filter filt[i] (masks[i] is its mask): the
    dense scan and the graph, then candidates() and ranking.search on each path."""
    nq, res = len(qt), {}
    ms, got = timed(lambda i: dense_exact(part[i], masks[i], qv[i], TOP_K), nq, budget)
    res["dense_exact_ms"] = stats(ms)
    res["dense_exact_recall_check"] = recall(got, truth)
    ms, got = timed(lambda i: dense_hnsw(part[i], masks[i], qv[i], WANT, SERVICE_EF), nq, budget)
    res["dense_hnsw_ms"] = stats(ms)
    res["recall_at_10"] = recall(got, truth)
    if ef:
        res["ef_sweep"] = {}
        for e in ef:
            ms, got = timed(
                lambda i, e=e: dense_hnsw(part[i], masks[i], qv[i], TOP_K, e), nq, budget
            )
            res["ef_sweep"][str(e)] = {"ms": stats(ms), "recall_at_10": recall(got, truth)}
    top_ids = {}
    queried = list({id(p): p for p in part}.values())
    for name, path in (("exact", EXACT), ("hnsw", HNSW)):
        for p in queried:
            p.ann_threshold = path
        ms, _ = timed(
            lambda i: part[i].candidates(filt[i], time.time(), qv[i], qt[i], WANT), nq, budget
        )
        res[f"candidates_{name}_ms"] = stats(ms)
        ms, top_ids[name] = timed(
            lambda i: [h.memory_id for h in search(index, "bench", qv[i], qt[i], filt[i], TOP_K)],
            nq,
            budget,
        )
        res[f"search_{name}_ms"] = stats(ms)
    # The graph path with a perfect graph: what the candidate union alone changes.
    mask_of = {id(part[i]): masks[i] for i in range(nq)}
    graphs = {id(p): p.ann for p in queried}
    for p in queried:
        p.ann = ExactGraph(p, mask_of[id(p)])
    n_union = min(len(top_ids["exact"]), len(top_ids["hnsw"]))
    union = [
        [h.memory_id for h in search(index, "bench", qv[i], qt[i], filt[i], TOP_K)]
        for i in range(n_union)
    ]
    for p in queried:
        p.ann = graphs[id(p)]
        p.ann_threshold = index.ann_threshold
    if parts_of:  # what both paths pay: the mask and BM25 over the partition
        ms, _ = timed(lambda i: part[i].mask(filt[i], time.time()), nq, budget / 4)
        res["mask_ms"] = stats(ms)
        ms, _ = timed(
            lambda i: (part[i].bm25.scores(qt[i]), part[i].bm25_window.scores(qt[i])),
            nq,
            budget / 4,
        )
        res["bm25_ms"] = stats(ms)
    res["search_agreement_at_10"] = agreement(top_ids["exact"], top_ids["hnsw"])
    res["search_agreement_at_10_perfect_graph"] = agreement(top_ids["exact"], union)
    res["search_hnsw_vs_perfect_graph_at_10"] = agreement(union, top_ids["hnsw"])
    return res


def exact_truth(part, masks, qv, vecs) -> list[np.ndarray]:
    """Exact dense top-10 among the rows each query's filter passes, from the original
    float32 vectors (vecs[id - 1]), not the index's stored (bfloat16) ones."""
    truth: list = [None] * len(qv)
    groups: dict = {}  # queries sharing a partition and mask: one gather, one knn call
    for i in range(len(qv)):
        groups.setdefault((id(part[i]), id(masks[i])), []).append(i)
    for qs in groups.values():
        p, rows = part[qs[0]], np.nonzero(masks[qs[0]])[0]
        x = np.ascontiguousarray(vecs[p.ids[rows] - 1])
        _, lab = faiss.knn(qv[qs], x, TOP_K, faiss.METRIC_INNER_PRODUCT)
        for j, i in enumerate(qs):
            truth[i] = rows[lab[j]]
        del x
    return truth


def run_layout(cfg: dict) -> dict:
    """One tier in one layout, in its own process: build, graphs, then every measurement."""
    faiss.omp_set_num_threads(1)
    ix.graph.HNSW_M = cfg["hnsw_m"]
    layout, n = cfg["layout"], cfg["n"]
    index, real, put_s, rows_rss, vecs = build(cfg, layout, cfg.get("vectors_kind", "auto"))
    keys = sorted(index.partitions, key=lambda k: int(k[1].rsplit("-", 1)[1]))
    parts = [index.partitions[k] for k in keys]
    # The partitions queries go to: the one, or an even sample of the users.
    n_t = min(cfg["sample_partitions"], len(parts)) if layout == "spread" else 1
    step = max(1, len(parts) // n_t)
    targets = [keys[i * step] for i in range(n_t)]
    tparts = [index.partitions[k] for k in targets]
    service_graphs = sum(1 for p in parts if p.needs_ann())
    rss_g0, _ = rss()
    t0 = time.perf_counter()
    for p in tparts:  # the service builds these only above ann_threshold; we always do
        p.build_ann()
    graph_s = time.perf_counter() - t0
    rss_g1, hwm = rss()
    mem = partition_bytes(parts)
    rows_in_graphs = sum(p.n for p in tparts)
    flush_s = warm_lexical(tparts)
    bm25_flushed = (
        sum(bm25_bytes(p.bm25) + bm25_bytes(p.bm25_window) for p in tparts) / rows_in_graphs
    )
    gb = {"graph_vectors": 0, "graph_links": 0}
    for p in tparts:
        for k, v in graph_bytes(p).items():
            gb[k] += v

    qv = np.asarray(cfg["qvecs"], np.float32)
    qt = cfg["qtexts"]
    nq = len(qt)
    part = [tparts[i % n_t] for i in range(nq)]
    filt = [Filters(user_id=targets[i % n_t][1].removeprefix("u:")) for i in range(nq)]
    now = time.time()
    tmask = {id(p): p.mask(filt[j], now) for j, p in enumerate(tparts)}
    masks = [tmask[id(p)] for p in part]
    truth = exact_truth(part, masks, qv, vecs)
    top1 = [float(vecs[part[i].ids[truth[i][0]] - 1] @ qv[i]) for i in range(nq)]
    top10 = [float(vecs[part[i].ids[truth[i][-1]] - 1] @ qv[i]) for i in range(nq)]
    res = measure(
        index,
        part,
        masks,
        filt,
        qv,
        qt,
        truth,
        cfg["budget_s"],
        ef=cfg["ef"] if layout == "one" else (),
        parts_of=True,
    )
    _, hwm_end = rss()
    return {
        "n": n,
        "layout": layout,
        "partitions": len(parts),
        "rows_per_partition": n // len(parts),
        "queried_partitions": n_t,
        "vectors": "real" if real == n else "derived from real",
        "real_vectors": real,
        "derived_vectors": n - real,
        "graphs_service_would_build": service_graphs,
        "graphs_built": len(tparts),
        "build_s": {
            "rows": round(put_s, 2),
            "rows_per_s": round(n / put_s),
            "graph": round(graph_s, 2),
            "graph_rows": rows_in_graphs,
            "bm25_first_queries_flush": round(flush_s, 2),
        },
        "memory": {
            "rss_rows_bytes": rows_rss,
            "rss_graph_bytes": rss_g1 - rss_g0,
            "peak_rss_bytes": max(hwm, hwm_end),
            "rows_components_bytes": mem,
            "graph_components_bytes": gb,
            "rss_per_memory": round(rows_rss / n, 1),
            "components_per_memory": {k: round(v / n, 1) for k, v in mem.items()},
            "bm25_per_memory_after_flush": round(bm25_flushed, 1),
            "rows_components_per_memory": round(sum(mem.values()) / n, 1),
            "graph_per_memory": round(sum(gb.values()) / rows_in_graphs, 1),
            "rss_graph_per_memory": round((rss_g1 - rss_g0) / rows_in_graphs, 1),
        },
        "query_cosine": {
            "top1_p50": round(float(np.median(top1)), 4),
            "top10_p50": round(float(np.median(top10)), 4),
        },
        **res,
    }


def run_sweep(cfg: dict) -> dict:
    """One partition grown through _put (the graph, once built, grows with it) to each size:
    exact against HNSW on the dense scan, candidates() and ranking.search."""
    faiss.omp_set_num_threads(1)
    ix.graph.HNSW_M = cfg["hnsw_m"]
    pool = np.load(cfg["pool_path"], mmap_mode="r")
    texts = json.loads(Path(cfg["texts_path"]).read_text())["texts"]
    sizes = [s for s in cfg["sizes"] if s <= min(len(pool), cfg["pool"])]
    index = IndexManager(None, pool.shape[1], embed_model=cfg["model"])
    qv = np.asarray(cfg["qvecs"], np.float32)
    qt = cfg["qtexts"]
    nq = len(qt)
    f = Filters(user_id="user-0")
    out, done = [], 0
    for size in sizes:
        for i in range(done, size):
            index._put(make_row(i, np.asarray(pool[i]), texts[i], "one", 0, cfg["names"]))
        done = size
        p = index.partitions[("bench", "u:user-0")]
        graph_s = None
        if p.ann is None:
            t = time.perf_counter()
            p.build_ann()
            graph_s = round(time.perf_counter() - t, 2)
        warm_lexical([p])
        m = p.mask(f, time.time())
        part, masks, filt = [p] * nq, [m] * nq, [f] * nq
        truth = exact_truth(part, masks, qv, pool)
        r = {"n": size, **measure(index, part, masks, filt, qv, qt, truth, cfg["budget_s"])}
        if graph_s is not None:
            r["graph_build_s"] = graph_s
        out.append(r)
        print(
            f"    sweep {size:>7}: exact search p50 {r['search_exact_ms']['p50']:.2f} ms, "
            f"hnsw {r['search_hnsw_ms']['p50']:.2f} ms, recall@10 {r['recall_at_10']:.3f}",
            flush=True,
        )
    return {"points": out}


def crossing(points: list[dict], key: str, limit_ms: float) -> float | None:
    """The size at which key's p50 reaches limit_ms, interpolated between sweep points."""
    prev = None
    for p in points:
        v = p[key]["p50"]
        if v > limit_ms:
            if prev is None:
                return float(p["n"])
            n0, v0 = prev
            return n0 + (limit_ms - v0) / (v - v0) * (p["n"] - n0) if v > v0 else float(n0)
        prev = (p["n"], v)
    return None


def recommend(points: list[dict], limit_ms: float) -> dict:
    """The ann_threshold the sweep supports: where the exact path's whole ranking.search
    reaches limit_ms at p50 (rounded down to a thousand rows)."""
    cross = crossing(points, "search_exact_ms", limit_ms)
    wins = next(
        (p["n"] for p in points if p["search_hnsw_ms"]["p50"] * 1.5 <= p["search_exact_ms"]["p50"]),
        None,
    )
    return {
        "limit_ms": limit_ms,
        "exact_search_p50_reaches_limit_at": round(cross) if cross else None,
        "exact_candidates_p50_reaches_limit_at": (
            round(c) if (c := crossing(points, "candidates_exact_ms", limit_ms)) else None
        ),
        "hnsw_search_1_5x_faster_from": wins,
        "recommended_ann_threshold": int(cross // 1000 * 1000) if cross else None,
        "current_default": 20000,
        "rule": "exact ranking.search p50 at the limit, interpolated, rounded down to 1000",
    }


# -- driver -------------------------------------------------------------------------------


def fmt_ms(s: dict) -> str:
    return f"{s['p50']:.2f}/{s['p99']:.2f}"


def mb(b: float) -> str:
    return f"{b / 2**20:.0f}"


def tier_name(n: int) -> str:
    return f"{n // 1000000}M" if n % 1000000 == 0 else f"{n // 1000}k"


def layout_name(x: dict) -> str:
    if x["layout"] == "one":
        return "1 partition"
    return f"{x['partitions']}x{x['rows_per_partition'] // 1000}k"


def print_tables(r: dict) -> None:
    c = r["config"]
    print()
    print(
        f"Scale: {c['model']} ({c['dim']}-d), {c['queries']} LoCoMo questions as queries, "
        f"top_k {TOP_K}, one thread; HNSW M={c['hnsw_m']} efConstruction="
        f"{c['hnsw_ef_construction']}, service efSearch {SERVICE_EF} (k={WANT})"
    )
    print("latency in ms, p50/p99 or p50; dense = the vector search alone (exact scan or graph);")
    print("mask, bm25 = what both paths pay; cand = Partition.candidates; search = the hybrid")
    print("ranking.search. rec@10 = graph dense top-10 vs exact dense top-10. agree = overlap")
    print("of search top-10 on the graph path vs the exact path; agree* = the same with a")
    print("perfect graph (what ranking over the candidate union alone changes)")
    hdr = (
        f"{'tier':<5} {'layout':<11} {'vectors':<17} {'build s':>12} {'exact dense':>11} "
        f"{'hnsw dense':>10} {'rec@10':>6} {'mask':>5} {'bm25':>5} {'cand ex':>7} "
        f"{'cand hn':>7} {'search exact':>13} {'search hnsw':>11} {'agree':>5} {'agree*':>6}"
    )
    print(hdr)
    print("-" * len(hdr))
    for x in r["results"]:
        vec = x["vectors"]
        if x["real_vectors"] and x["derived_vectors"]:
            vec = f"{x['real_vectors'] // 1000}k real+derived"
        b = x["build_s"]
        print(
            f"{tier_name(x['n']):<5} {layout_name(x):<11} {vec:<17} "
            f"{b['rows']:>5.1f}+{b['graph']:<6.1f} "
            f"{fmt_ms(x['dense_exact_ms']):>11} {fmt_ms(x['dense_hnsw_ms']):>10} "
            f"{x['recall_at_10']:>6.3f} {x['mask_ms']['p50']:>5.2f} {x['bm25_ms']['p50']:>5.2f} "
            f"{x['candidates_exact_ms']['p50']:>7.2f} {x['candidates_hnsw_ms']['p50']:>7.2f} "
            f"{fmt_ms(x['search_exact_ms']):>13} {fmt_ms(x['search_hnsw_ms']):>11} "
            f"{x['search_agreement_at_10']:>5.3f} {x['search_agreement_at_10_perfect_graph']:>6.3f}"
        )
    print("build s = rows through IndexManager._put + graphs (one thread; spread: graphs only")
    print("for the queried partitions, which the service would not build at 1k rows). BM25")
    print("postings are flushed to arrays before timing (the first query per term does it)")
    print()
    print("memory (bytes per memory): RSS of the rows, and the components it is made of; graph")
    hdr = (
        f"{'tier':<5} {'layout':<11} {'RSS rows':>8} {'vectors':>7} {'columns':>7} {'bm25':>6} "
        f"{'str+docs':>8} {'maps':>6} {'graph':>6} {'RSS graph':>9} {'total MB':>8} {'peak MB':>7}"
    )
    print(hdr)
    print("-" * len(hdr))
    for x in r["results"]:
        m = x["memory"]
        cp = m["components_per_memory"]
        total = m["rss_rows_bytes"] + (
            m["rss_graph_bytes"] if x["graphs_service_would_build"] else 0
        )
        print(
            f"{tier_name(x['n']):<5} {layout_name(x):<11} {m['rss_per_memory']:>8.0f} "
            f"{cp['vectors']:>7.0f} "
            f"{cp['columns']:>7.0f} {cp['bm25']:>6.0f} {cp['strings_docs']:>8.0f} "
            f"{cp['maps']:>6.0f} {m['graph_per_memory']:>6.0f} {m['rss_graph_per_memory']:>9.0f} "
            f"{mb(total):>8} {mb(m['peak_rss_bytes']):>7}"
        )
    print("(total MB: RSS of rows, plus the graph where the service would build one)")
    ones = [x for x in r["results"] if "ef_sweep" in x]
    if ones:
        print()
        efs = list(ones[0]["ef_sweep"])
        print("efSearch sweep, one partition, k=10 (p50 ms / recall@10); service: k=50, ef=100")
        hdr = f"{'tier':<12}" + "".join(f"{'ef=' + e:>16}" for e in efs) + f"{'service':>16}"
        print(hdr)
        print("-" * len(hdr))
        for x in ones:
            cells = [
                f"{v['ms']['p50']:.3f} / {v['recall_at_10']:.3f}" for v in x["ef_sweep"].values()
            ]
            cells.append(f"{x['dense_hnsw_ms']['p50']:.3f} / {x['recall_at_10']:.3f}")
            name = tier_name(x["n"]) + (" derived" if not x["real_vectors"] else "")
            print(f"{name:<12}" + "".join(f"{cell:>16}" for cell in cells))
    sw = r.get("threshold_sweep")
    if sw:
        print()
        print("ann_threshold sweep: one partition of real vectors, grown through _put")
        hdr = (
            f"{'rows':>7} {'exact dense':>12} {'hnsw dense':>11} {'rec@10':>6} "
            f"{'cand exact':>11} {'cand hnsw':>10} {'search exact':>13} {'search hnsw':>12} "
            f"{'agree':>5} {'agree*':>6}"
        )
        print(hdr)
        print("-" * len(hdr))
        for p in sw["points"]:
            print(
                f"{p['n']:>7} {fmt_ms(p['dense_exact_ms']):>12} {fmt_ms(p['dense_hnsw_ms']):>11} "
                f"{p['recall_at_10']:>6.3f} {fmt_ms(p['candidates_exact_ms']):>11} "
                f"{fmt_ms(p['candidates_hnsw_ms']):>10} {fmt_ms(p['search_exact_ms']):>13} "
                f"{fmt_ms(p['search_hnsw_ms']):>12} {p['search_agreement_at_10']:>5.3f} "
                f"{p['search_agreement_at_10_perfect_graph']:>6.3f}"
            )
        rec = r["recommendation"]
        at = rec["exact_search_p50_reaches_limit_at"]
        if at is None:
            print(f"exact search p50 stays under {rec['limit_ms']} ms over the whole sweep")
            return
        print(
            f"exact search p50 reaches {rec['limit_ms']} ms at about {at} rows "
            f"(candidates() alone: {rec['exact_candidates_p50_reaches_limit_at']}); HNSW "
            f"search 1.5x faster from {rec['hnsw_search_1_5x_faster_from']} rows; recommended "
            f"ann_threshold {rec['recommended_ann_threshold']} (default {rec['current_default']})"
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--out", default="bench/out/scale.json")
    p.add_argument("--tiers", default="10000,100000,1000000")
    p.add_argument("--quick", action="store_true", help="tiers 10k and 100k only")
    p.add_argument("--pool", type=int, default=100000, help="real embeddings (cached)")
    p.add_argument("--per-partition", type=int, default=1000, help="spread layout")
    p.add_argument("--sample-partitions", type=int, default=20, help="spread: queried users")
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--budget", type=float, default=20.0, help="seconds per config at most")
    p.add_argument("--ef", default="16,32,64,128")
    p.add_argument("--sweep", default="1000,2000,5000,10000,15000,20000,30000,50000")
    p.add_argument("--limit-ms", type=float, default=2.0, help="exact search budget")
    p.add_argument("--noise", type=float, default=0.1, help="derived vectors: noise norm")
    p.add_argument("--no-derived-check", action="store_true")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--m", type=int, default=ix.HNSW_M, help="HNSW M of the graphs built")
    args = p.parse_args(argv)
    tiers = [int(t) for t in args.tiers.split(",")]
    if args.quick:
        tiers = [t for t in tiers if t <= 100000]
    t_start = time.perf_counter()

    from shared.minilm import MiniLMEmbedder

    sents, names, questions = locomo(Path(args.data))
    embedder = MiniLMEmbedder(threads=1)
    print(f"pool: {len(sents)} LoCoMo sentences -> {args.pool} texts", flush=True)
    texts = pool_texts(sents, args.pool, args.seed)
    pool, emb_stats = embed_pool(texts, args.seed, embedder)
    rnd = random.Random(args.seed)
    qtexts = rnd.sample(questions, min(args.queries, len(questions)))
    t = time.perf_counter()
    qvecs = embedder.embed(qtexts)
    q_embed_ms = (time.perf_counter() - t) * 1000 / len(qtexts)
    del embedder
    vpath, tpath = cache_paths(args.seed)
    base = {
        "pool_path": str(vpath),
        "texts_path": str(tpath),
        "pool": len(pool),
        "sents": sents,
        "names": names,
        "model": MiniLMEmbedder.name,
        "noise": args.noise,
        "seed": args.seed,
        "qvecs": qvecs,
        "qtexts": qtexts,
        "budget_s": args.budget,
        "ef": [int(e) for e in args.ef.split(",")],
        "per_partition": args.per_partition,
        "sample_partitions": args.sample_partitions,
        "hnsw_m": args.m,
    }
    ctx = get_context("spawn")

    def child(fn, cfg):
        with ProcessPoolExecutor(1, mp_context=ctx) as ex:
            return ex.submit(fn, cfg).result()

    results = []
    print("threshold sweep ...", flush=True)
    sweep = child(run_sweep, {**base, "sizes": [int(s) for s in args.sweep.split(",")]})
    plan = [(n, lay, "auto") for n in tiers for lay in ("one", "spread")]
    if not args.no_derived_check and 100000 in tiers and len(pool) >= 100000:
        plan.insert(plan.index((100000, "spread", "auto")), (100000, "one", "derived"))
    for n, lay, kind in plan:
        if lay == "spread" and n < args.per_partition * 2:
            continue
        print(f"tier {n} ({lay}{', derived vectors' if kind == 'derived' else ''}) ...", flush=True)
        t = time.perf_counter()
        x = child(run_layout, {**base, "n": n, "layout": lay, "vectors_kind": kind})
        x["wall_s"] = round(time.perf_counter() - t, 1)
        print(
            f"  {x['wall_s']} s: exact search p50 {x['search_exact_ms']['p50']:.2f} ms, "
            f"hnsw {x['search_hnsw_ms']['p50']:.2f} ms, recall@10 {x['recall_at_10']:.3f}, "
            f"{x['memory']['rss_per_memory']:.0f} B/memory",
            flush=True,
        )
        results.append(x)
    r = {
        "config": {
            "model": MiniLMEmbedder.name,
            "dim": int(pool.shape[1]),
            "tiers": tiers,
            "layouts": {
                "one": "every memory in one user partition; queries scoped to that user",
                "spread": f"{args.per_partition} memories per user partition; each query "
                f"scoped to one of {args.sample_partitions} users spread over the tier",
            },
            "memories": "CONVERSATION turns, 20 per session, lexical_window 1",
            "vectors": {
                "real": f"all-MiniLM-L6-v2 embeddings of the first {len(pool)} pool texts "
                "(2-3 sentences from different LoCoMo turns)",
                "derived from real": "normalised mean of two random real vectors plus "
                f"Gaussian noise of norm about {args.noise}; the text is a fresh recombination",
                "rule": "a tier uses the real vectors first and derives the rest",
            },
            "pool_real_vectors": len(pool),
            "pool_embedding": emb_stats,
            "query_embed_ms": round(q_embed_ms, 2),
            "queries": len(qtexts),
            "queries_from": "LoCoMo questions (not in the corpus), sampled with the seed",
            "data": str(args.data),
            "top_k": TOP_K,
            "want_per_partition": WANT,
            "service_ef_search": SERVICE_EF,
            "ef_sweep": base["ef"],
            "hnsw_m": args.m,
            "hnsw_ef_construction": ix.HNSW_EF_CONSTRUCTION,
            "ann_threshold_default": 20000,
            "threads": {
                "faiss": 1,
                "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
            },
            "budget_s_per_config": args.budget,
            "seed": args.seed,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "faiss": faiss.__version__,
            "numpy": np.__version__,
        },
        "threshold_sweep": sweep,
        "recommendation": recommend(sweep["points"], args.limit_ms),
        "results": results,
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    print_tables(r)
    print(f"wall time {r['wall_s']} s")
    write_json(args.out, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
