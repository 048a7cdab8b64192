"""API key strings: `mlk_<key_id>_<secret>`. The key id is public (logged, listed); the
secret is 32 random bytes, kept only as a salted scrypt hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "mlk_"
_KEY_RE = re.compile(r"^mlk_([0-9a-f]{16}|bootstrap)_([A-Za-z0-9_-]{43})$")


def new_key(key_id: str | None = None) -> tuple[str, str]:
    """(key_id, whole key)."""
    key_id = key_id or secrets.token_hex(8)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def parse(key: str) -> tuple[str, str] | None:
    """(key_id, secret), or None when the string is not shaped like a key."""
    m = _KEY_RE.match(key)
    return (m.group(1), m.group(2)) if m else None


def hash_secret(secret: str, salt: bytes, n: int) -> tuple[bytes, str]:
    """Slow on purpose: a leaked table costs an attacker scrypt per guess."""
    digest = hashlib.scrypt(
        secret.encode(), salt=salt, n=n, r=8, p=1, maxmem=256 * n * 8 + (1 << 20), dklen=32
    )
    return digest, f"scrypt:n={n},r=8,p=1"


def verify(secret: str, salt: bytes, digest: bytes, params: str) -> bool:
    fields = dict(kv.split("=") for kv in params.removeprefix("scrypt:").split(","))
    got, _ = hash_secret(secret, salt, int(fields["n"]))
    return hmac.compare_digest(got, digest)


def fast_digest(key: str) -> bytes:
    """For the in-memory cache of keys already verified with scrypt (never stored)."""
    return hashlib.sha256(key.encode()).digest()


def new_salt() -> bytes:
    return secrets.token_bytes(16)
