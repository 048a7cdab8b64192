"""Measures the semantic-conflict threshold for free-text facts on a labelled set.

Each line of tests/data/fact_pairs.jsonl is two statements about one subject, labelled
"conflict" (they contradict) or "compatible", "unrelated", "paraphrase" (they do not).
The statements are embedded exactly as the versioning service embeds a free-text fact
(versions.statement_text) with the real model, and a pair is flagged when its cosine is at
least the threshold. The script prints precision, recall, F1 and accuracy per threshold,
picks the threshold with the best F1 (ties: better accuracy, then the higher threshold),
and writes everything as JSON.

    python bench/fact_threshold.py [--embedder minilm] [--out bench/out/fact_threshold.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.embedding import make_embedder  # noqa: E402
from versioning_service.versions import statement_text  # noqa: E402

DATA = ROOT / "tests" / "data" / "fact_pairs.jsonl"


def load(path: Path = DATA) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def similarities(pairs: list[dict], embedder) -> np.ndarray:
    texts = []
    for p in pairs:
        texts += [
            statement_text(p["subject"], "", p["a"]),
            statement_text(p["subject"], "", p["b"]),
        ]
    v = embedder.embed(texts)
    return np.einsum("ij,ij->i", v[0::2], v[1::2])


def scores(sims: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    pred = sims >= threshold
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    tn = int((~pred & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "threshold": round(threshold, 2),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "accuracy": round((tp + tn) / len(labels), 4),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
    }


def sweep(sims: np.ndarray, labels: np.ndarray) -> tuple[list[dict], dict]:
    rows = [scores(sims, labels, t / 100) for t in range(20, 96)]
    best = max(rows, key=lambda r: (r["f1"], r["accuracy"], r["threshold"]))
    return rows, best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="minilm", choices=["minilm", "hash"])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "fact_threshold.json"))
    a = ap.parse_args(argv)
    pairs = load(Path(a.data))
    embedder = make_embedder(a.embedder)
    sims = similarities(pairs, embedder)
    labels = np.array([p["label"] == "conflict" for p in pairs])
    rows, best = sweep(sims, labels)
    print(f"{len(pairs)} labelled pairs ({int(labels.sum())} conflicts), embedder {embedder.name}")
    by_label: dict[str, list[float]] = {}
    for p, s in zip(pairs, sims, strict=True):
        by_label.setdefault(p["label"], []).append(float(s))
    for label, vals in sorted(by_label.items()):
        print(
            f"  cosine {label:<11} n={len(vals):>2}  min {min(vals):.3f}  "
            f"mean {np.mean(vals):.3f}  max {max(vals):.3f}"
        )
    print(f"\n{'threshold':>9} {'precision':>9} {'recall':>7} {'f1':>6} {'accuracy':>8}")
    for r in rows:
        if round(r["threshold"] * 100) % 5 == 0 or r is best:
            mark = "  <- chosen" if r is best else ""
            print(
                f"{r['threshold']:>9.2f} {r['precision']:>9.3f} {r['recall']:>7.3f} "
                f"{r['f1']:>6.3f} {r['accuracy']:>8.3f}{mark}"
            )
    print(
        f"\nchosen threshold {best['threshold']:.2f}: precision {best['precision']:.3f}, "
        f"recall {best['recall']:.3f}, F1 {best['f1']:.3f}, accuracy {best['accuracy']:.3f}"
    )
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "embedder": embedder.name,
                "pairs": len(pairs),
                "conflicts": int(labels.sum()),
                "chosen": best,
                "sweep": rows,
                "similarities": [
                    {**p, "cosine": round(float(s), 4)} for p, s in zip(pairs, sims, strict=True)
                ],
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
