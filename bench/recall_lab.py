"""Offline replica of LoCoMo and cue/trigger search for ranking experiments: the index's own
partitions (retrieval_service.index.Partition) built in process from the dev file with the
server's embedder and ingest's window mixing, searched with retrieval_service.ranking.search.
No gRPC, no database: a variant costs seconds, not a re-ingest. The figures match
bench/locomo.py's over gRPC up to the embedder's precision (the server's default here).

    python bench/recall_lab.py --data ../shared/data/locomo10-dev.json \
        --audit ../shared/data/locomo10-dev-audit.json [--cuetrigger] [--variant NAME=ENV ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cuetrigger import PAIRS, padded  # noqa: E402
from bench.locomo import CATEGORIES, TUNED, questions, sessions, turn_text  # noqa: E402
from ingest_service.domain import _words, mix_window  # noqa: E402
from memlake.v1 import memory_pb2 as pb  # noqa: E402
from retrieval_service import ranking  # noqa: E402
from retrieval_service.index import Filters, Partition  # noqa: E402
from shared.db.models import MemoryRecord  # noqa: E402
from shared.embedding import make_embedder  # noqa: E402
from shared.text import index_text  # noqa: E402

KS = (1, 5, 10, 20, 50)
CACHE = Path(os.environ.get("RECALL_LAB_CACHE", "/tmp/recall_lab_cache"))


class Vectors:
    """Embeddings of texts, cached on disk by text (the embedder is the slow part)."""

    def __init__(self) -> None:
        CACHE.mkdir(parents=True, exist_ok=True)
        self.path = CACHE / "vectors.npz"
        self.known: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as z:
                self.known = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))
        self.emb = None

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if self.key(t) not in self.known))
        if missing:
            if self.emb is None:
                self.emb = make_embedder("minilm", threads=1, workers=1)
            for s in range(0, len(missing), 256):
                chunk = missing[s : s + 256]
                for t, v in zip(chunk, self.emb.embed(chunk), strict=True):
                    self.known[self.key(t)] = v
            keys = list(self.known)
            np.savez(self.path, keys=np.array(keys), vecs=np.stack([self.known[k] for k in keys]))
        return np.stack([self.known[self.key(t)] for t in texts])


class PlainMax(Partition):
    """A partition whose dense score is the better of the stored (window-mixed) vector's
    cosine and the turn's plain embedding's: what storing the plain vector beside the mixed
    one would give (--plain max). Offline only: the index stores one vector per memory."""

    def _dense(self, rows, qvec):
        own = self.own_vectors[rows] @ np.asarray(qvec, dtype=np.float32)
        return np.maximum(super()._dense(rows, qvec), own)


class OneScope:
    """What ranking.search needs of an IndexManager: the partitions of a scope."""

    def __init__(self, part: Partition) -> None:
        self.part = part

    def partitions_for(self, tenant, user_id, agent_id):
        return [self.part]


def build(sample: dict, vectors: Vectors, kind=Partition) -> tuple[Partition, dict[int, str]]:
    """One conversation's partition, rows as ingest writes them; memory id -> dia id."""
    recs, texts, dias = [], [], []
    i = 0
    for n, date, turns in sessions(sample["conversation"]):
        base = date or datetime(2000, 1, 1, tzinfo=UTC)
        for j, t in enumerate(turns):
            text = turn_text(t)
            when = base + timedelta(seconds=j)
            attrs = {"speaker": t.get("speaker", "")}
            i += 1
            recs.append(
                MemoryRecord(
                    id=i, tenant="t", type=pb.MEMORY_TYPE_CONVERSATION, user_id="u",
                    agent_id="", session_id=f"session_{n}", content=text, attributes=attrs,
                    importance=0.0, source={}, create_time=when, occur_time=when,
                    expire_time=None, turn_index=j, etag="e", current=True, revision=1,
                    conflicted=False,
                )
            )  # fmt: skip
            texts.append(index_text(pb.MEMORY_TYPE_CONVERSATION, text, attrs, when))
            dias.append(t.get("dia_id", ""))
    own = vectors(texts)
    part = kind(own.shape[1], ann_threshold=10**9, lexical_window=1)
    prev: dict[str, list] = {}
    part.own_vectors = []  # the plain per-turn embeddings, for experiments
    for r, t, v in zip(recs, texts, own, strict=True):
        p = prev.setdefault(r.session_id, [])
        mine = (v, _words(t))
        vec = mix_window(mine, p[len(p) - 2 :])
        p.append(mine)
        part.put(r, vec)
        part.own_vectors.append(v)
    part.own_vectors = np.stack(part.own_vectors).astype(np.float32)
    return part, {r.id: d for r, d in zip(recs, dias, strict=True)}


