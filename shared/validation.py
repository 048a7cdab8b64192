"""Every request checked against declared limits in one place, before any servicer runs.

The rules are keyed by message/field full name; the same limits are written as comments
beside each field in proto/memlake/v1/*.proto (keep the two in step: tests/test_validation.py
checks that every field named here is documented there). What every field gets without a
rule: no NUL characters in strings (Postgres refuses them), at most DEFAULT_MAX_CHARS
characters, at most DEFAULT_MAX_ITEMS repeated items, only the declared values of an
enum, finite floats (a Vector's values are checked where they are read:
CHECKED_WHERE_READ), timestamps within years 1-9999 with nanos in [0, 1e9), and
google.protobuf.Value/Struct nested at most MAX_VALUE_DEPTH deep with finite numbers.
Rules that need the database (does this id exist, is this the right tenant) stay with
the domain code."""

from __future__ import annotations

import math
import re

import numpy as np
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from shared.errors import InvalidArgument

DEFAULT_MAX_CHARS = 4096
DEFAULT_MAX_ITEMS = 1000
MAX_VALUE_DEPTH = 16
MAX_ID = 2**63 - 1
TS_MIN = -62135596800  # 0001-01-01T00:00:00Z
TS_MAX = 253402300799  # 9999-12-31T23:59:59Z
_ID_RE = re.compile(r"[0-9]{1,19}")

P = "memlake.v1."
# Float fields where -inf / +inf mean "no bound" (the replicas' internal fan-out).
OPEN_ENDED = {P + "SearchCandidatesRequest.start_time", P + "SearchCandidatesRequest.end_time"}
# Most characters a string field may hold.
MAX_CHARS: dict[str, int] = {
    P + "Memory.content": 32_000,
    P + "FactAttributes.value": 32_000,
    P + "AssertFactRequest.value": 32_000,
    P + "SkillAttributes.outcome_notes": 32_000,
    P + "ListMemoriesRequest.page_token": 1024,
    P + "ListFactsRequest.page_token": 1024,
    P + "ListConflictsRequest.page_token": 1024,
    P + "ListAuditEventsRequest.page_token": 1024,
    P + "Source.document_uri": 2048,
}
for _name in (
    "Scope.tenant",
    "Scope.user_id",
    "Scope.agent_id",
    "Scope.session_id",
    "Source.kind",
    "Source.actor",
    "Source.session_id",
    "Source.message_id",
    "BackgroundAttributes.key",
    "ReflectionAttributes.key",
    "SkillAttributes.name",
    "ConversationAttributes.role",
    "ConversationAttributes.speaker",
    "EventAttributes.kind",
    "EventAttributes.location",
    "EventAttributes.participants",
    "FactAttributes.subject",
    "FactAttributes.predicate",
    "AssertFactRequest.subject",
    "AssertFactRequest.predicate",
    "FactKey.subject",
    "FactKey.predicate",
    "ListFactsRequest.subject",
    "ListAuditEventsRequest.subject",
    "ListAuditEventsRequest.predicate",
    "AddSubjectAliasRequest.alias",
    "AddSubjectAliasRequest.subject",
    "RememberRequest.request_id",
    "StreamRememberRequest.request_id",
    "ForgetRequest.request_id",
    "AssertFactRequest.request_id",
    "RetractFactRequest.request_id",
    "RetractFactRequest.actor",
    "ResolveConflictRequest.actor",
    "AddSubjectAliasRequest.actor",
    "SetConflictPolicyRequest.actor",
    "Memory.etag",
):
    MAX_CHARS[P + _name] = 256

# Strings that, when set, must be a decimal id in [0, 2^63).
DECIMAL_IDS = {
    P + "Memory.id",
    P + "GetMemoryRequest.id",
    P + "ForgetRequest.id",
    P + "ReflectionAttributes.evidence_memory_ids",
    P + "FactAttributes.fact_version_id",
    P + "ResolveConflictRequest.conflict_id",
    P + "ResolveConflictRequest.keep_fact_id",
}

