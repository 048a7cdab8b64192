"""The contracts: buf lint passes and the committed stubs match a fresh generation."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUF = ROOT / ".tools" / "node_modules" / ".bin" / "buf"


def test_buf_lint():
    buf = str(BUF) if BUF.exists() else shutil.which("buf")
    if not buf:
        pytest.skip("buf is not installed; `make buf` installs it from npm")
    r = subprocess.run([buf, "lint"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_generated_stubs_are_up_to_date(tmp_path):
    protos = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "proto/memlake/v1").glob("*.proto"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            *protos,
        ],
        cwd=ROOT,
        check=True,
    )
    fresh = tmp_path / "memlake" / "v1"
    committed = ROOT / "memlake" / "v1"
    names = sorted(p.name for p in fresh.iterdir())
    _, mismatch, errors = filecmp.cmpfiles(fresh, committed, names, shallow=False)
    assert not mismatch and not errors, f"run `make proto`: stale {mismatch + errors}"
