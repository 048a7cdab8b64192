"""The examples in `memlake --help` work as written, in order, on a fresh server."""

from __future__ import annotations

import re
import shlex

from memlake.cli import EPILOG, main
from tests.conftest import start_suite


def _examples() -> list[list[str]]:
    text = EPILOG.split("\n\n")[0]
    joined = re.sub(r"\\\n\s+", " ", text)  # continuation lines
    cmds = []
    for line in joined.splitlines():
        if line.startswith("  memlake "):
            cmd = re.split(r"\s{3,}", line.strip())[0]  # drop the comment column
            cmds.append(shlex.split(cmd)[1:])
    return cmds


def test_help_examples_run_on_a_fresh_server(fresh_backend, capsys, monkeypatch):
    backend, settings = fresh_backend
    suite = start_suite(settings, backend)
    # As on a fresh `memlake serve`: the CLI finds the bootstrap key in the data directory.
    monkeypatch.delenv("MEMLAKE_API_KEY", raising=False)
    monkeypatch.setenv("MEMLAKE_DATA_DIR", str(settings.data_dir))
    try:
        cmds = [c for c in _examples() if c[0] not in ("serve", "mcp")]
        assert len(cmds) >= 12 and cmds[0][0] == "remember"
        for cmd in cmds:
            rc = main(["--addr", suite.addr, *cmd])
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


def test_import_streams_a_file_with_progress(suite, client, tmp_path, capsys, monkeypatch):
    import json

    from memlake.client import scope

    lines = [
        json.dumps(
            {
                "type": "MEMORY_TYPE_BACKGROUND",
                "content": f"fact number {i}",
                "scope": {"userId": "imp"},
                "background": {"key": f"k{i}"},
            }
        )
        for i in range(25)
    ]
    lines.insert(7, json.dumps({"type": "MEMORY_TYPE_REFLECTION", "content": "no evidence"}))
    f = tmp_path / "mem.jsonl"
    f.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("MEMLAKE_API_KEY", client.api_key)
    rc = main(["--addr", suite.addr, "import", str(f), "--every", "10"])
    out = capsys.readouterr()
    assert rc == 1  # one line failed
    assert "imported 25, failed 1" in out.out
    assert "  10 sent" in out.err and "  20 sent" in out.err
    assert "item 7 (from 0): item[7].memory.reflection.key" in out.err
    got = client.get_by_key("background", "k24", scope=scope("imp"))
    assert got.content == "fact number 24"
