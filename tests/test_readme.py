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
