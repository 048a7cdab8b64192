"""Every memlake.v1 service and method, found from the generated descriptors (no list kept
by hand: a new RPC or service in proto/ appears here after `make proto`)."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf import descriptor, message_factory

import memlake.v1


@dataclass(frozen=True)
class Method:
    service: str  # "memlake.v1.IngestService"
    name: str  # "Remember"
    desc: descriptor.MethodDescriptor
    request_cls: type
    response_cls: type

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def unary(self) -> bool:
        return not (self.desc.client_streaming or self.desc.server_streaming)


# Between the service's own replicas only; never offered over HTTP.
INTERNAL_SERVICES = frozenset({"memlake.v1.ShardService"})


def file_descriptors() -> list[descriptor.FileDescriptor]:
    out = []
    for info in pkgutil.iter_modules(memlake.v1.__path__):
        if info.name.endswith("_pb2"):
            mod = importlib.import_module(f"memlake.v1.{info.name}")
            out.append(mod.DESCRIPTOR)
    return sorted(out, key=lambda f: f.name)


@lru_cache(maxsize=1)
def methods() -> dict[str, Method]:
    """Path ("/memlake.v1.IngestService/Remember") -> Method."""
    out: dict[str, Method] = {}
    for fd in file_descriptors():
        for svc in fd.services_by_name.values():
            if svc.full_name in INTERNAL_SERVICES:
                continue
            for m in svc.methods:
                meth = Method(
                    svc.full_name,
                    m.name,
                    m,
                    message_factory.GetMessageClass(m.input_type),
                    message_factory.GetMessageClass(m.output_type),
                )
                out[meth.path] = meth
    return out
