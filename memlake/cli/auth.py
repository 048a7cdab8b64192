"""`memlake whoami | tenant | key | access`, and grant specs."""

from __future__ import annotations

from memlake.cli.format import _key_line, _pages_of
from memlake.client import (
    TYPES,
    MemlakeClient,
    grant,
)
from memlake.v1 import admin_service_pb2 as apb


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
