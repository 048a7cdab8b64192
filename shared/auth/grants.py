"""Who the caller is and what it may touch. A MEMBER key may do what one of its grants
allows; ADMIN and OPERATOR keys may do everything in their tenant (default deny otherwise)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from memlake.v1 import admin_service_pb2 as apb
from memlake.v1 import memory_pb2 as pb
from shared.errors import InvalidArgument, PermissionDenied

READ, WRITE = apb.PERMISSION_READ, apb.PERMISSION_WRITE
MEMBER, ADMIN, OPERATOR = apb.KEY_ROLE_MEMBER, apb.KEY_ROLE_ADMIN, apb.KEY_ROLE_OPERATOR
ALL_TYPES = frozenset(v for v in pb.MemoryType.values() if v)
_PERM_NAMES = {READ: "read", WRITE: "write"}


def _type_name(t: int) -> str:
    return pb.MemoryType.Name(t).removeprefix("MEMORY_TYPE_") if t in ALL_TYPES else str(t)


@dataclass(frozen=True)
class Grant:
    """An empty dimension does not restrict; "" in users matches memories with no user."""

    users: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()
    sessions: frozenset[str] = frozenset()
    types: frozenset[int] = frozenset()
    permissions: frozenset[int] = frozenset()

    def matches(self, perm: int, type_: int, user: str, agent: str, session: str) -> bool:
        return (
            perm in self.permissions
            and (not self.types or type_ in self.types)
            and (not self.users or user in self.users)
            and (not self.agents or agent in self.agents)
            and (not self.sessions or session in self.sessions)
        )

    def covers(self, other: Grant) -> bool:
        """Whether everything other allows, this allows too."""

        def sub(mine: frozenset, theirs: frozenset) -> bool:
            return not mine or (bool(theirs) and theirs <= mine)

        return (
            other.permissions <= self.permissions
            and sub(self.types, other.types)
            and sub(self.users, other.users)
            and sub(self.agents, other.agents)
            and sub(self.sessions, other.sessions)
        )

    # -- (de)serialisation ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "users": sorted(self.users),
            "agents": sorted(self.agents),
            "sessions": sorted(self.sessions),
            "types": sorted(self.types),
            "permissions": sorted(self.permissions),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Grant:
        return cls(
            users=frozenset(d.get("users", ())),
            agents=frozenset(d.get("agents", ())),
            sessions=frozenset(d.get("sessions", ())),
            types=frozenset(d.get("types", ())),
            permissions=frozenset(d.get("permissions", ())),
        )

    def to_proto(self) -> apb.Grant:
        return apb.Grant(
            user_ids=sorted(self.users),
            agent_ids=sorted(self.agents),
            session_ids=sorted(self.sessions),
            types=sorted(self.types),
            permissions=sorted(self.permissions),
        )

    @classmethod
    def from_proto(cls, g: apb.Grant, field: str) -> Grant:
        perms = frozenset(g.permissions)
        if not perms:
            raise InvalidArgument(f"{field}.permissions", "name at least one of READ, WRITE")
        for i, p in enumerate(g.permissions):
            if p not in (READ, WRITE):
                raise InvalidArgument(f"{field}.permissions[{i}]", f"unknown permission {p}")
        for i, t in enumerate(g.types):
            if t not in ALL_TYPES:
                raise InvalidArgument(f"{field}.types[{i}]", f"unknown memory type {t}")
        for name in ("user_ids", "agent_ids", "session_ids"):
            for i, v in enumerate(getattr(g, name)):
                if len(v) > 256:
                    raise InvalidArgument(f"{field}.{name}[{i}]", "longer than 256 characters")
        return cls(
            users=frozenset(g.user_ids),
            agents=frozenset(g.agent_ids),
            sessions=frozenset(g.session_ids),
            types=frozenset(g.types),
            permissions=perms,
        )


@dataclass(frozen=True)
class Identity:
    tenant: str
    role: int
    grants: tuple[Grant, ...] = ()
    key_id: str = ""
    method: str = "api_key"  # api_key | client_certificate | mesh | internal | none
    expire_time: datetime | None = None
    # What to send on an internal hop to act as this caller (the bearer key, if any).
    forward: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    @property
    def full_access(self) -> bool:
        return self.role in (ADMIN, OPERATOR)

    @property
    def who(self) -> str:
        return f"key {self.key_id}" if self.key_id else f"this {self.method} identity"

    def can(self, perm: int, type_: int, user: str, agent: str, session: str = "") -> bool:
        if self.full_access:
            return True
        return any(g.matches(perm, type_, user, agent, session) for g in self.grants)

    def may_read_in(self, type_: int, user: str, agent: str) -> bool:
        """Whether some grant lets the caller read this type of this user and agent, in at
        least one session."""
        return self.full_access or any(
            READ in g.permissions
            and (not g.types or type_ in g.types)
            and (not g.users or user in g.users)
            and (not g.agents or agent in g.agents)
            for g in self.grants
        )

    def require(
        self,
        perm: int,
        type_: int,
        user: str,
        agent: str,
        session: str = "",
        what: str = "",
        *,
        name_scope: bool = True,
    ) -> None:
        """PERMISSION_DENIED unless allowed. name_scope=False where the caller named only an
        id: then the refusal does not tell which type or scope the stored item has."""
        if self.can(perm, type_, user, agent, session):
            return
        if not name_scope:
            raise PermissionDenied(
                f"{self.who} may not {_PERM_NAMES[perm]} {what or 'this memory'}: "
                "it is outside this key's grants",
                reason="PERMISSION_DENIED",
            )
        scope = ", ".join(
            f"{k} {v!r}" for k, v in (("user", user), ("agent", agent), ("session", session)) if v
        )
        raise PermissionDenied(
            f"{self.who} may not {_PERM_NAMES[perm]} {_type_name(type_)} memories"
            f"{' of ' + scope if scope else ' outside a user or agent scope'}"
            f"{' (' + what + ')' if what else ''}",
            reason="PERMISSION_DENIED",
        )

    def readable(self) -> tuple[Grant, ...] | None:
        """The grants that allow reading, or None when everything may be read."""
        if self.full_access:
            return None
        return tuple(g for g in self.grants if READ in g.permissions)

    def require_admin(self, tenant: str | None = None) -> None:
        tenant = tenant or self.tenant
        if self.role == OPERATOR or (self.role == ADMIN and tenant == self.tenant):
            return
        raise PermissionDenied(
            f"{self.who} is not an admin of tenant {tenant!r}", reason="NOT_AN_ADMIN"
        )

    def require_operator(self) -> None:
        if self.role != OPERATOR:
            raise PermissionDenied(f"{self.who} is not an operator key", reason="NOT_AN_OPERATOR")

    def to_proto_grants(self) -> list[apb.Grant]:
        return [g.to_proto() for g in self.grants]
