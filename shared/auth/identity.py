"""Turning a call's credentials into an Identity, and carrying it to the handler.

Order: `authorization: Bearer <key>`; `authorization: Internal <token>` with
`x-memlake-on-behalf-of` (the services' own hop, e.g. ingest -> versioning for a certificate
caller); the client certificate's common name (mutual TLS); the mesh's
`x-forwarded-client-cert` header when trusted. Nothing else is accepted."""

from __future__ import annotations

import hmac
import json
import re
from contextvars import ContextVar

from shared.auth.grants import ADMIN, Grant, Identity
from shared.auth.store import KeyStore
from shared.errors import PermissionDenied, Unauthenticated
from shared.tenancy import TENANT_HEADER, check_tenant_name, tenant_from_metadata

ON_BEHALF_HEADER = "x-memlake-on-behalf-of"
XFCC_HEADER = "x-forwarded-client-cert"
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_current: ContextVar[Identity | None] = ContextVar("memlake_identity", default=None)


def caller() -> Identity:
    """The authenticated caller of the RPC being handled."""
    ident = _current.get()
    if ident is None:
        raise Unauthenticated("no credentials on this call")
    return ident


def set_caller(ident: Identity | None):
    return _current.set(ident)


def reset_caller(token) -> None:
    _current.reset(token)


def is_public(method: str) -> bool:
    return method.startswith(PUBLIC_PREFIXES)


def _to_json(ident: Identity) -> str:
    return json.dumps(
        {
            "tenant": ident.tenant,
            "role": ident.role,
            "grants": [g.to_json() for g in ident.grants],
            "key_id": ident.key_id,
            "method": ident.method,
        },
        separators=(",", ":"),
    )


def _from_json(raw: str) -> Identity:
    d = json.loads(raw)
    return Identity(
        tenant=d["tenant"],
        role=int(d["role"]),
        grants=tuple(Grant.from_json(g) for g in d.get("grants", ())),
        key_id=d.get("key_id", ""),
        method=d.get("method", "internal"),
    )


_XFCC_SUBJECT = re.compile(r'Subject="([^"]*)"|Subject=([^;,]*)')
_CN = re.compile(r"(?:^|,)\s*CN=([^,]+)")


def xfcc_common_name(header: str) -> str:
    """The CN of the Subject of the last element (the hop nearest to us) of an Envoy
    x-forwarded-client-cert header, or ""."""
    subjects = [a or b for a, b in _XFCC_SUBJECT.findall(header)]
    m = _CN.search(subjects[-1]) if subjects else None
    return m.group(1).strip() if m else ""


class Authenticator:
    def __init__(
        self,
        store: KeyStore | None,
        *,
        enabled: bool = True,
        default_tenant: str = "default",
        internal_token: str = "",
        trust_mesh: bool = False,
    ) -> None:
        self.store = store
        self.enabled = enabled
        self.default_tenant = default_tenant
        self.internal_token = internal_token
        self.trust_mesh = trust_mesh

    def authenticate(self, md: dict[str, str], context) -> Identity:
        if not self.enabled:
            return Identity(
                tenant_from_metadata(md.items(), self.default_tenant), ADMIN, method="none"
            )
        ident = self._identify(md, context)
        named = md.get(TENANT_HEADER)
        if named and named != ident.tenant:
            raise PermissionDenied(
                f"{ident.who} belongs to another tenant than {named!r} named in "
                f"{TENANT_HEADER}; a key is never mapped to another tenant",
                reason="TENANT_MISMATCH",
            )
        return ident

    def _identify(self, md: dict[str, str], context) -> Identity:
        auth = md.get("authorization", "")
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() == "bearer" and cred:
            return self.store.authenticate(cred.strip())
        if scheme.lower() == "internal" and cred:
            if not self.internal_token or not hmac.compare_digest(
                cred.strip().encode(), self.internal_token.encode()
            ):
                raise Unauthenticated("bad internal token", reason="KEY_INVALID")
            return _from_json(md.get(ON_BEHALF_HEADER, "{}"))
        if auth:
            raise Unauthenticated(
                "authorization metadata must be 'Bearer <API key>'", reason="KEY_INVALID"
            )
        cn = _cert_common_name(context)
        if cn:
            return self._cert_identity(cn, "client_certificate")
        if self.trust_mesh and md.get(XFCC_HEADER):
            cn = xfcc_common_name(md[XFCC_HEADER])
            if cn:
                return self._cert_identity(cn, "mesh")
        raise Unauthenticated(
            "this call has no credentials: send 'authorization: Bearer <API key>' metadata "
            "(memlake serve printed the bootstrap key and stored it in its data directory)",
            reason="CREDENTIALS_MISSING",
        )

    def _cert_identity(self, cn: str, method: str) -> Identity:
        try:
            check_tenant_name(cn)
        except Exception as exc:  # noqa: BLE001
            raise Unauthenticated(
                f"certificate common name {cn[:64]!r} is not a tenant name", reason="CERT_TENANT"
            ) from exc
        ident = Identity(tenant=cn, role=ADMIN, method=method)
        if self.internal_token:
            fwd = (
                ("authorization", f"Internal {self.internal_token}"),
                (ON_BEHALF_HEADER, _to_json(ident)),
            )
            ident = Identity(tenant=cn, role=ADMIN, method=method, forward=fwd)
        return ident


def _cert_common_name(context) -> str:
    try:
        ac = context.auth_context() or {}
    except Exception:  # noqa: BLE001
        return ""
    names = ac.get("x509_common_name") or []
    return names[0].decode() if names else ""
