"""`memlake mcp` over stdio, driven by the MCP SDK's own client against a running suite: every
tool is listed with a description and schema, each is called, and its answer is checked
against the suite through the Python SDK."""

from __future__ import annotations

import json
import os
import sys

import anyio
import pytest

mcp = pytest.importorskip("mcp")

from mcp import Client, StdioServerParameters  # noqa: E402

from memlake.v1 import memory_pb2 as pb  # noqa: E402

TOOLS = {
    "remember_event",
    "remember_background",
    "remember_conversation_turn",
    "remember_reflection",
    "remember_skill",
    "search",
    "get_context",
    "assert_fact",
    "fact_history",
    "list_conflicts",
    "resolve_conflict",
    "forget",
    "get_by_key",
}


def creds_env(client) -> dict[str, str]:
    """The environment that makes `memlake` CLI/MCP act as this SDK client."""
    env = {}
    for k, v in client.metadata:
        if k == "x-memlake-tenant":
            env["MEMLAKE_TENANT"] = v
        elif k == "authorization":
            env["MEMLAKE_API_KEY"] = v.removeprefix("Bearer ")
    return env


def _data(result) -> dict:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        sc = result.structured_content
        return sc.get("result", sc) if set(sc) == {"result"} else sc
    return json.loads(result.content[0].text)


def test_mcp_stdio_tools_against_the_suite(suite, client):
    env = {
        **creds_env(client),
        "MEMLAKE_ADDR": suite.addr,
        "MEMLAKE_USER": "alice",
        "MEMLAKE_SESSION": "s1",
        "PYTHONPATH": os.getcwd(),
    }
    params = StdioServerParameters(command=sys.executable, args=["-m", "memlake", "mcp"], env=env)
    sc = pb.Scope(user_id="alice")

    async def main():
        async with Client(params, read_timeout_seconds=60) as mc:
            listed = await mc.list_tools()
            by_name = {t.name: t for t in listed.tools}
            assert TOOLS <= set(by_name), TOOLS - set(by_name)
            for t in by_name.values():
                assert len(t.description or "") > 40, t.name
                assert t.input_schema["type"] == "object"
            assert "content" in by_name["remember_event"].input_schema["required"]

            async def call(tool, **args):
                return _data(await mc.call_tool(tool, args))

            ev = await call(
                "remember_event",
                content="Met Bob at the Lisbon conference",
                occurred_at="2024-05-01",
            )
            m = client.get(ev["id"])
            assert m.type == pb.MEMORY_TYPE_EVENT and m.scope.user_id == "alice"
            assert m.occur_time.ToDatetime().date().isoformat() == "2024-05-01"
            assert ev["outcome"] == "CREATED"

            bg = await call("remember_background", key="language", content="Alice speaks French")
            assert client.get(bg["id"]).background.key == "language"
            tu = await call(
                "remember_conversation_turn", content="I love pastel de nata", speaker="alice"
            )
            assert client.get(tu["id"]).scope.session_id == "s1"
            rf = await call(
                "remember_reflection",
                key="food",
                content="Alice likes Portuguese pastries",
                confidence=0.7,
                evidence_memory_ids=[tu["id"]],
            )
            assert list(client.get(rf["id"]).reflection.evidence_memory_ids) == [tu["id"]]
            sk = await call(
                "remember_skill",
                name="book_trip",
                description="How to book a trip for Alice",
                steps=["pick dates", "book flight"],
            )
            assert list(client.get(sk["id"]).skill.steps) == ["pick dates", "book flight"]

            found = await call("search", query="Lisbon conference Bob", top_k=3)
            want = client.search("Lisbon conference Bob", scope=sc, top_k=3, min_seq=sk["seq"])
            assert [r["memory"]["id"] for r in found["results"]] == [
                r.memory.id for r in want.results
            ]
            assert found["results"][0]["memory"]["id"] == ev["id"]

            ctx = await call("get_context", intent="trip to Lisbon", token_budget=500)
            assert "Alice speaks French" in ctx["rendered"]
            assert bg["id"] in [it["id"] for it in ctx["items"]]

            f1 = await call(
                "assert_fact",
                subject="alice",
                predicate="lives_in",
                value="Paris",
                valid_from="2020-01-01",
            )
            assert f1["outcome"] == "CREATED"
            f2 = await call(
                "assert_fact",
                subject="alice",
                predicate="lives_in",
                value="Berlin",
                policy="review",
            )
            assert f2["outcome"] == "CONFLICT_QUEUED" and f2["conflict_id"]
            hist = await call("fact_history", subject="alice", predicate="lives_in")
            sdk_hist = client.fact_history("alice", "lives_in", scope=sc)
            assert [v["id"] for v in hist["versions"]] == [f.id for f in sdk_hist]
            believed = {(v["value"], v["status"]) for v in hist["versions"] if v["believed"]}
            assert believed == {("Paris", "CONFLICTED"), ("Berlin", "CONFLICTED")}
            ended = [v for v in hist["versions"] if not v["believed"]]
            assert all(v["record_end_time"] for v in ended)

            conflicts = await call("list_conflicts")
            assert [x["id"] for x in conflicts["conflicts"]] == [f2["conflict_id"]]
            keep = f2["fact"]["id"]
            res = await call(
                "resolve_conflict",
                conflict_id=f2["conflict_id"],
                resolution="keep-one",
                keep_fact_id=keep,
                reason="asked alice",
            )
            assert res["status"] == "RESOLVED"
            assert client.get_fact("alice", "lives_in", scope=sc).fact.value == "Berlin"

            byk = await call("get_by_key", type="background", key="language")
            assert byk["memory"]["id"] == bg["id"]

            gone = await call("forget", memory_id=ev["id"])
            assert gone["seq"] > 0
            with pytest.raises(Exception) as err:
                client.get(ev["id"])
            assert getattr(err.value, "code", "") == "NOT_FOUND"

            # A server-side error reaches the model as a tool error naming the field.
            bad = await mc.call_tool(
                "remember_reflection",
                {"key": "k", "content": "c", "confidence": 0.5, "evidence_memory_ids": []},
            )
            assert bad.is_error and "evidence_memory_ids" in bad.content[0].text

    anyio.run(main)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mcp_streamable_http(suite, client):
    import subprocess
    import time

    port = _free_port()
    env = {
        **os.environ,
        **creds_env(client),
        "MEMLAKE_ADDR": suite.addr,
        "MEMLAKE_USER": "bob",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "memlake",
            "mcp",
            "--transport",
            "http",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        import socket

        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)

        async def main():
            async with Client(f"http://127.0.0.1:{port}/mcp", read_timeout_seconds=60) as mc:
                names = {t.name for t in (await mc.list_tools()).tools}
                assert TOOLS <= names
                r = _data(
                    await mc.call_tool("remember_background", {"key": "name", "content": "Bob"})
                )
                m = client.get_by_key("background", "name", scope=pb.Scope(user_id="bob"))
                assert m.id == r["id"] and m.content == "Bob"

        anyio.run(main)
    finally:
        proc.terminate()
        proc.wait(10)
