"""OpenAPI 3.1 for the HTTP/JSON interface, generated from proto/ (comments included).

    python -m shared.gateway.openapi > shared/gateway/openapi.json    (`make openapi`)

Paths are the Connect routes (`POST /memlake.v1.Service/Method`); schemas follow the
proto3 JSON mapping (lowerCamelCase names, int64 as strings, enums by name, Timestamp as
RFC 3339 text)."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from google.protobuf import descriptor_pb2

from shared.gateway.registry import INTERNAL_SERVICES
from shared.gateway.server import HTTP_STATUS

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "openapi.json"
FD = descriptor_pb2.FieldDescriptorProto

SCALARS = {
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    FD.TYPE_INT64: {"type": ["string", "integer"], "format": "int64"},
    FD.TYPE_UINT64: {"type": ["string", "integer"], "format": "uint64"},
    FD.TYPE_SINT64: {"type": ["string", "integer"], "format": "int64"},
    FD.TYPE_FIXED64: {"type": ["string", "integer"], "format": "uint64"},
    FD.TYPE_SFIXED64: {"type": ["string", "integer"], "format": "int64"},
    FD.TYPE_INT32: {"type": "integer", "format": "int32"},
    FD.TYPE_UINT32: {"type": "integer", "format": "uint32"},
    FD.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FD.TYPE_FIXED32: {"type": "integer", "format": "uint32"},
    FD.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: {"type": "string", "format": "byte"},
}
WELL_KNOWN = {
    ".google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    ".google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?s$"},
    ".google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    ".google.protobuf.Value": {"description": "Any JSON value."},
    ".google.protobuf.ListValue": {"type": "array", "items": {}},
    ".google.protobuf.Empty": {"type": "object"},
    ".google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
}


def descriptor_set(proto_dir: Path = ROOT / "proto") -> descriptor_pb2.FileDescriptorSet:
    """Compiles proto/ with its comments (needs grpcio-tools, a dev dependency)."""
    import importlib.resources

    from grpc_tools import protoc

    include = str(importlib.resources.files("grpc_tools") / "_proto")
    files = sorted(str(p.relative_to(proto_dir)) for p in proto_dir.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        rc = protoc.main(
            [
                "protoc",
                f"-I{proto_dir}",
                f"-I{include}",
                "--include_source_info",
                "--include_imports",
                f"--descriptor_set_out={out}",
                *files,
            ]
        )
        if rc != 0:
            raise RuntimeError(f"protoc failed ({rc})")
        return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _comments(fd: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    out = {}
    for loc in fd.source_code_info.location:
        text = (loc.leading_comments or loc.trailing_comments).strip()
        if text:
            out[tuple(loc.path)] = " ".join(line.strip() for line in text.splitlines())
    return out


def build(fds: descriptor_pb2.FileDescriptorSet) -> dict:
    schemas: dict[str, dict] = {}
    paths: dict[str, dict] = {}
    ours = [f for f in fds.file if f.package.startswith("memlake.")]

    def ref(type_name: str) -> dict:
        if type_name in WELL_KNOWN:
            return dict(WELL_KNOWN[type_name])
        return {"$ref": f"#/components/schemas/{type_name.lstrip('.')}"}

    def field_schema(f) -> dict:
        if f.type == FD.TYPE_MESSAGE:
            s = ref(f.type_name)
        elif f.type == FD.TYPE_ENUM:
            s = ref(f.type_name)
        else:
            s = dict(SCALARS[f.type])
        return s

    def add_message(m, prefix: str, path: tuple[int, ...], comments) -> None:
        name = f"{prefix}.{m.name}"
        maps = {n.name: n for n in m.nested_type if n.options.map_entry}
        props = {}
        for i, f in enumerate(m.field):
            entry = maps.get(f.type_name.rsplit(".", 1)[-1]) if f.type == FD.TYPE_MESSAGE else None
            if entry is not None and f.label == FD.LABEL_REPEATED:
                s = {"type": "object", "additionalProperties": field_schema(entry.field[1])}
            else:
                s = field_schema(f)
                if f.label == FD.LABEL_REPEATED:
                    s = {"type": "array", "items": s}
            doc = comments.get((*path, 2, i))
            if doc:
                s = (
                    {**s, "description": doc}
                    if "$ref" not in s
                    else {"allOf": [s], "description": doc}
                )
            props[f.json_name] = s
        schema: dict = {"type": "object", "properties": props}
        doc = comments.get(path)
        if doc:
            schema["description"] = doc
        oneofs = {}
        for f in m.field:
            if f.HasField("oneof_index") and not f.proto3_optional:
                oneofs.setdefault(m.oneof_decl[f.oneof_index].name, []).append(f.json_name)
        if oneofs:
            schema["x-oneof"] = oneofs
        schemas[name] = schema
        for j, n in enumerate(m.nested_type):
            if not n.options.map_entry:
                add_message(n, name, (*path, 3, j), comments)
        for j, e in enumerate(m.enum_type):
            add_enum(e, name, (*path, 4, j), comments)

    def add_enum(e, prefix: str, path: tuple[int, ...], comments) -> None:
        schema = {"type": "string", "enum": [v.name for v in e.value]}
        doc = comments.get(path)
        if doc:
            schema["description"] = doc
        schemas[f"{prefix}.{e.name}"] = schema

    for fd in ours:
        if fd.service and all(f"{fd.package}.{v.name}" in INTERNAL_SERVICES for v in fd.service):
            continue  # an internal service's file: neither its paths nor its messages
        comments = _comments(fd)
        for i, m in enumerate(fd.message_type):
            add_message(m, fd.package, (4, i), comments)
        for i, e in enumerate(fd.enum_type):
            add_enum(e, fd.package, (5, i), comments)
        for si, svc in enumerate(fd.service):
            full = f"{fd.package}.{svc.name}"
            for mi, m in enumerate(svc.method):
                op: dict = {
                    "operationId": f"{svc.name}_{m.name}",
                    "tags": [svc.name],
                    "summary": comments.get((6, si, 2, mi), f"{svc.name}.{m.name}"),
                    "parameters": [{"$ref": "#/components/parameters/Tenant"}],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"application/json": {"schema": ref(m.output_type)}},
                        },
                        "default": {"$ref": "#/components/responses/Error"},
                    },
                }
                body_schema = ref(m.input_type)
                if m.client_streaming or m.server_streaming:
                    op["description"] = (
                        "Streaming: Connect stream envelopes (content-type "
                        "application/connect+json) in the request body, one per "
                        f"{m.input_type.rsplit('.', 1)[-1]}, and in the response, one per "
                        f"{m.output_type.rsplit('.', 1)[-1]}, then the end-of-stream envelope."
                    )
                    op["requestBody"] = {
                        "required": True,
                        "content": {
                            "application/connect+json": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    }
                    op["responses"]["200"]["content"] = {
                        "application/connect+json": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    }
                else:
                    op["requestBody"] = {
                        "required": True,
                        "content": {"application/json": {"schema": body_schema}},
                    }
                paths[f"/{full}/{m.name}"] = {"post": op}

    schemas["connect.Error"] = {
        "type": "object",
        "description": "A failed call: the gRPC code (lower snake case), message and the "
        "google.rpc details of the gRPC status (ErrorInfo, BadRequest, ...), each packed.",
        "required": ["code"],
        "properties": {
            "code": {"type": "string", "enum": sorted(HTTP_STATUS)},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string", "example": "google.rpc.ErrorInfo"},
                        "value": {"type": "string", "format": "byte"},
                        "debug": {"type": "object", "additionalProperties": True},
                    },
                },
            },
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "memlake",
            "version": "v1",
            "description": "HTTP/JSON for every memlake gRPC method (Connect protocol, unary "
            "JSON). Generated from proto/ by shared/gateway/openapi.py; do not edit.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "security": [{"bearer": []}, {}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "parameters": {
                "Tenant": {
                    "name": "x-memlake-tenant",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Tenant, where the server takes it from a header.",
                }
            },
            "responses": {
                "Error": {
                    "description": "HTTP status from the gRPC code (400 invalid_argument and "
                    "failed_precondition, 401, 403, 404, 409, 429, 500, 503, 504).",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": "#/components/schemas/connect.Error"}
                        }
                    },
                }
            },
        },
    }


def render() -> str:
    return json.dumps(build(descriptor_set()), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
