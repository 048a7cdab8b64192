"""`memlake fact ...` end to end against a running server (both backends)."""

from __future__ import annotations

import re
import uuid

from memlake.cli import main


def test_fact_commands(suite, capsys):
    from tests.conftest import tenant_key

    key = tenant_key(suite.addr, suite.settings, f"cli{uuid.uuid4().hex[:8]}")
    base = ["--addr", suite.addr, "--api-key", key, "fact"]

    def run(*args: str, rc: int = 0) -> str:
        capsys.readouterr()
        assert main([*base, *args]) == rc
        out = capsys.readouterr()
        return out.out + out.err

    u = ["--user", "zoe"]
    out = run("assert", "Zoe", "lives_in", "Paris", *u, "--valid-from", "2020-01-01")
    assert out.startswith("CREATED\n#") and "[CURRENT] valid 2020-01-01T00:00:00Z .. open" in out
    assert "; by cli" in out
    out = run(
        "assert",
        "zoe",
        "lives_in",
        "Berlin",
        *u,
        "--valid-from",
        "2023-05-01",
        "--policy",
        "review",
        "--actor",
        "agent-7",
    )
    m = re.match(r"CONFLICT_QUEUED \(conflict (\d+)\)\n#(\d+) ", out)
    assert m, out
    conflict_id, berlin_id = m.groups()
    out = run("get", "zoe", "lives_in", *u)
    assert "CONFLICTED" in out and "conflicting:" in out
    out = run("conflicts", *u)
    assert out.startswith(f"conflict {conflict_id} [VALUE, OPEN]") and out.count("\n  #") == 2
    out = run("resolve", conflict_id, "keep-both", "--reason", "she moved", "--actor", "reviewer")
    assert f"conflict {conflict_id} [VALUE, RESOLVED]" in out
    assert "KEEP_BOTH by reviewer" in out and "she moved" in out
    out = run("history", "zoe", "lives_in", *u)
    # Each row says what its status was and whether it is still believed.
    assert (
        "'Paris' [SUPERSEDED, believed] valid 2020-01-01T00:00:00Z .. 2023-05-01T00:00:00Z" in out
    )
    assert f"#{berlin_id} zoe lives_in = 'Berlin' [was CONFLICTED, no longer believed]" in out
    assert "'Paris' [was CURRENT, no longer believed]" in out
    assert "'Berlin' [CURRENT, believed]" in out
    assert run("asof", "zoe", "lives_in", *u, "--valid-time", "2021-06-01").count("'Paris'") == 1
    assert "'Berlin' [CURRENT]" in run("asof", "zoe", "lives_in", *u)
    assert run("list", *u).count("\n") == 1
    assert "now names subject 'zoe'" in run("alias", "Zoé", "Zoe", *u)
    assert "Berlin" in run("get", "Zoé", "lives_in", *u)
    assert "[RETRACTED]" in run("retract", "zoe", "lives_in", *u, "--reason", "test")
    out = run("get", "zoe", "lives_in", *u, rc=1)
    assert out.startswith("error: NOT_FOUND")
    actions = [line.split()[1] for line in run("audit", "zoe", *u).splitlines()]
    assert actions == ["ASSERT", "CONFLICT", "RESOLVE", "ALIAS", "RETRACT"]
    assert run("policy") == "SUPERSEDE (server default)\n"
    assert run("policy", "reject", "--reason", "strict") == "REJECT (tenant default)\n"
    out = run("assert", "zoe", "age", "30", *u)
    out = run("assert", "zoe", "age", "31", *u, rc=1)
    assert out.startswith("error: FAILED_PRECONDITION")
    assert run("policy", "default") == "SUPERSEDE (server default)\n"