# Most items a repeated field may hold.
MAX_ITEMS: dict[str, int] = {
    P + "RememberBatchRequest.requests": 1000,
    P + "ReflectionAttributes.evidence_memory_ids": 100,
    P + "SkillAttributes.steps": 100,
    P + "SkillAttributes.inputs": 100,
    P + "EventAttributes.participants": 100,
    P + "ListMemoriesRequest.types": 16,
    P + "SearchMemoriesRequest.types": 16,
    P + "GetContextRequest.types": 16,
}

# Inclusive ranges of integer fields.
INT_RANGE: dict[str, tuple[int, int]] = {
    P + "ListMemoriesRequest.page_size": (0, 1000),
    P + "ListFactsRequest.page_size": (0, 1000),
    P + "ListConflictsRequest.page_size": (0, 1000),
    P + "ListAuditEventsRequest.page_size": (0, 1000),
    P + "SearchMemoriesRequest.top_k": (0, 200),
    P + "SearchMemoriesRequest.min_seq": (0, MAX_ID),
    P + "GetContextRequest.min_seq": (0, MAX_ID),
    P + "GetContextRequest.token_budget": (0, 100_000),
}

# Numbers checked where they are read, in the pass that converts them
# (shared/vectors.client_vector: finite, not all zero, the model's dimension; every request
# field holding a Vector goes through it), so not converted a second time here.
CHECKED_WHERE_READ = {P + "Vector.values"}

# Repeated message fields whose items are checked one by one by the servicer, so one bad
# item fails only itself (RememberBatch answers per item).
PER_ITEM = {P + "RememberBatchRequest.requests"}

_INTS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}
_FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}


def check(msg: Message, prefix: str = "", *, skip_per_item: bool = False) -> None:
    """Raises InvalidArgument naming the first field that breaks a rule. The message never
    repeats the offending value (it may be huge or private)."""
    _message(msg, prefix, skip_per_item, 0)


# Message kinds checked by their own rules rather than field by field.
_TIMESTAMP, _VALUE = 1, 2
_SPECIAL = {
    "google.protobuf.Timestamp": _TIMESTAMP,
    "google.protobuf.Value": _VALUE,
    "google.protobuf.Struct": _VALUE,
}


class _Field:
    """What the rules say about one field, worked out once per field descriptor (every
    request of a kind has the same fields: the walk reads this instead of building each
    field's full name and looking its rules up again)."""

    __slots__ = ("name", "full", "type", "repeated", "skip", "limit", "items", "per_item",
                 "ids", "enum", "lo", "hi", "open_ended", "later")  # fmt: skip

    def __init__(self, f: FieldDescriptor) -> None:
        self.name = f.name
        self.full = full = f"{f.containing_type.full_name}.{f.name}"
        self.type = f.type
        self.repeated = f.is_repeated
        # No map fields in memlake.v1 requests today.
        self.skip = bool(
            f.is_repeated and f.message_type is not None and f.message_type.GetOptions().map_entry
        )
        self.limit = MAX_CHARS.get(full, DEFAULT_MAX_CHARS)
        self.items = MAX_ITEMS.get(full, DEFAULT_MAX_ITEMS)
        self.per_item = full in PER_ITEM
        self.later = full in CHECKED_WHERE_READ
        self.ids = full in DECIMAL_IDS
        self.enum = f.enum_type if f.type == FieldDescriptor.TYPE_ENUM else None
        self.lo, self.hi = INT_RANGE.get(full, (-(2**63), 2**64))
        self.open_ended = full in OPEN_ENDED


_FIELDS: dict[FieldDescriptor, _Field] = {}


def _field(f: FieldDescriptor) -> _Field:
    info = _FIELDS.get(f)
    if info is None:
        info = _FIELDS[f] = _Field(f)
    return info


