"""The access audit: one row per write or admin call (always) and per read call (where the
tenant turned read auditing on): who (key), what (method, scope, ids), when, and the
outcome. No content is recorded, so erasing a subject only has ids to remove."""

from __future__ import annotations

import logging

from google.protobuf.message import Message

from shared.auth.grants import Identity
from shared.auth.store import KeyStore
from shared.db.engine import Database
from shared.db.models import AccessEvent
from shared.db.types import utcnow

log = logging.getLogger("memlake.audit")

READ_PREFIXES = ("Get", "List", "Search", "Export")
_MAX_IDS = 200


def action_of(full_method: str) -> str:
    service, _, method = full_method.lstrip("/").rpartition("/")
    if method.startswith(READ_PREFIXES):
        return "read"
    if service.endswith("AdminService"):
        return "admin"
    return "write"


def _scope_of(msg: Message | None) -> tuple[str, str, str]:
    """The first Scope found on the request (scope, memory.scope, key.scope)."""
    if msg is None:
        return "", "", ""
    for path in (("scope",), ("memory", "scope"), ("key", "scope")):
        m = msg
        for name in path:
            if m is None or name not in m.DESCRIPTOR.fields_by_name or not m.HasField(name):
                m = None
                break
            m = getattr(m, name)
        if m is not None:
            return m.user_id, m.agent_id, m.session_id
    return "", "", ""


def _ids_of(msg: Message | None, out: list[str], depth: int = 0) -> None:
    """ids named by a request or returned in a response, two levels deep."""
    if msg is None or depth > 2 or len(out) >= _MAX_IDS:
        return
    for fd, value in msg.ListFields():
        if fd.name in ("id", "memory_id", "key_id", "conflict_id") and fd.type == fd.TYPE_STRING:
            if value:
                out.append(str(value))
        elif fd.message_type is not None and fd.message_type.name not in ("Timestamp", "Value"):
            values = [value] if isinstance(value, Message) else value
            for v in values:
                if isinstance(v, Message):
                    _ids_of(v, out, depth + 1)


class AccessAuditor:
    def __init__(self, db: Database, store: KeyStore) -> None:
        self.db, self.store = db, store

    def record(
        self,
        ident: Identity,
        method: str,
        code: str,
        request: Message | None,
        response: Message | None,
        request_id: str,
        peer: str,
    ) -> None:
        action = action_of(method)
        try:
            if action == "read" and not self.store.audits_reads(ident.tenant):
                return
            user, agent, session = _scope_of(request)
            ids: list[str] = []
            _ids_of(request, ids)
            _ids_of(response, ids)
            with self.db.write() as s:
                s.add(
                    AccessEvent(
                        tenant=ident.tenant,
                        time=utcnow(),
                        key_id=ident.key_id or ident.method,
                        method=method[:128],
                        action=action,
                        code=code,
                        user_id=user[:256],
                        agent_id=agent[:256],
                        session_id=session[:256],
                        target_ids=list(dict.fromkeys(ids))[:_MAX_IDS],
                        request_id=request_id[:256],
                        peer=peer[:256],
                    )
                )
        except Exception:  # noqa: BLE001 - the call already happened; say it loudly
            log.exception("could not write the access audit row for %s", method)
