"""protobuf <-> stored records. The only place that knows both shapes."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from memlake.v1 import memory_pb2 as pb
from shared.db.models import MemoryRecord

ATTR_FIELD = {
    pb.MEMORY_TYPE_BACKGROUND: "background",
    pb.MEMORY_TYPE_FACT: "fact",
    pb.MEMORY_TYPE_EVENT: "event",
    pb.MEMORY_TYPE_CONVERSATION: "conversation",
    pb.MEMORY_TYPE_REFLECTION: "reflection",
    pb.MEMORY_TYPE_SKILL: "skill",
}
TYPE_NAMES = {v: k.removeprefix("MEMORY_TYPE_") for k, v in pb.MemoryType.items()}


def ts_to_dt(ts: Timestamp, *, has: bool = True) -> datetime | None:
    if not has or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return ts.ToDatetime(tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_NAIVE = datetime(1970, 1, 1)


def dt_to_ts(dt: datetime | None, out: Timestamp) -> None:
    """As Timestamp.FromDatetime (naive means UTC), without its per-call overhead."""
    if dt is not None:
        d = dt - (_EPOCH_NAIVE if dt.tzinfo is None else _EPOCH)
        out.seconds = d.days * 86400 + d.seconds
        out.nanos = d.microseconds * 1000


def msg_to_dict(msg) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def record_to_proto(rec: MemoryRecord, out: pb.Memory | None = None) -> pb.Memory:
    m = out if out is not None else pb.Memory()
    m.id = str(rec.id)
    m.type = rec.type
    m.scope.tenant = rec.tenant
    m.scope.user_id = rec.user_id
    m.scope.agent_id = rec.agent_id
    m.scope.session_id = rec.session_id
    m.content = rec.content
    field = ATTR_FIELD.get(rec.type)
    if field:
        sub = getattr(m, field)
        if rec.attributes:
            json_format.ParseDict(dict(rec.attributes), sub, ignore_unknown_fields=True)
        sub.SetInParent()
        if rec.type == pb.MEMORY_TYPE_CONVERSATION and rec.turn_index is not None:
            sub.turn_index = rec.turn_index
        if rec.type == pb.MEMORY_TYPE_SKILL:
            sub.revision = rec.revision
        if rec.type == pb.MEMORY_TYPE_FACT and rec.fact_status is not None:
            sub.status = rec.fact_status
    m.importance = rec.importance
    if rec.source:
        json_format.ParseDict(rec.source, m.source, ignore_unknown_fields=True)
    dt_to_ts(rec.create_time, m.create_time)
    dt_to_ts(rec.occur_time, m.occur_time)
    dt_to_ts(rec.expire_time, m.expire_time)
    m.etag = rec.etag
    m.current = rec.current
    return m


def encode_page_token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_page_token(token: str) -> dict[str, Any]:
    """A page token's fields: a flat JSON object of strings and integers in [0, 2^63).
    Anything else (floats, booleans, nesting, a bad encoding) is INVALID_ARGUMENT."""
    from shared.errors import InvalidArgument

    bad = InvalidArgument("page_token", "not a token this service issued")
    if len(token) > 1024:
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, RecursionError, UnicodeError) as exc:
        raise bad from exc
    if not isinstance(data, dict):
        raise bad
    for v in data.values():
        ok_int = type(v) is int and 0 <= v < 2**63
        if not (ok_int or (isinstance(v, str) and len(v) <= 64)):
            raise bad
    return data


def token_time(tok: dict[str, Any], key: str) -> datetime:
    """A timezone-aware datetime stored in a page token."""
    from shared.errors import InvalidArgument

    try:
        t = datetime.fromisoformat(tok[key])
    except (KeyError, ValueError, TypeError) as exc:
        raise InvalidArgument("page_token", "not a token this service issued") from exc
    if t.tzinfo is None:
        raise InvalidArgument("page_token", "not a token this service issued")
    return t


def token_int(tok: dict[str, Any], key: str) -> int:
    from shared.errors import InvalidArgument

    v = tok.get(key)
    if type(v) is not int:
        raise InvalidArgument("page_token", "not a token this service issued")
    return v
