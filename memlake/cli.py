"""The `memlake` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime

from google.protobuf import json_format

from memlake.client import (
    CONFLICT_STATUSES,
    POLICIES,
    RESOLUTIONS,
    TYPES,
    MemlakeClient,
    MemlakeError,
    grant,
    scope,
    ts,
)
from memlake.v1 import admin_service_pb2 as apb
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb

EPILOG = """\
getting started (in this order on a fresh server; each write prints the new memory's id):
  memlake serve                         start all three services on 127.0.0.1:50051, and
                                        HTTP/JSON on :8080 (SQLite + files in ./.memlake)
  memlake remember "Asked for a shorter answer" --type event --user alice
  memlake remember "Prefers short answers" --type reflection --user alice \\
      --key answer_style --confidence 0.8 --evidence 1     (1: the event's id)
  memlake remember "Alice's name is Alice Liddell" --type background --key name --user alice
  memlake get --key name --user alice
  memlake search "how does alice like answers" --user alice
  memlake context --user alice --intent "plan a trip" --budget 500
  memlake fact assert alice lives_in Paris --user alice --valid-from 2020-01-01
  memlake fact assert alice lives_in Berlin --user alice --policy review
  memlake fact conflicts --user alice
  memlake fact resolve 1 keep-one --keep 2 --reason "asked alice"
  memlake fact history alice lives_in --user alice
  memlake fact asof alice lives_in --user alice --valid-time 2021-06-01
  memlake mcp --user alice              MCP server for an agent (stdio; --transport http)
  memlake export --user alice -o alice.jsonl   everything held about alice, as JSON lines
  memlake import alice.jsonl                    ... into another install or tenant
  memlake erase --user alice                    erase alice everywhere (prints a receipt)

where the server is: MEMLAKE_ADDR (default 127.0.0.1:50051) for `memlake serve` and for every
client command alike; MEMLAKE_HTTP_PORT (8080) for HTTP/JSON; MEMLAKE_TENANT, MEMLAKE_API_KEY.
The server also reads MEMLAKE_DATABASE_URL, MEMLAKE_REDIS_URL, MEMLAKE_DATA_DIR and the rest
listed in README.md.
"""


def _dt(s: str | None) -> datetime | None:
    if not s:
        return None
    d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=UTC)


def _print(msg, as_json: bool) -> None:
    print(
        json_format.MessageToJson(msg, preserving_proto_field_name=True, indent=2)
        if as_json
        else _brief(msg)
    )


def _brief(msg) -> str:
    d = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return json.dumps(d, indent=2, ensure_ascii=False)


def _scope_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--user", default="", help="user_id")
    p.add_argument("--agent", default="", help="agent_id")
    p.add_argument("--session", default="", help="session_id")


def _scope(a) -> pb.Scope:
    return scope(a.user, a.agent, a.session)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="memlake",
        description="Persistent, typed memory for AI agents.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--addr", default=os.environ.get("MEMLAKE_ADDR", "127.0.0.1:50051"))
    p.add_argument(
        "--api-key",
        default=None,
        help="API key (default: MEMLAKE_API_KEY, else the local server's .memlake/admin.key)",
    )
    p.add_argument(
        "--tenant",
        default=os.environ.get("MEMLAKE_TENANT", ""),
        help="only for a server with authentication off; a key names its own tenant",
    )
    p.add_argument("--timeout", type=float, default=30.0)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("serve", help="run the services (default: all three in one process)")
    s.add_argument(
        "--service",
        choices=["all", "ingest", "retrieval", "versioning", "gateway"],
        default="all",
        help="gateway: only the HTTP/JSON gateway, forwarding to the services",
    )

    h = sub.add_parser(
        "health", help="exit 0 when the server at --addr reports SERVING (grpc.health.v1)"
    )
    h.add_argument("--service", default="", help="e.g. memlake.v1.IngestService (default: all)")

    d = sub.add_parser("db", help="database maintenance")
    d.add_argument("action", choices=["upgrade"])

    m = sub.add_parser(
        "mcp",
        help="serve the Model Context Protocol (stdio or streamable HTTP) for one agent's scope",
    )
    m.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    m.add_argument("--listen", default="127.0.0.1:8765", help="HOST:PORT for --transport http")
    m.add_argument("--user", default=os.environ.get("MEMLAKE_USER", ""), help="user_id")
    m.add_argument("--agent", default=os.environ.get("MEMLAKE_AGENT", ""), help="agent_id")
    m.add_argument("--session", default=os.environ.get("MEMLAKE_SESSION", ""), help="session_id")

    ix = sub.add_parser("index", help="search index maintenance (run where retrieval runs)")
    ix.add_argument("action", choices=["rebuild"], help="rebuild every shard from the database")

    sub.add_parser("whoami", help="the tenant, key and grants of the credentials in use")
    tn = sub.add_parser("tenant", help="tenants (operator keys)")
    tsub = tn.add_subparsers(dest="tenant_cmd", metavar="ACTION", required=True)
    x = tsub.add_parser("create", help="create a tenant and print its first ADMIN key")
    x.add_argument("name")
    x.add_argument("--audit-reads", action="store_true", help="audit reads as well as writes")
    tsub.add_parser("list", help="list tenants")
    ky = sub.add_parser("key", help="API keys")
    ksub = ky.add_subparsers(dest="key_cmd", metavar="ACTION", required=True)
    x = ksub.add_parser("create", help="create a key; its secret is printed once")
    x.add_argument("--name", default="")
    x.add_argument("--role", choices=["member", "admin", "operator"], default="member")
    x.add_argument("--key-tenant", default="", help="another tenant (operator keys only)")
    x.add_argument(
        "--grant",
        action="append",
        default=[],
        metavar="SPEC",
        help='e.g. "users=42 types=conversation,fact perm=read,write" (also agents=, '
        "sessions=); repeat for several grants",
    )
    x.add_argument("--ttl", type=int, default=0, help="seconds until it expires")
    x = ksub.add_parser("list", help="keys of the tenant")
    x.add_argument("--revoked", action="store_true", help="include revoked keys")
    x = ksub.add_parser("revoke", help="revoke a key and the keys minted from it")
    x.add_argument("key_id")
    x = sub.add_parser("access", help="the access audit (who called what)")
    x.add_argument("--key", default="", help="only this key id")
    x.add_argument("--limit", type=int, default=50)

    r = sub.add_parser("remember", help="store a memory")
    r.add_argument("content")
    r.add_argument("--type", choices=sorted(TYPES), default="event")
    _scope_args(r)
    r.add_argument("--key", help="BACKGROUND/REFLECTION key")
    r.add_argument("--name", help="SKILL name")
    r.add_argument("--step", action="append", default=[], help="SKILL step (repeat)")
    r.add_argument("--confidence", type=float, default=0.0)
    r.add_argument("--evidence", action="append", default=[], help="REFLECTION evidence id")
    r.add_argument("--occur-time", help="ISO time (EVENT default: now)")
    r.add_argument("--speaker", default="")
    r.add_argument("--importance", type=float, default=0.0)
    r.add_argument("--request-id", default="")

    g = sub.add_parser(
        "get", help="get a memory by id, or the current background/reflection/skill by key"
    )
    g.add_argument("id", nargs="?", default="")
    g.add_argument("--key", help="BACKGROUND/REFLECTION key or SKILL name (with --type)")
    g.add_argument("--type", choices=["background", "reflection", "skill"], default="background")
    _scope_args(g)

    ls = sub.add_parser("list", help="list memories")
    _scope_args(ls)
    ls.add_argument("--type", action="append", choices=sorted(TYPES), default=[])
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--history", action="store_true")

    se = sub.add_parser("search", help="ranked search")
    se.add_argument("query")
    _scope_args(se)
    se.add_argument("--type", action="append", choices=sorted(TYPES), default=[])
    se.add_argument("-k", "--top-k", type=int, default=10)
    se.add_argument("--min-seq", type=int, default=0)
    se.add_argument("--history", action="store_true", help="include replaced versions")

    c = sub.add_parser("context", help="context for a new session")
    _scope_args(c)
    c.add_argument("--intent", default="")
    c.add_argument("--budget", type=int, default=1000)
    c.add_argument("--raw", action="store_true", help="print only the rendered block")

    f = sub.add_parser("forget", help="delete a memory by id")
    f.add_argument("id")

    for name, what in (
        ("export", "write everything held about a subject as JSON lines"),
        ("erase", "erase everything held about a subject (prints the receipt)"),
    ):
        x = sub.add_parser(name, help=what)
        who = x.add_mutually_exclusive_group(required=True)
        who.add_argument("--user", default="", help="user_id")
        who.add_argument("--agent", default="", help="agent_id")
        who.add_argument("--all", action="store_true", help="the whole tenant")
        if name == "export":
            x.add_argument("-o", "--output", default="-", help="file (default: stdout)")
        else:
            x.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    x = sub.add_parser("import", help="write an export's JSON lines into this tenant")
    x.add_argument("input", help="file written by `memlake export` (- for stdin)")

    fa = sub.add_parser("fact", help="versioned facts")
    fsub = fa.add_subparsers(dest="fact_cmd", metavar="ACTION")
    a = fsub.add_parser("assert", help="assert subject predicate value")
    a.add_argument("subject")
    a.add_argument("predicate")
    a.add_argument("value")
    _scope_args(a)
    a.add_argument("--valid-from")
    a.add_argument("--valid-to")
    a.add_argument("--policy", choices=sorted(POLICIES))
    a.add_argument("--confidence", type=float, default=0.0)
    a.add_argument("--actor", default="cli")
    a.add_argument("--reason", default="")
    a.add_argument("--request-id", default="")
    for name, what in (("get", "the current version"), ("history", "every version")):
        x = fsub.add_parser(name, help=f"{what} of a fact")
        x.add_argument("subject")
        x.add_argument("predicate")
        _scope_args(x)
    x = fsub.add_parser("asof", help="what was true at valid time T, as believed at record time R")
    x.add_argument("subject")
    x.add_argument("predicate")
    _scope_args(x)
    x.add_argument("--valid-time", help="ISO time T (default now)")
    x.add_argument("--record-time", help="ISO time R (default now)")
    x = fsub.add_parser("list", help="facts of a scope (and subject)")
    x.add_argument("subject", nargs="?", default="")
    _scope_args(x)
    x.add_argument("--history", action="store_true", help="every version, not only current")
    x = fsub.add_parser("retract", help="withdraw a fact's current value")
    x.add_argument("subject")
    x.add_argument("predicate")
    _scope_args(x)
    x.add_argument("--actor", default="cli")
    x.add_argument("--reason", default="")
    x = fsub.add_parser("conflicts", help="the conflict review queue")
    _scope_args(x)
    x.add_argument("--status", choices=sorted(CONFLICT_STATUSES), default="open")
    x = fsub.add_parser("resolve", help="resolve a queued conflict")
    x.add_argument("conflict_id")
    x.add_argument("resolution", choices=sorted(RESOLUTIONS))
    x.add_argument("--keep", default="", help="fact id to keep (keep-one)")
    x.add_argument("--actor", default="cli")
    x.add_argument("--reason", default="")
    x = fsub.add_parser("alias", help="make ALIAS another name of SUBJECT")
    x.add_argument("alias")
    x.add_argument("subject")
    _scope_args(x)
    x.add_argument("--actor", default="cli")
    x.add_argument("--reason", default="")
    x = fsub.add_parser("audit", help="the audit log of fact changes")
    x.add_argument("subject", nargs="?", default="")
    x.add_argument("predicate", nargs="?", default="")
    _scope_args(x)
    x.add_argument("--limit", type=int, default=100)
    x = fsub.add_parser("policy", help="show or set the tenant's default conflict policy")
    x.add_argument("policy", nargs="?", choices=[*sorted(POLICIES), "default"])
    x.add_argument("--actor", default="cli")
    x.add_argument("--reason", default="")
    return p


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


def _iso(t, timespec: str = "auto") -> str:
    return t.ToDatetime().isoformat(timespec=timespec) + "Z"


def _fact_line(f, history: bool = False) -> str:
    vf = _iso(f.valid_from) if f.HasField("valid_from") else "-"
    vt = _iso(f.valid_to) if f.HasField("valid_to") else "open"
    rt = _iso(f.record_time, "microseconds")
    re_ = _iso(f.record_end_time, "microseconds") if f.HasField("record_end_time") else "open"
    status = pb.FactStatus.Name(f.status).removeprefix("FACT_STATUS_")
    if history:  # a row's status is what it was while believed; say whether it still is
        status = f"{status}, believed" if re_ == "open" else f"was {status}, no longer believed"
    pred = f.predicate or f"(free text, key {f.key})"
    by = ",".join(s.actor or s.kind for s in f.sources if s.actor or s.kind)
    return (
        f"#{f.id} {f.subject} {pred} = {f.value!r} [{status}] "
        f"valid {vf} .. {vt}; recorded {rt} .. {re_}" + (f"; by {by}" if by else "")
    )


def _time(t) -> str:
    return t.ToDatetime().isoformat(timespec="seconds")


def _conflict_lines(c) -> list[str]:
    kind = vpb.ConflictKind.Name(c.kind).removeprefix("CONFLICT_KIND_")
    status = vpb.ConflictStatus.Name(c.status).removeprefix("CONFLICT_STATUS_")
    head = f"conflict {c.id} [{kind}, {status}] opened {_time(c.create_time)}"
    if c.kind == vpb.CONFLICT_KIND_SEMANTIC:
        head += f" similarity {c.similarity:.3f}"
    if c.HasField("resolve_time"):
        res = vpb.ConflictResolution.Name(c.resolution).removeprefix("CONFLICT_RESOLUTION_")
        head += (
            f"; {res if c.resolution else 'closed'} by {c.resolved_by or '-'} "
            f"at {_time(c.resolve_time)}: {c.resolution_reason or '-'}"
        )
    return [head, *[f"  {_fact_line(f)}" for f in c.facts]]


def _ints(x):
    """Struct numbers are doubles: print 3.0 as 3."""
    if isinstance(x, float) and x.is_integer():
        return int(x)
    if isinstance(x, dict):
        return {k: _ints(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_ints(v) for v in x]
    return x


def _audit_line(e) -> str:
    details = json.dumps(
        _ints(json_format.MessageToDict(e.details)),
        ensure_ascii=False,
        separators=(",", ":"),
        sort_keys=True,
    )
    who = e.actor or "-"
    why = f" because {e.reason!r}" if e.reason else ""
    fact = f" fact #{e.fact_id}" if e.fact_id else ""
    return f"{_time(e.time)} {e.action:<14} {e.fact_key}{fact} by {who}{why} {details}"


def _fact_cmd(c: MemlakeClient, a) -> int:
    sc = _scope(a) if hasattr(a, "user") else None
    if a.fact_cmd == "assert":
        r = c.assert_fact(
            a.subject,
            a.predicate,
            a.value,
            scope=sc,
            valid_from=_dt(a.valid_from),
            valid_to=_dt(a.valid_to),
            policy=POLICIES[a.policy] if a.policy else 0,
            confidence=a.confidence,
            source=pb.Source(kind="cli", actor=a.actor),
            reason=a.reason,
            request_id=a.request_id,
        )
        line = pb.WriteOutcome.Name(r.outcome).removeprefix("WRITE_OUTCOME_")
        if r.conflict_id:
            line += f" (conflict {r.conflict_id})"
        print(line)
        print(_fact_line(r.fact))
        if r.HasField("previous"):
            print("previous:", _fact_line(r.previous))
    elif a.fact_cmd == "get":
        r = c.get_fact(a.subject, a.predicate, scope=sc)
        print(_fact_line(r.fact))
        for f in r.conflicting:
            print("conflicting:", _fact_line(f))
    elif a.fact_cmd == "history":
        for f in c.fact_history(a.subject, a.predicate, scope=sc):
            print(_fact_line(f, history=True))
    elif a.fact_cmd == "asof":
        f = c.fact_as_of(
            a.subject,
            a.predicate,
            scope=sc,
            valid_time=_dt(a.valid_time),
            record_time=_dt(a.record_time),
        )
        print(_fact_line(f))
    elif a.fact_cmd == "list":
        for f in c.list_facts_all(scope=sc, subject=a.subject, include_history=a.history):
            print(_fact_line(f))
    elif a.fact_cmd == "retract":
        r = c.retract_fact(a.subject, a.predicate, scope=sc, actor=a.actor, reason=a.reason)
        print(_fact_line(r.fact))
    elif a.fact_cmd == "conflicts":
        token = ""
        while True:
            r = c.list_conflicts(scope=sc, status=CONFLICT_STATUSES[a.status], page_token=token)
            for x in r.conflicts:
                print("\n".join(_conflict_lines(x)))
            token = r.next_page_token
            if not token:
                break
    elif a.fact_cmd == "resolve":
        r = c.resolve_conflict(
            a.conflict_id,
            RESOLUTIONS[a.resolution],
            keep_fact_id=a.keep,
            actor=a.actor,
            reason=a.reason,
        )
        print("\n".join(_conflict_lines(r.conflict)))
    elif a.fact_cmd == "alias":
        subject = c.add_subject_alias(a.alias, a.subject, scope=sc, actor=a.actor, reason=a.reason)
        print(f"{a.alias!r} now names subject {subject!r}")
    elif a.fact_cmd == "audit":
        for n, e in enumerate(
            c.list_audit_events_all(scope=sc, subject=a.subject, predicate=a.predicate)
        ):
            if n >= a.limit:
                break
            print(_audit_line(e))
    elif a.fact_cmd == "policy":
        if a.policy:
            value = 0 if a.policy == "default" else POLICIES[a.policy]
            r = c.set_conflict_policy(value, actor=a.actor, reason=a.reason)
        else:
            r = c.get_conflict_policy()
        name = pb.ConflictPolicy.Name(r.policy).removeprefix("CONFLICT_POLICY_")
        print(f"{name} ({'tenant default' if r.tenant_default else 'server default'})")
    else:
        print(
            "usage: memlake fact {assert,get,history,asof,list,retract,conflicts,resolve,"
            "alias,audit,policy} ...",
            file=sys.stderr,
        )
        return 2
    return 0


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


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, or forced)."""

    def __init__(self, label: str, total: int = 0, *, force: bool = False) -> None:
        self.label, self.total, self.done = label, total, 0
        self.show = force or sys.stderr.isatty()
        self._last = 0.0

    def update(self, n: int, total: int | None = None) -> None:
        self.done += n
        if total:
            self.total = total
        now = time.monotonic()
        if self.show and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = min(self.done / self.total, 1.0) if self.total else 0.0
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.done}/{self.total or '?'} lines")
            sys.stderr.flush()

    def close(self) -> None:
        if self.show:
            sys.stderr.write("\n")


def _privacy_cmd(c: MemlakeClient, a) -> int:
    if a.cmd == "import":
        fh = sys.stdin if a.input == "-" else open(a.input, encoding="utf-8")  # noqa: SIM115
        with fh:
            lines = [ln for ln in fh if ln.strip()]
        bar = Progress("import", len(lines))

        def counted():
            for ln in lines:
                bar.update(1)
                yield ln

        r = c.import_subject(counted())
        bar.close()
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()))
        print(f"imported {kinds}; seq {r.seq}")
        return 0
    who = dict(user_id=a.user, agent_id=a.agent, tenant=a.all)
    if a.cmd == "erase":
        what = f"user {a.user}" if a.user else f"agent {a.agent}" if a.agent else "the tenant"
        if not a.yes and input(f"erase everything held about {what}? [y/N] ").lower() != "y":
            print("nothing erased")
            return 1
        r = c.erase_subject(**who)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items()) if v)
        print(f"erasure job {r.job_id} done: {counts or 'nothing left to erase'}; seq {r.seq}")
        return 0
    out = sys.stdout if a.output == "-" else open(a.output, "w", encoding="utf-8")  # noqa: SIM115
    bar = Progress("export")
    try:
        for chunk in c.export_subject(**who):
            for line in chunk.lines:
                out.write(line + "\n")
            bar.update(len(chunk.lines), chunk.total_lines)
    finally:
        bar.close()
        if out is not sys.stdout:
            out.close()
    if a.output != "-":
        print(f"exported {bar.done} lines to {a.output}")
    return 0