def _message(msg: Message, prefix: str, skip: bool, depth: int) -> None:
    special = _SPECIAL.get(msg.DESCRIPTOR.full_name)
    if special == _TIMESTAMP:
        _timestamp(msg, prefix)
        return
    if special == _VALUE:
        _value(msg, prefix, depth)
        return
    for f, value in msg.ListFields():
        info = _FIELDS.get(f) or _field(f)
        path = f"{prefix}.{info.name}" if prefix else info.name
        if info.repeated:
            if info.skip:
                continue
            if len(value) > info.items:
                raise InvalidArgument(path, f"at most {info.items} items")
            if (skip and info.per_item) or info.later:
                continue
            if info.type in _FLOATS:
                # All finite (a vector's values): one numpy pass, no loop in Python.
                if np.isfinite(np.asarray(value, dtype=np.float64)).all():
                    continue
                for v in value:  # numbers of a repeated field are named by the field
                    _scalar_or_message(info, v, path, skip, depth)
                continue
            for i, v in enumerate(value):
                _scalar_or_message(info, v, f"{path}[{i}]", skip, depth)
        else:
            _scalar_or_message(info, value, path, skip, depth)


def _scalar_or_message(info: _Field, v, path: str, skip: bool, depth: int) -> None:
    t = info.type
    if t == FieldDescriptor.TYPE_MESSAGE:
        _message(v, path, skip, depth + 1)
    elif t == FieldDescriptor.TYPE_STRING:
        if len(v) > info.limit:
            raise InvalidArgument(path, f"longer than {info.limit} characters")
        if "\x00" in v:
            raise InvalidArgument(path, "must not contain NUL characters")
        if info.ids and v and not (_ID_RE.fullmatch(v) and int(v) <= MAX_ID):
            raise InvalidArgument(path, "is not an id (a decimal number below 2^63)")
    elif t == FieldDescriptor.TYPE_ENUM:
        if info.enum.values_by_number.get(v) is None:
            raise InvalidArgument(path, f"{v} is not a value of {info.enum.name}")
    elif t in _FLOATS:
        if not math.isfinite(v) and (math.isnan(v) or not info.open_ended):
            raise InvalidArgument(path, "must be a finite number")
    elif t in _INTS:
        if not info.lo <= v <= info.hi:
            raise InvalidArgument(path, f"must be within [{info.lo}, {info.hi}]")


def _string(full: str, v: str, path: str) -> None:
    limit = MAX_CHARS.get(full, DEFAULT_MAX_CHARS)
    if len(v) > limit:
        raise InvalidArgument(path, f"longer than {limit} characters")
    if "\x00" in v:
        raise InvalidArgument(path, "must not contain NUL characters")
    if full in DECIMAL_IDS and v and not (_ID_RE.fullmatch(v) and int(v) <= MAX_ID):
        raise InvalidArgument(path, "is not an id (a decimal number below 2^63)")


def _timestamp(ts, path: str) -> None:
    if not TS_MIN <= ts.seconds <= TS_MAX:
        raise InvalidArgument(path, "must be within years 1 to 9999")
    if not 0 <= ts.nanos <= 999_999_999:
        raise InvalidArgument(path, "nanos must be within [0, 999999999]")


def _value(v, path: str, depth: int) -> None:
    """google.protobuf.Value / Struct / ListValue: finite numbers, bounded nesting."""
    if depth > MAX_VALUE_DEPTH:
        raise InvalidArgument(path, f"nested more than {MAX_VALUE_DEPTH} deep")
    name = v.DESCRIPTOR.full_name
    if name == "google.protobuf.Struct":
        for k, item in v.fields.items():
            _string("", k, path)
            _value(item, path, depth + 1)
        return
    kind = v.WhichOneof("kind")
    if kind == "number_value" and not math.isfinite(v.number_value):
        raise InvalidArgument(path, "must be a finite number")
    if kind == "string_value":
        _string("", v.string_value, path)
    elif kind == "struct_value":
        _value(v.struct_value, path, depth + 1)
    elif kind == "list_value":
        if len(v.list_value.values) > DEFAULT_MAX_ITEMS:
            raise InvalidArgument(path, f"at most {DEFAULT_MAX_ITEMS} items")
        for item in v.list_value.values:
            _value(item, path, depth + 1)
