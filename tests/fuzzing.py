"""Requests generated from the protobuf descriptors, for every RPC of every memlake.v1
service: hypothesis strategies built field by field (any value the wire format allows,
with a bias towards plausible ones so calls also get past validation), plus raw byte
bodies. Used by tests/test_fuzz.py (a few hundred cases per RPC) and bench/fuzz.py."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

import memlake.v1
from shared import validation

F = FieldDescriptor
# Codes a well-behaved server may answer with for arbitrary input.
ALLOWED = {
    "OK",
    "INVALID_ARGUMENT",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "FAILED_PRECONDITION",
    "PERMISSION_DENIED",
    "UNAUTHENTICATED",
    "RESOURCE_EXHAUSTED",
    "ABORTED",
    "OUT_OF_RANGE",
}


@dataclass
class Rpc:
    path: str  # "/memlake.v1.IngestService/Remember"
    input: Descriptor
    output: Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def call(self, channel: grpc.Channel, request, metadata, timeout: float):
        """Sends a message (or a list of them for a client stream, or raw bytes)."""
        raw = isinstance(request, bytes) or (
            isinstance(request, list) and request and isinstance(request[0], bytes)
        )
        ser = (lambda b: b) if raw else (lambda m: m.SerializeToString())
        de = GetMessageClass(self.output).FromString
        kind = (
            ("stream" if self.client_streaming else "unary")
            + "_"
            + ("stream" if self.server_streaming else "unary")
        )
        method = getattr(channel, kind)(self.path, request_serializer=ser, response_deserializer=de)
        if self.client_streaming:
            request = iter(request if isinstance(request, list) else [request])
        out = method(request, metadata=metadata, timeout=timeout)
        return list(out) if self.server_streaming else out


def rpcs() -> list[Rpc]:
    """Every method of every service in the memlake.v1 package."""
    out = []
    for mod in pkgutil.iter_modules(memlake.v1.__path__):
        if not mod.name.endswith("_pb2"):
            continue
        fd = importlib.import_module(f"memlake.v1.{mod.name}").DESCRIPTOR
        for svc in fd.services_by_name.values():
            for m in svc.methods:
                out.append(
                    Rpc(
                        f"/{svc.full_name}/{m.name}",
                        m.input_type,
                        m.output_type,
                        m.client_streaming,
                        m.server_streaming,
                    )
                )
    return sorted(out, key=lambda r: r.path)


_WORDS = ["", "u1", "a", "1", "42", "0", "user", "lives_in", "Oslo", "s1", "name", "x y z"]
_plain = st.sampled_from(_WORDS)
_text = st.one_of(
    _plain,
    _plain,
    _plain,
    _plain,
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=0, max_size=600),
    st.sampled_from(["\x00", "a\x00b", "²", "9223372036854775808", "-1", " 7", "1e400"]),
    st.integers(0, 2**64).map(str),
    st.builds(lambda n, c: c * n, st.integers(200, 40_000), st.sampled_from("xé\U0001f600")),
)
_INT_BOUNDS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _int(t):
    lo, hi = _INT_BOUNDS[t]
    small = st.integers(0, 60)
    return st.one_of(
        small, small, st.integers(-3, 60), st.integers(lo, hi), st.sampled_from([lo, hi])
    )


_plausible_ts = st.builds(
    lambda s: timestamp_pb2.Timestamp(seconds=s), st.integers(1_500_000_000, 1_900_000_000)
)
_timestamp = st.one_of(
    _plausible_ts,
    _plausible_ts,
    st.builds(
        lambda s, n: timestamp_pb2.Timestamp(seconds=s, nanos=n),
        st.one_of(st.integers(0, 4_000_000_000), st.integers(-(2**63), 2**63 - 1)),
        st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
    ),
)
_number = st.floats(allow_nan=True, allow_infinity=True)
_value = st.recursive(
    st.one_of(
        st.builds(lambda x: struct_pb2.Value(number_value=x), _number),
        st.builds(lambda x: struct_pb2.Value(string_value=x), _text),
        st.builds(lambda x: struct_pb2.Value(bool_value=x), st.booleans()),
        st.just(struct_pb2.Value(null_value=0)),
    ),
    lambda inner: st.lists(inner, max_size=3).map(
        lambda xs: struct_pb2.Value(list_value=struct_pb2.ListValue(values=xs))
    ),
    max_leaves=30,
)


_decimal = st.integers(1, 50).map(str)


def _scalar(f: FieldDescriptor):
    t = f.type
    if t == F.TYPE_STRING:
        if f.full_name in validation.DECIMAL_IDS:
            return st.one_of(_decimal, _decimal, _decimal, _text)
        return _text
    if t == F.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == F.TYPE_BOOL:
        return st.booleans()
    if t in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        unit = st.floats(0.05, 1)
        return st.one_of(unit, unit, unit, _number)
    if t == F.TYPE_ENUM:
        declared = st.sampled_from([v.number for v in f.enum_type.values if v.number])
        return st.one_of(declared, declared, declared, _int(F.TYPE_INT32))
    return _int(t)


def _field(f: FieldDescriptor, depth: int):
    if f.type == F.TYPE_MESSAGE:
        name = f.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return _timestamp
        if name == "google.protobuf.Value":
            return _value
        if depth > 4:
            return st.none()
        return message(f.message_type, depth + 1)
    return _scalar(f)


def message(d: Descriptor, depth: int = 0):
    """A strategy for messages of type d: each field set or left unset independently."""
    cls = GetMessageClass(d)
    parts = {}
    for f in d.fields:
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            continue
        inner = _field(f, depth)
        if f.is_repeated:
            parts[f.name] = st.lists(inner, max_size=3)
        else:
            parts[f.name] = st.one_of(st.none(), inner)

    @st.composite
    def build(draw) -> Message:
        m = cls()
        for name, strat in parts.items():
            v = draw(strat)
            if v is None or v == []:
                continue
            f = d.fields_by_name[name]
            try:
                if f.is_repeated:
                    if f.type == F.TYPE_MESSAGE:
                        getattr(m, name).extend([x for x in v if x is not None])
                    else:
                        getattr(m, name).extend(v)
                elif f.type == F.TYPE_MESSAGE:
                    getattr(m, name).CopyFrom(v)
                else:
                    setattr(m, name, v)
            except (ValueError, TypeError):
                pass  # a value this field's type cannot hold (e.g. a float32 overflow)
        return m

    return build()


def requests(rpc: Rpc):
    """Requests for one RPC: messages, or a short list of them for client streams."""
    one = message(rpc.input)
    return st.lists(one, min_size=1, max_size=3) if rpc.client_streaming else one


garbage = st.one_of(
    st.binary(max_size=256),
    st.sampled_from([b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x05ab", b"\x08" * 50]),
)