def parse_grant(spec: str) -> apb.Grant:
    """ "users=42,43 types=fact perm=read" -> Grant."""
    fields: dict[str, list[str]] = {}
    for part in spec.split():
        k, sep, v = part.partition("=")
        if not sep or k not in ("users", "agents", "sessions", "types", "perm"):
            raise SystemExit(
                f"bad grant part {part!r}: use users=, agents=, sessions=, types=, perm="
            )
        fields[k] = [x for x in v.split(",") if x or k == "users"]
    perms = fields.get("perm", [])
    if not perms or set(perms) - {"read", "write"}:
        raise SystemExit(f"grant {spec!r}: perm= must list read and/or write")
    unknown = set(fields.get("types", [])) - set(TYPES)
    if unknown:
        raise SystemExit(f"grant {spec!r}: unknown types {sorted(unknown)}")
    return grant(
        users=fields.get("users", []),
        agents=fields.get("agents", []),
        sessions=fields.get("sessions", []),
        types=fields.get("types", []),
        read="read" in perms,
        write="write" in perms,
    )


def _key_line(k) -> str:
    role = apb.KeyRole.Name(k.role).removeprefix("KEY_ROLE_")
    state = " REVOKED" if k.HasField("revoke_time") else ""
    exp = f" expires {k.expire_time.ToJsonString()}" if k.HasField("expire_time") else ""
    grants = "; ".join(_grant_text(g) for g in k.grants)
    return f"{k.key_id}  {role:<8} {k.name}{exp}{state}{'  [' + grants + ']' if grants else ''}"


