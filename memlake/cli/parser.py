"""The `memlake` argument parser and its getting-started epilog."""

from __future__ import annotations

import argparse
import os

from memlake.cli.format import _scope_args
from memlake.client import (
    CONFLICT_STATUSES,
    POLICIES,
    RESOLUTIONS,
    TYPES,
)

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
