"""Who is calling. Until authentication lands the tenant comes from request metadata."""

from __future__ import annotations

import re

from shared.errors import InvalidArgument

TENANT_HEADER = "x-memlake-tenant"
_TENANT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def tenant_from_metadata(metadata, default: str) -> str:
    for key, value in metadata or ():
        if key == TENANT_HEADER:
            if not _TENANT_RE.match(value):
                raise InvalidArgument(
                    TENANT_HEADER, "tenant must be 1-128 of letters, digits, '_', '.', '-'"
                )
            return value
    return default


def check_scope_tenant(scope_tenant: str, tenant: str, field: str = "scope.tenant") -> None:
    if scope_tenant and scope_tenant != tenant:
        raise InvalidArgument(
            field, f"is output only; send the tenant in the {TENANT_HEADER} metadata"
        )


def check_tenant_name(name: str, field: str = "tenant") -> None:
    if not _TENANT_RE.match(name):
        raise InvalidArgument(field, "tenant must be 1-128 of letters, digits, '_', '.', '-'")