def _grant_text(g) -> str:
    parts = [
        f"{name}={','.join(vals)}"
        for name, vals in (
            ("users", g.user_ids),
            ("agents", g.agent_ids),
            ("sessions", g.session_ids),
        )
        if vals
    ]
    if g.types:
        parts.append(
            "types="
            + ",".join(pb.MemoryType.Name(t).removeprefix("MEMORY_TYPE_").lower() for t in g.types)
        )
    parts.append(
        "perm="
        + ",".join(
            apb.Permission.Name(p).removeprefix("PERMISSION_").lower() for p in g.permissions
        )
    )
    return " ".join(parts)


def _auth_cmd(c: MemlakeClient, a) -> int:
    if a.cmd == "whoami":
        r = c.whoami()
        print(f"tenant {r.tenant} ({r.method})\n{_key_line(r.key)}")
    elif a.cmd == "tenant" and a.tenant_cmd == "create":
        r = c.create_tenant(a.name, audit_reads=a.audit_reads)
        print(f"tenant {r.tenant.name} created\n{_key_line(r.admin_key)}")
        print(f"secret (shown once): {r.admin_secret}")
    elif a.cmd == "tenant":
        for t in _pages_of(c.admin.ListTenants, apb.ListTenantsRequest, "tenants", c):
            print(f"{t.name}{'  (reads audited)' if t.audit_reads else ''}")
    elif a.key_cmd == "create":
        r = c.create_api_key(
            name=a.name,
            role=apb.KeyRole.Value(f"KEY_ROLE_{a.role.upper()}"),
            grants=[parse_grant(g) for g in a.grant],
            tenant=a.key_tenant,
            ttl_seconds=a.ttl,
        )
        print(f"{_key_line(r.key)}\nsecret (shown once): {r.secret}")
    elif a.key_cmd == "list":
        for k in c.list_api_keys(include_revoked=a.revoked).keys:
            print(_key_line(k))
    elif a.key_cmd == "revoke":
        r = c.revoke_api_key(a.key_id)
        print(f"revoked {r.key.key_id} and {r.revoked_children} key(s) minted from it")
    elif a.cmd == "access":
        r = c.list_access_events(key_id=a.key, page_size=a.limit)
        for e in r.events:
            scope_ = "/".join(x for x in (e.user_id, e.agent_id, e.session_id) if x)
            print(
                f"{e.time.ToJsonString()[:19]} {e.action:<5} {e.code:<17} {e.key_id:<16} "
                f"{e.method.rsplit('/', 1)[-1]} {scope_} {' '.join(e.target_ids[:5])}"
            )
    return 0


def _pages_of(method, request_type, field: str, c: MemlakeClient):
    token = ""
    while True:
        r = c._call(method, request_type(page_token=token))
        yield from getattr(r, field)
        token = r.next_page_token
        if not token:
            return


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


if __name__ == "__main__":
    sys.exit(main())
