"""The embedder alone: texts/s on LoCoMo turns (one per call, batches in arrival order,
batches sorted by length, the project's own embed() on one and on more workers) and the
latency of a single query, with the CPU model and the flags that decide the fast path.

    python bench/embedder.py --data ../shared/data/locomo10-dev.json --out bench/out/embedder.json

The machine is shared: compare figures of one run only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, write_json  # noqa: E402
from bench.locomo import sessions  # noqa: E402
from shared.cpu import cpu_info  # noqa: E402


def turns(path: str, n: int) -> list[str]:
    import json

    out = []
    for sample in json.loads(Path(path).read_text()):
        for _, _, ts in sessions(sample["conversation"]):
            out += [f"{t.get('speaker', '')}: {t.get('text', '')}" for t in ts]
    return out[:n]


CPU_S: dict[str, float] = {}  # texts per CPU-second of the last rate() call, by name


def rate(fn, texts: list[str], repeat: int = 1, name: str = "") -> float:
    """texts/s by the wall clock; texts per CPU-second of this process into CPU_S[name]
    (steadier on a shared machine: other jobs take wall time, not this process's CPU)."""
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeat):
        fn(texts)
    CPU_S[name] = round(repeat * len(texts) / (time.process_time() - cpu), 1)
    return round(repeat * len(texts) / (time.perf_counter() - t), 1)


def main(argv=None) -> int:
    from shared.minilm import MiniLMEmbedder

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/locomo10-dev.json")
    )
    p.add_argument("--n", type=int, default=256)
    p.add_argument(
        "--precision", default="", help="int8, fp32 or q8 (default: every one installed)"
    )
    p.add_argument("--out", default="bench/out/embedder.json")
    args = p.parse_args(argv)
    texts = turns(args.data, args.n)
    info = cpu_info()
    print(f"CPU {info['model']}; {info['cores']} cores; flags {' '.join(info['flags'])}")
    print(f"chosen path: {info['chosen']} ({info['why']}); load {os.getloadavg()[0]:.2f}")
    result = {"cpu": info, "texts": len(texts), "runs": []}
    from shared.minilm import available_precisions

    precisions = [args.precision] if args.precision else available_precisions()
    for prec in precisions:
        for threads, workers in ((1, 1), (2, 1), (1, 2)):
            e = MiniLMEmbedder(threads=threads, workers=workers, precision=prec)
            e._embed(texts[:32])  # warm up
            row = {"precision": prec, "threads": threads, "workers": workers}
            if (threads, workers) == (1, 1):
                row["one_per_call"] = rate(
                    lambda ts, e=e: [e._run([t]) for t in ts], texts, name="one_per_call"
                )
                row["batch32_arrival"] = rate(
                    lambda ts, e=e: [e._run(ts[i : i + 32]) for i in range(0, len(ts), 32)],
                    texts,
                    name="batch32_arrival",
                )
            row["batch32_sorted"] = rate(e._embed, texts, name="batch32_sorted")
            lat, cpu = [], time.process_time()
            for q in texts[:100]:
                t = time.perf_counter()
                e._run([q[:60]])
                lat.append((time.perf_counter() - t) * 1000)
            row["query_ms_p50"] = round(percentile(lat, 50), 2)
            row["query_ms_p99"] = round(percentile(lat, 99), 2)
            row["query_cpu_ms"] = round((time.process_time() - cpu) * 10, 2)  # per query
            row["per_cpu_s"] = {k: CPU_S[k] for k in CPU_S}
            CPU_S.clear()
            result["runs"].append(row)
            print(
                f"{prec:<5} threads {threads} workers {workers}: "
                + ", ".join(
                    f"{k} {v}"
                    for k, v in row.items()
                    if k not in ("precision", "threads", "workers")
                )
                + "  (texts/s; query ms; per_cpu_s: texts per CPU-second)",
                flush=True,
            )
    write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