def evaluate(parts, qs, qvecs, cfg, k=50):
    """recall@k by part and category for each question."""
    rows = []
    f = Filters(user_id="u", types=frozenset([pb.MEMORY_TYPE_CONVERSATION]))
    for (ci, _user, cat, question, ev), qv in zip(qs, qvecs, strict=True):
        part, dia = parts[ci]
        hits = ranking.search(OneScope(part), "t", qv, question, f, k, cfg)
        ranked = [dia[h.memory_id] for h in hits]
        rows.append((ci, cat, {kk: len(ev & set(ranked[:kk])) / len(ev) for kk in KS}))
    return rows


def summary(rows) -> dict:
    def mean(sel, k):
        xs = [r[2][k] for r in rows if sel(r)]
        return round(sum(xs) / len(xs), 3) if xs else None

    out = {f"@{k}": mean(lambda r: True, k) for k in (5, 10)}
    out.update({f"tuned@{k}": mean(lambda r: r[0] < TUNED, k) for k in (5, 10)})
    out.update({f"held@{k}": mean(lambda r: r[0] >= TUNED, k) for k in (5, 10)})
    for c in CATEGORIES:
        out[f"c{c}@10"] = mean(lambda r, c=c: r[1] == c, 10)
    return out


def cuetrigger(data, vectors: Vectors, cfg, kind=Partition) -> dict:
    """bench/cuetrigger.py's pairs, offline: recall@k of each trigger for its cue."""
    pairs = json.loads(PAIRS.read_text())["pairs"]
    padded_data, where = padded(data, pairs)
    parts = [build(s, vectors, kind) for s in padded_data]
    qvecs = vectors([p["cue"] for p in pairs])
    f = Filters(user_id="u", types=frozenset([pb.MEMORY_TYPE_CONVERSATION]))
    ranks = []
    for p, (ci, dia), qv in zip(pairs, where, qvecs, strict=True):
        part, dias = parts[ci]
        hits = ranking.search(OneScope(part), "t", qv, p["cue"], f, 50, cfg)
        got = [dias[h.memory_id] for h in hits]
        ranks.append(got.index(dia) + 1 if dia in got else None)
    return {f"@{k}": round(sum(1 for r in ranks if r and r <= k) / len(ranks), 3) for k in KS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--audit")
    ap.add_argument("--cuetrigger", action="store_true", help="also bench/cuetrigger.py's pairs")
    ap.add_argument("--keep", type=int, default=ranking.DEFAULT.dense_keep, help="dense keep")
    ap.add_argument(
        "--plain", choices=("none", "max"), default="none",
        help="max: a turn's dense score is the better of its mixed and plain cosines",
    )  # fmt: skip
    args = ap.parse_args(argv)
    data = json.loads(Path(args.data).read_text())
    audit = json.loads(Path(args.audit).read_text()) if args.audit else {}
    cfg = replace(ranking.DEFAULT, dense_keep=args.keep)
    vectors = Vectors()
    kind = PlainMax if args.plain == "max" else Partition
    parts = [build(s, vectors, kind) for s in data]
    qs = [q for q in questions(data, audit, [dia for _, dia in parts]) if q[4]]
    qvecs = vectors([q[3] for q in qs])
    print(json.dumps({"locomo": summary(evaluate(parts, qs, qvecs, cfg))}))
    if args.cuetrigger:
        print(json.dumps({"cuetrigger": cuetrigger(data, vectors, cfg, kind)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
