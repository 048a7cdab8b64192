"""The TypeScript client (clients/typescript): its Node test runs against a running suite over
gRPC and over the HTTP/JSON gateway, and the generated code matches the protos."""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.gateway.server import Upstreams, start_gateway

TS = Path(__file__).resolve().parent.parent / "clients" / "typescript"
BIN = TS / "node_modules" / ".bin"

pytestmark = pytest.mark.skipif(
    not (BIN / "tsc").exists() or shutil.which("node") is None,
    reason="run `make ts` (npm ci in clients/typescript) first; `make test` does",
)


def _creds(client) -> dict[str, str]:
    env = {}
    for k, v in client.metadata:
        if k == "x-memlake-tenant":
            env["MEMLAKE_TENANT"] = v
        elif k == "authorization":
            env["MEMLAKE_API_KEY"] = v.removeprefix("Bearer ")
    return env


@pytest.fixture(scope="module")
def built():
    subprocess.run([str(BIN / "tsc"), "-p", "tsconfig.json"], cwd=TS, check=True, timeout=300)


def test_node_client_against_the_suite(built, suite, client):
    up = Upstreams(suite.addr)
    httpd = start_gateway("127.0.0.1", 0, up)
    try:
        env = {
            **os.environ,
            **_creds(client),
            "MEMLAKE_ADDR": suite.addr,
            "MEMLAKE_HTTP_URL": f"http://127.0.0.1:{httpd.server_port}",
            "MEMLAKE_EXPECT_TENANT": client.whoami().tenant,
        }
        p = subprocess.run(
            ["node", "--test", "test/"],
            cwd=TS,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        up.close()
    assert p.returncode == 0, p.stdout + p.stderr
    assert "# pass 10" in p.stdout and "# fail 0" in p.stdout, p.stdout


def test_generated_code_matches_the_protos(tmp_path):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    subprocess.run(
        [str(BIN / "buf"), "generate", "--template", "buf.gen.yaml", "-o", str(tmp_path)],
        cwd=TS,
        env=env,
        check=True,
        timeout=120,
    )
    fresh, committed = tmp_path / "src" / "gen", TS / "src" / "gen"

    def diff(cmp: filecmp.dircmp) -> list[str]:
        out = [*cmp.left_only, *cmp.right_only, *cmp.diff_files]
        for sub in cmp.subdirs.values():
            out += diff(sub)
        return out

    stale = diff(filecmp.dircmp(fresh, committed))
    assert not stale, f"clients/typescript/src/gen is stale ({stale}): run `make ts-gen`"


def test_readme_typescript_snippet_type_checks(built, tmp_path):
    import json
    import re

    readme = (TS.parent.parent / "README.md").read_text()
    code = re.search(r"```ts\n(.*?)```", readme, re.S).group(1)
    # Inside the package, so "@memlake/client" resolves to itself (package self-reference).
    snippet = TS / f".readme-{os.getpid()}.check.ts"
    snippet.write_text(code)
    cfg = tmp_path / "tsconfig.json"
    cfg.write_text(
        json.dumps(
            {
                "compilerOptions": {
                    "target": "ES2022",
                    "module": "NodeNext",
                    "moduleResolution": "NodeNext",
                    "strict": True,
                    "noEmit": True,
                    "skipLibCheck": True,
                    "types": ["node"],
                    "typeRoots": [str(TS / "node_modules" / "@types")],
                },
                "files": [str(snippet)],
            }
        )
    )
    try:
        p = subprocess.run(
            [str(BIN / "tsc"), "-p", str(cfg)], capture_output=True, text=True, timeout=120
        )
    finally:
        snippet.unlink()
    assert p.returncode == 0, p.stdout + p.stderr
