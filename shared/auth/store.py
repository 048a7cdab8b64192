"""Tenants and API keys in the database, and the check of a presented key (scrypt once
per key and process, then a cached digest; the row is re-read every cache_ttl_s seconds, so
a revoked key stops working within that bound on every replica)."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from shared.auth import keys
from shared.auth.grants import ADMIN, MEMBER, OPERATOR, Grant, Identity
from shared.db.engine import Database
from shared.db.models import ApiKeyRecord, TenantRecord
from shared.db.types import utcnow
from shared.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from shared.tenancy import check_tenant_name

log = logging.getLogger("memlake.auth")

BOOTSTRAP_KEY_ID = "bootstrap"


# How long a verified key keeps working from the cache while the database is unreachable.
STALE_S = 300.0
_STALE = object()


@dataclass
class _Cached:
    digest: bytes
    secret_hash: bytes
    identity: Identity
    revoked: bool
    fetched: float


def identity_of(rec: ApiKeyRecord, key: str = "") -> Identity:
    return Identity(
        tenant=rec.tenant,
        role=rec.role,
        grants=tuple(Grant.from_json(g) for g in rec.grants or ()),
        key_id=rec.key_id,
        method="api_key",
        expire_time=rec.expire_time,
        forward=(("authorization", f"Bearer {key}"),) if key else (),
    )


class KeyStore:
    def __init__(
        self,
        db: Database,
        *,
        hash_n: int = 16384,
        cache_ttl_s: float = 5.0,
        max_minted_ttl_s: float = 86400.0,
    ) -> None:
        self.db = db
        self.hash_n = hash_n
        self.cache_ttl_s = cache_ttl_s
        self.max_minted_ttl_s = max_minted_ttl_s
        self._cache: dict[str, _Cached] = {}
        self._tenants: dict[str, tuple[bool, float]] = {}
        self._lock = threading.Lock()

    # -- checking a key ---------------------------------------------------------------------

    def authenticate(self, key: str) -> Identity:
        parsed = keys.parse(key)
        if parsed is None:
            raise Unauthenticated("the bearer token is not a memlake API key", reason="KEY_INVALID")
        key_id, secret = parsed
        digest = keys.fast_digest(key)
        now = time.monotonic()
        entry = self._cache.get(key_id)
        fresh = entry is not None and now - entry.fetched < self.cache_ttl_s
        rec = None
        matches = entry is not None and hmac.compare_digest(entry.digest, digest)
        if not fresh and matches and self.db.unreachable and now - entry.fetched < STALE_S:
            rec = _STALE  # known outage: do not wait for the database at all
        elif not (fresh and matches):
            try:
                with self.db.read() as s:
                    rec = s.get(ApiKeyRecord, key_id)
            except (OperationalError, PoolTimeout, DBAPIError):
                # The database is away: a key verified before keeps working for up to
                # STALE_S more (no revocation can commit meanwhile either), so searches
                # that need only the index keep answering through an outage.
                if not (matches and now - entry.fetched < STALE_S):
                    raise
                rec = _STALE
        if rec is _STALE:
            pass
        elif not (fresh and hmac.compare_digest(entry.digest, digest)):
            if rec is None:
                raise Unauthenticated("unknown API key", reason="KEY_INVALID")
            known = (
                entry is not None
                and hmac.compare_digest(entry.digest, digest)
                and entry.secret_hash == rec.secret_hash
            )
            if not known and not keys.verify(secret, rec.salt, rec.secret_hash, rec.hash_params):
                raise Unauthenticated("unknown API key", reason="KEY_INVALID")
            entry = _Cached(
                digest, rec.secret_hash, identity_of(rec, key), rec.revoke_time is not None, now
            )
            with self._lock:
                self._cache[key_id] = entry
        if entry.revoked:
            raise Unauthenticated(f"API key {key_id} was revoked", reason="KEY_REVOKED")
        exp = entry.identity.expire_time
        if exp is not None and exp <= datetime.now(UTC):
            raise Unauthenticated(f"API key {key_id} has expired", reason="KEY_EXPIRED")
        return entry.identity

    def audits_reads(self, tenant: str) -> bool:
        now = time.monotonic()
        hit = self._tenants.get(tenant)
        if self.db.unreachable:  # known outage: the read audit could not be written anyway
            return hit[0] if hit is not None else False
        if hit is None or now - hit[1] >= self.cache_ttl_s:
            try:
                with self.db.read() as s:
                    rec = s.get(TenantRecord, tenant)
            except (OperationalError, PoolTimeout, DBAPIError):
                if hit is None:
                    raise
                return hit[0]  # the last known setting while the database is away
            hit = (bool(rec and rec.audit_reads), now)
            self._tenants[tenant] = hit
        return hit[0]

    # -- tenants ----------------------------------------------------------------------------

    def create_tenant(self, name: str, audit_reads: bool = False) -> TenantRecord:
        check_tenant_name(name, "name")
        try:
            with self.db.write() as s:
                if s.get(TenantRecord, name) is not None:
                    raise AlreadyExists(f"tenant {name!r} exists", field="name")
                rec = TenantRecord(name=name, audit_reads=audit_reads, create_time=utcnow())
                s.add(rec)
        except IntegrityError as exc:
            raise AlreadyExists(f"tenant {name!r} exists", field="name") from exc
        return rec

    def get_tenant(self, name: str) -> TenantRecord:
        with self.db.read() as s:
            rec = s.get(TenantRecord, name)
        if rec is None:
            raise NotFound(f"no tenant {name!r}", field="name")
        return rec

    def list_tenants(self, after: str, limit: int) -> list[TenantRecord]:
        with self.db.read() as s:
            q = select(TenantRecord).where(TenantRecord.name > after).order_by(TenantRecord.name)
            return list(s.scalars(q.limit(limit)))

    def update_tenant(self, name: str, audit_reads: bool) -> TenantRecord:
        with self.db.write() as s:
            rec = s.get(TenantRecord, name)
            if rec is None:
                raise NotFound(f"no tenant {name!r}", field="name")
            rec.audit_reads = audit_reads
        self._tenants.pop(name, None)
        return rec

    # -- keys -------------------------------------------------------------------------------

    def create_key(
        self,
        caller: Identity,
        *,
        tenant: str,
        name: str,
        role: int,
        grants: list[Grant],
        expire_time: datetime | None,
    ) -> tuple[ApiKeyRecord, str]:
        tenant = tenant or caller.tenant
        role = role or MEMBER
        if role not in (MEMBER, ADMIN, OPERATOR):
            raise InvalidArgument("role", f"unknown role {role}")
        if len(name) > 256:
            raise InvalidArgument("name", "longer than 256 characters")
        if tenant != caller.tenant:
            caller.require_operator()
        if role == OPERATOR:
            caller.require_operator()
        elif role == ADMIN:
            caller.require_admin(tenant)
        if role == MEMBER and not grants:
            raise InvalidArgument("grants", "a MEMBER key needs at least one grant")
        now = datetime.now(UTC)
        if expire_time is not None and expire_time <= now:
            raise InvalidArgument("expire_time", "must be in the future")
        if not caller.full_access:
            # A narrower child of a MEMBER key: covered by its grants, and short-lived.
            for i, g in enumerate(grants):
                if not any(p.covers(g) for p in caller.grants):
                    raise PermissionDenied(
                        f"grants[{i}] allows more than {caller.who} may do",
                        reason="GRANT_NOT_COVERED",
                        field=f"grants[{i}]",
                    )
            if expire_time is None:
                raise InvalidArgument("expire_time", "a key minted by a MEMBER key must expire")
            limit = now + timedelta(seconds=self.max_minted_ttl_s)
            if caller.expire_time is not None:
                limit = min(limit, caller.expire_time)
            if expire_time > limit:
                raise InvalidArgument("expire_time", f"must not be later than {limit.isoformat()}")
        with self.db.read() as s:
            if s.get(TenantRecord, tenant) is None:
                raise NotFound(f"no tenant {tenant!r}", field="tenant")
        key_id, key = keys.new_key()
        rec = self._insert(
            key_id, key, tenant, name, role, grants, expire_time, caller.key_id or None
        )
        return rec, key

    def _insert(self, key_id, key, tenant, name, role, grants, expire_time, parent):
        salt = keys.new_salt()
        digest, params = keys.hash_secret(keys.parse(key)[1], salt, self.hash_n)
        rec = ApiKeyRecord(
            key_id=key_id,
            tenant=tenant,
            name=name,
            role=role,
            grants=[g.to_json() for g in grants],
            salt=salt,
            secret_hash=digest,
            hash_params=params,
            parent_key_id=parent,
            create_time=utcnow(),
            expire_time=expire_time,
        )
        with self.db.write() as s:
            s.add(rec)
        return rec

    def list_keys(
        self, caller: Identity, tenant: str, include_revoked: bool, after: str, limit: int
    ) -> list[ApiKeyRecord]:
        tenant = tenant or caller.tenant
        caller.require_admin(tenant)
        q = select(ApiKeyRecord).where(ApiKeyRecord.tenant == tenant, ApiKeyRecord.key_id > after)
        if not include_revoked:
            q = q.where(ApiKeyRecord.revoke_time.is_(None))
        with self.db.read() as s:
            return list(s.scalars(q.order_by(ApiKeyRecord.key_id).limit(limit)))

    def revoke(self, caller: Identity, key_id: str) -> tuple[ApiKeyRecord, int]:
        with self.db.write() as s:
            rec = s.get(ApiKeyRecord, key_id)
            if rec is None or (rec.tenant != caller.tenant and caller.role != OPERATOR):
                raise NotFound(f"no API key {key_id!r}", field="key_id")
            if not (caller.key_id == key_id or self._is_ancestor(s, caller.key_id, rec)):
                caller.require_admin(rec.tenant)
            now = utcnow()
            ids, frontier = [], [key_id]
            while frontier:
                ids += frontier
                frontier = list(
                    s.scalars(
                        select(ApiKeyRecord.key_id).where(ApiKeyRecord.parent_key_id.in_(frontier))
                    )
                )
            s.execute(
                update(ApiKeyRecord)
                .where(ApiKeyRecord.key_id.in_(ids), ApiKeyRecord.revoke_time.is_(None))
                .values(revoke_time=now)
            )
            s.refresh(rec)
        with self._lock:
            for k in ids:
                self._cache.pop(k, None)
        return rec, len(ids) - 1

    @staticmethod
    def _is_ancestor(s, ancestor: str, rec: ApiKeyRecord) -> bool:
        parent, hops = rec.parent_key_id, 0
        while parent and hops < 64:
            if parent == ancestor:
                return True
            parent = s.scalar(
                select(ApiKeyRecord.parent_key_id).where(ApiKeyRecord.key_id == parent)
            )
            hops += 1
        return False

    # -- first start ------------------------------------------------------------------------

    def bootstrap(self, tenant: str, preset_key: str = "") -> str | None:
        """Creates the tenant and the OPERATOR bootstrap key once per database; returns the
        key when this call created it (the caller shows it once), else None."""
        with self.db.write() as s:
            if s.get(TenantRecord, tenant) is None:
                s.add(TenantRecord(name=tenant, audit_reads=False, create_time=utcnow()))
        with self.db.read() as s:
            if s.get(ApiKeyRecord, BOOTSTRAP_KEY_ID) is not None:
                return None
        if preset_key:
            parsed = keys.parse(preset_key)
            if parsed is None or parsed[0] != BOOTSTRAP_KEY_ID:
                raise ValueError("MEMLAKE_BOOTSTRAP_KEY must look like mlk_bootstrap_<43 chars>")
            key = preset_key
        else:
            _, key = keys.new_key(BOOTSTRAP_KEY_ID)
        try:
            self._insert(BOOTSTRAP_KEY_ID, key, tenant, "bootstrap", OPERATOR, [], None, None)
        except IntegrityError:
            return None  # another process won the race and holds the key it created
        return key
