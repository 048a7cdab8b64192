"""The examples in `memlake --help` work as written, in order, on a fresh server."""

from __future__ import annotations

import re
import shlex

from memlake.cli import EPILOG, main
from tests.conftest import start_suite, tenant_key


def _examples() -> list[list[str]]:
    text = EPILOG.split("\n\n")[0]
    joined = re.sub(r"\\\n\s+", " ", text)  # continuation lines
    cmds = []
    for line in joined.splitlines():
        if line.startswith("  memlake "):
            cmd = re.split(r"\s{3,}", line.strip())[0]  # drop the comment column
            cmds.append(shlex.split(cmd)[1:])
    return cmds


def test_help_examples_run_on_a_fresh_server(fresh_backend, capsys, monkeypatch, tmp_path):
    backend, settings = fresh_backend
    suite = start_suite(settings, backend)
    # As on a fresh `memlake serve`: the CLI finds the bootstrap key in the data directory.
    monkeypatch.delenv("MEMLAKE_API_KEY", raising=False)
    monkeypatch.setenv("MEMLAKE_DATA_DIR", str(settings.data_dir.resolve()))
    monkeypatch.chdir(tmp_path)  # files the examples write (export) land here
    monkeypatch.setattr("builtins.input", lambda *_: "y")  # erase asks first
    try:
        cmds = [c for c in _examples() if c[0] not in ("serve", "mcp")]
        assert len(cmds) >= 12 and cmds[0][0] == "remember"
        for cmd in cmds:
            extra = []
            if cmd[0] == "import":  # "into another install or tenant": a second tenant
                extra = ["--api-key", tenant_key(suite.addr, settings, "other")]
            rc = main(["--addr", suite.addr, *extra, *cmd])
            out = capsys.readouterr()
            assert rc == 0, f"memlake {shlex.join(cmd)}: {out.out}{out.err}"
            if cmd[:2] == ["get", "--key"]:
                assert "Alice Liddell" in out.out
            if cmd[:2] == ["fact", "history"]:
                assert "'Berlin' [CURRENT, believed]" in out.out
    finally:
        suite.stop()


def test_health_command(suite, capsys):
    assert main(["--addr", suite.addr, "health"]) == 0
    assert "SERVING" in capsys.readouterr().out
    assert main(["--addr", suite.addr, "health", "--service", "memlake.v1.RetrievalService"]) == 0
    import socket

    with socket.socket() as s:  # a port nobody serves
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["--addr", f"127.0.0.1:{port}", "--timeout", "1", "health"]) == 1
