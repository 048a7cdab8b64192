"""The `memlake` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime

from google.protobuf import json_format

from memlake.client import POLICIES, TYPES, MemlakeClient, MemlakeError, scope, ts
from memlake.v1 import memory_pb2 as pb

EPILOG = """\
getting started:
  memlake serve                         start all three services on 127.0.0.1:50051
                                        (SQLite + local files in ./.memlake; Ctrl-C stops)
  memlake remember "Prefers short answers" --type reflection --user alice \\
      --key answer_style --confidence 0.8 --evidence 1
  memlake remember "Alice's name is Alice Liddell" --type background --key name --user alice
  memlake search "how does alice like answers" --user alice
  memlake context --user alice --intent "plan a trip" --budget 500
  memlake fact assert alice lives_in Paris --user alice
  memlake fact history alice lives_in --user alice

environment: MEMLAKE_ADDR (default 127.0.0.1:50051), MEMLAKE_TENANT; the server reads
MEMLAKE_DATABASE_URL, MEMLAKE_REDIS_URL, MEMLAKE_DATA_DIR and the rest listed in README.md.
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
    p.add_argument("--tenant", default=os.environ.get("MEMLAKE_TENANT", ""))
    p.add_argument("--timeout", type=float, default=30.0)
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    s = sub.add_parser("serve", help="run the services (default: all three in one process)")
    s.add_argument("--service", choices=["all", "ingest", "retrieval", "versioning"], default="all")

    d = sub.add_parser("db", help="database maintenance")
    d.add_argument("action", choices=["upgrade"])

    ix = sub.add_parser("index", help="search index maintenance (run where retrieval runs)")
    ix.add_argument("action", choices=["rebuild"], help="rebuild every shard from the database")

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

    g = sub.add_parser("get", help="get a memory by id")
    g.add_argument("id")

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

    c = sub.add_parser("context", help="context for a new session")
    _scope_args(c)
    c.add_argument("--intent", default="")
    c.add_argument("--budget", type=int, default=1000)
    c.add_argument("--raw", action="store_true", help="print only the rendered block")

    f = sub.add_parser("forget", help="delete a memory by id")
    f.add_argument("id")

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
    a.add_argument("--actor", default="cli")
    for name in ("get", "history"):
        x = fsub.add_parser(name, help=f"{name} of a fact")
        x.add_argument("subject")
        x.add_argument("predicate")
        _scope_args(x)
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


def _fact_line(f) -> str:
    vf = f.valid_from.ToDatetime().isoformat() if f.HasField("valid_from") else "-"
    vt = f.valid_to.ToDatetime().isoformat() if f.HasField("valid_to") else "open"
    rt = f.record_time.ToDatetime().isoformat(timespec="seconds")
    re_ = (
        f.record_end_time.ToDatetime().isoformat(timespec="seconds")
        if f.HasField("record_end_time")
        else "open"
    )
    status = pb.FactStatus.Name(f.status).removeprefix("FACT_STATUS_")
    return (
        f"#{f.id} {f.subject} {f.predicate} = {f.value!r} [{status}] "
        f"valid {vf} .. {vt}; recorded {rt} .. {re_}"
    )


def run(a) -> int:
    if a.cmd == "serve":
        from shared.launch import main as serve

        serve(a.service)
        return 0
    if a.cmd == "db":
        from shared.db.engine import Database
        from shared.settings import get_settings

        settings = get_settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        Database(settings.sqlalchemy_url()).upgrade()
        print("database at head")
        return 0
    if a.cmd == "index":
        from retrieval_service.index import rebuild
        from shared.embedding import make_embedder
        from shared.settings import get_settings

        settings = get_settings()
        emb = make_embedder(settings.embedder)
        t0 = time.monotonic()
        idx = rebuild(settings, emb.name, emb.dim)
        st = idx.stats()
        print(
            f"rebuilt {st['partitions']} partitions, {st['rows']} memories, "
            f"seq {st['applied_seq']}, in {time.monotonic() - t0:.1f}s -> {settings.index_dir()}"
        )
        return 0
    with MemlakeClient(a.addr, tenant=a.tenant, timeout=a.timeout) as c:
        if a.cmd == "remember":
            r = c.remember(_memory(a), request_id=a.request_id)
            print(
                f"id {r.memory.id}  seq {r.seq}  "
                f"{pb.WriteOutcome.Name(r.outcome).removeprefix('WRITE_OUTCOME_')}"
            )
        elif a.cmd == "get":
            _print(c.get(a.id), True)
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
            )
            for x in r.results:
                m = x.memory
                print(
                    f"{x.score:.4f}  {m.id:>8}  "
                    f"{pb.MemoryType.Name(m.type).removeprefix('MEMORY_TYPE_'):<12} "
                    f"{m.content[:100]}"
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
            sc = _scope(a)
            if a.fact_cmd == "assert":
                r = c.assert_fact(
                    a.subject,
                    a.predicate,
                    a.value,
                    scope=sc,
                    valid_from=_dt(a.valid_from),
                    valid_to=_dt(a.valid_to),
                    policy=POLICIES[a.policy] if a.policy else 0,
                    source=pb.Source(kind="cli", actor=a.actor),
                )
                print(pb.WriteOutcome.Name(r.outcome).removeprefix("WRITE_OUTCOME_"))
                print(_fact_line(r.fact))
            elif a.fact_cmd == "get":
                r = c.get_fact(a.subject, a.predicate, scope=sc)
                if r.HasField("fact"):
                    print(_fact_line(r.fact))
                for f in r.conflicting:
                    print("conflicting:", _fact_line(f))
            elif a.fact_cmd == "history":
                for f in c.fact_history(a.subject, a.predicate, scope=sc):
                    print(_fact_line(f))
            else:
                print("usage: memlake fact {assert,get,history} ...", file=sys.stderr)
                return 2
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
        if exc.code == "UNAVAILABLE":
            print(f"is memlake running at {a.addr}? start it with `make run`", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
