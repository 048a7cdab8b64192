"""Dispatch of the `memlake` commands."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime

from memlake.cli.auth import _auth_cmd
from memlake.cli.facts import _fact_cmd
from memlake.cli.format import _dt, _print, _scope
from memlake.cli.parser import build_parser
from memlake.cli.privacy import _privacy_cmd
from memlake.client import (
    TYPES,
    MemlakeClient,
    MemlakeError,
    ts,
)
from memlake.v1 import memory_pb2 as pb


def _memory(a) -> pb.Memory:
    m = pb.Memory(
        type=TYPES[a.type],
        content=a.content,
        scope=_scope(a),
        importance=a.importance,
        source=pb.Source(kind="cli", actor="cli"),
    )
    t = m.type
    if t == pb.MEMORY_TYPE_BACKGROUND:
        m.background.key = a.key or ""
    elif t == pb.MEMORY_TYPE_REFLECTION:
        m.reflection.key = a.key or ""
        m.reflection.confidence = a.confidence
        m.reflection.evidence_memory_ids.extend(a.evidence)
    elif t == pb.MEMORY_TYPE_SKILL:
        m.skill.name = a.name or ""
        m.skill.steps.extend(a.step)
    elif t == pb.MEMORY_TYPE_CONVERSATION:
        m.conversation.speaker = a.speaker
    elif t == pb.MEMORY_TYPE_EVENT:
        m.event.SetInParent()
    occur = _dt(a.occur_time) or (datetime.now(UTC) if t == pb.MEMORY_TYPE_EVENT else None)
    if occur:
        m.occur_time.CopyFrom(ts(occur))
    return m


def run(a) -> int:
    if a.cmd == "serve":
        from shared.launch import main as serve

        serve(a.service)
        return 0
    if a.cmd == "health":
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(a.addr) as ch:
            try:
                r = health_pb2_grpc.HealthStub(ch).Check(
                    health_pb2.HealthCheckRequest(service=a.service), timeout=min(a.timeout, 5)
                )
            except grpc.RpcError as exc:
                print(f"{a.addr}: {exc.code().name}", file=sys.stderr)
                return 1
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
        print(f"{a.addr}: {status}")
        return 0 if r.status == health_pb2.HealthCheckResponse.SERVING else 1
    if a.cmd == "db":
        from shared.db.engine import Database
        from shared.settings import get_settings

        settings = get_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        Database(settings.sqlalchemy_url()).upgrade()
        print("database at head")
        return 0
    if a.cmd == "mcp":
        from memlake.mcp_server import McpConfig, serve

        host, _, port = a.listen.rpartition(":")
        cfg = McpConfig(
            addr=a.addr,
            tenant=a.tenant,
            api_key=getattr(a, "api_key", None) or "",
            user=a.user,
            agent=a.agent,
            session=a.session,
            timeout=a.timeout,
        )
        serve(cfg, a.transport, host or "127.0.0.1", int(port))
        return 0
    if a.cmd == "index":
        from retrieval_service.index import rebuild
        from shared.embedding import make_embedder
        from shared.settings import get_settings

        settings = get_settings()
        emb = make_embedder(settings.embedder)
        print(
            f"rebuilding the index from {settings.sqlalchemy_url().split('@')[-1]} ...", flush=True
        )
        t0 = time.monotonic()
        idx = rebuild(settings, emb.name, emb.dim)
        st = idx.stats()
        print(
            f"rebuilt {st['partitions']} partitions, {st['rows']} memories, "
            f"seq {st['applied_seq']}, in {time.monotonic() - t0:.1f}s -> {settings.index_dir()}"
        )
        return 0
    with MemlakeClient(a.addr, api_key=a.api_key, tenant=a.tenant, timeout=a.timeout) as c:
        if a.cmd in ("whoami", "tenant", "key", "access"):
            return _auth_cmd(c, a)
        if a.cmd == "remember":
            r = c.remember(_memory(a), request_id=a.request_id)
            print(
                f"id {r.memory.id}  seq {r.seq}  "
                f"{pb.WriteOutcome.Name(r.outcome).removeprefix('WRITE_OUTCOME_')}"
            )
        elif a.cmd == "get":
            if bool(a.id) == bool(a.key):
                print(
                    "usage: memlake get ID  or  memlake get --key KEY [--type T]", file=sys.stderr
                )
                return 2
            m = c.get_by_key(a.type, a.key, scope=_scope(a)) if a.key else c.get(a.id)
            _print(m, True)
        elif a.cmd == "list":
            n = 0
            for m in c.list_all(
                types=[TYPES[t] for t in a.type], scope=_scope(a), include_history=a.history
            ):
                print(
                    f"{m.id:>8}  {pb.MemoryType.Name(m.type).removeprefix('MEMORY_TYPE_'):<12}"
                    f" {m.content[:100]}"
                )
                n += 1
                if n >= a.limit:
                    break
        elif a.cmd == "search":
            r = c.search(
                a.query,
                scope=_scope(a),
                types=[TYPES[t] for t in a.type],
                top_k=a.top_k,
                min_seq=a.min_seq,
                include_history=a.history,
            )
            for x in r.results:
                m = x.memory
                flags = " [CONFLICTED]" * x.conflicted + " [history]" * (not m.current)
                print(
                    f"{x.score:.4f}  {m.id:>8}  "
                    f"{pb.MemoryType.Name(m.type).removeprefix('MEMORY_TYPE_'):<12} "
                    f"{m.content[:100]}{flags}"
                )
        elif a.cmd == "context":
            r = c.context(scope=_scope(a), intent=a.intent, token_budget=a.budget)
            print(
                r.rendered
                if a.raw
                else f"{r.rendered}\n\n({r.token_count} tokens, {len(r.items)} items)"
            )
        elif a.cmd == "forget":
            print(f"forgotten; seq {c.forget(a.id)}")
        elif a.cmd == "fact":
            return _fact_cmd(c, a)
        elif a.cmd in ("export", "import", "erase"):
            return _privacy_cmd(c, a)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    if not a.cmd:
        parser.print_help()
        return 0
    try:
        return run(a)
    except MemlakeError as exc:
        where = f" (field {exc.field})" if exc.field else ""
        print(f"error: {exc.code}: {exc.message}{where}", file=sys.stderr)
        if exc.code == "UNAUTHENTICATED" and exc.reason == "CREDENTIALS_MISSING":
            print(
                "no API key found: pass --api-key, set MEMLAKE_API_KEY, or run where "
                "`memlake serve` keeps its data (MEMLAKE_DATA_DIR, default ./.memlake/admin.key)",
                file=sys.stderr,
            )
        if exc.code == "UNAVAILABLE":
            print(f"is memlake running at {a.addr}? start it with `make run`", file=sys.stderr)
        return 1
