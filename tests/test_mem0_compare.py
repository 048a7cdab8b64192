"""bench/mem0_compare.py: the same LoCoMo work for both systems, and a clear skip of mem0's
half where mem0 is not installed (memlake's venv never has it)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import mem0_compare as mc

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "locomo10-dev.json"


def test_recall_and_latency_figures():
    r = mc.recall([["D1:1", "D1:2"], ["D2:5"] * 10 + ["D2:6"]], [["D1:2", "D1:9"], ["D2:6"]])
    assert r == {"1": 0.0, "5": 0.25, "10": 0.25}
    lat = mc.latency([float(x) for x in range(1, 101)])
    assert (lat["p50"], lat["p99"], lat["n"]) == (50.5, 99.01, 100)


@pytest.mark.skipif(not DATA.exists(), reason=f"no {DATA}")
def test_both_halves_get_the_same_turns_and_questions():
    convs, work = mc.load_work(str(DATA), "")
    turns = work["turns"]
    assert len(turns) == sum(len(pairs) for _, pairs in convs) == 2760
    assert len(work["questions"]) == 760
    by_user = {}
    for t in turns:
        by_user.setdefault(t["user"], set()).add(t["dia"])
    for q in work["questions"]:  # every evidence turn is one that both systems ingest
        assert q["evidence"] and set(q["evidence"]) <= by_user[q["user"]]
    # mem0 stores the memlake memory's content, with the speaker in front.
    user, pairs = convs[0]
    dia, req = pairs[0]
    assert turns[0]["dia"] == dia and turns[0]["text"] == req.memory.content
    assert mc.mem0_text(turns[0]) == f"{req.memory.conversation.speaker}: {req.memory.content}"


@pytest.mark.skipif(
    importlib.util.find_spec("mem0") is not None, reason="mem0 is installed in this venv"
)
def test_mem0_half_is_skipped_with_a_reason_where_mem0_is_missing():
    work = {"turns": [{"user": "u", "dia": "D1:1", "text": "hi", "speaker": "A"}], "questions": []}
    why = mc.mem0_subprocess(sys.executable, work, "/nonexistent-model", {})
    assert isinstance(why, str) and "not importable" in why


def _cpuid_faulting() -> bool:
    try:
        return "cpuid_fault" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc to build bench/avx2only.c")
@pytest.mark.skipif(not _cpuid_faulting(), reason="no CPUID faulting on this CPU/kernel")
def test_avx2_shim_hides_avx512_from_cpuid(tmp_path):
    """What --emulate-avx2 preloads: numpy (which reads CPUID at import, as ONNX Runtime and
    PyTorch do) sees AVX2 and no AVX-512 in the child, while this process still sees the CPU."""
    env = mc.avx2_env(str(tmp_path))
    probe = (
        "from numpy._core._multiarray_umath import __cpu_features__ as f; "
        "print(f['AVX2'], f['AVX512F'], f.get('AVX512_VNNI', False))"
    )
    run = [sys.executable, "-c", probe]
    real = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split()
    masked = subprocess.run(
        run, capture_output=True, text=True, check=True, env={**os.environ, **env}
    ).stdout.split()
    assert masked == ["True", "False", "False"]
    assert real[0] == "True"  # and where the CPU has AVX-512, the shim is what hid it
    assert env["MEMLAKE_EMBED_PRECISION"] == "fp32"
