"""Argument and output helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime

from google.protobuf import json_format

from memlake.client import (
    MemlakeClient,
    scope,
)
from memlake.v1 import admin_service_pb2 as apb
from memlake.v1 import memory_pb2 as pb
from memlake.v1 import versioning_service_pb2 as vpb


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


def _pages_of(method, request_type, field: str, c: MemlakeClient):
    token = ""
    while True:
        r = c._call(method, request_type(page_token=token))
        yield from getattr(r, field)
        token = r.next_page_token
        if not token:
            return
