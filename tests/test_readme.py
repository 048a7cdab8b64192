"""The README's Python example runs as written against a fresh server."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import start_suite

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_example(fresh_backend, capsys, monkeypatch):
    backend, settings = fresh_backend
    # As after `make run`: the SDK finds the bootstrap key in the data directory.
    monkeypatch.delenv("MEMLAKE_API_KEY", raising=False)
    monkeypatch.setenv("MEMLAKE_DATA_DIR", str(settings.data_dir))
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    assert 'MemlakeClient("127.0.0.1:50051")' in code
    suite = start_suite(settings, backend)
    try:
        exec(compile(code.replace("127.0.0.1:50051", suite.addr), "README.md", "exec"), {})
    finally:
        suite.stop()
    out = capsys.readouterr().out.splitlines()
    assert out == ["Deployed v2", "Alice's name is Alice Liddell"]


def test_readme_curl_examples(fresh_backend, tmp_path):
    import json
    import shutil
    import subprocess

    from shared.gateway.server import Upstreams, start_gateway
    from tests.conftest import bootstrap_key

    if not shutil.which("curl"):
        import pytest

        pytest.skip("no curl")
    backend, settings = fresh_backend
    text = README.read_text()
    block = re.search(r"```sh\n(export MEMLAKE_API_KEY.*?)```", text, re.S).group(1)
    curls = [c.strip() for c in re.split(r"\n(?=curl |# |export )", block) if c.startswith("curl ")]
    assert len(curls) == 3
    suite = start_suite(settings, backend)
    up = Upstreams(suite.addr)
    httpd = start_gateway("127.0.0.1", 0, up)
    try:
        env = {"PATH": "/usr/bin:/bin", "MEMLAKE_API_KEY": bootstrap_key(settings)}
        outs = []
        for c in curls:
            c = c.replace("localhost:8080", f"127.0.0.1:{httpd.server_port}")
            p = subprocess.run(
                ["bash", "-c", c + " -w '\\n%{http_code}'"],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            body, code = p.stdout.rsplit("\n", 1)
            outs.append((int(code), json.loads(body)))
    finally:
        httpd.shutdown()
        httpd.server_close()
        up.close()
        suite.stop()
    assert outs[0][0] == 200 and outs[0][1]["outcome"] == "WRITE_OUTCOME_CREATED"
    assert outs[1][0] == 200 and outs[1][1]["results"][0]["memory"]["content"] == "Deployed v2"
    assert outs[2][0] == 400 and outs[2][1]["code"] == "invalid_argument"
    assert outs[2][1]["message"] == "query: must not be empty"


def test_readme_mcp_config_starts_the_mcp_server_command():
    import json

    from memlake.cli import build_parser

    cfg = json.loads(re.search(r"```json\n(.*?)```", README.read_text(), re.S).group(1))
    server = cfg["mcpServers"]["memlake"]
    assert server["command"].endswith("/.venv/bin/memlake")
    a = build_parser().parse_args(server["args"])
    assert (a.cmd, a.transport, a.user, a.agent) == ("mcp", "stdio", "alice", "assistant")
    assert set(server["env"]) == {"MEMLAKE_ADDR", "MEMLAKE_API_KEY"}
