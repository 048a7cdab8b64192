"""Per-tenant limits: a request rate (token bucket) and a number of calls in flight.
Both answer RESOURCE_EXHAUSTED with a google.rpc.RetryInfo saying when to try again.

The rate bucket lives in Redis when one is configured, so every replica of every service
draws on one bucket per tenant; without Redis (or while it is down) each process keeps
its own bucket. Calls in flight are counted per process. Call `TenantLimiter.admit(tenant)`
with the authenticated tenant; the server interceptor does this for every memlake RPC."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf import duration_pb2
from google.rpc import error_details_pb2

from shared.errors import ResourceExhausted

log = logging.getLogger("memlake.limits")

# KEYS[1] bucket; ARGV rate/s, burst. Returns {allowed, ms until one token is there}.
_BUCKET = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
local allowed, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return {allowed, wait}
"""


def retry_error(message: str, retry_after_s: float, reason: str) -> ResourceExhausted:
    """RESOURCE_EXHAUSTED carrying a RetryInfo (google.rpc) with the delay."""
    secs = max(retry_after_s, 0.001)
    delay = duration_pb2.Duration(seconds=int(secs), nanos=int((secs % 1) * 1e9))
    return ResourceExhausted(
        f"{message}; retry after {secs:.3f} s",
        reason=reason,
        details=[error_details_pb2.RetryInfo(retry_delay=delay)],
    )


@dataclass
class _Bucket:
    tokens: float
    ts: float


class TenantLimiter:
    def __init__(
        self,
        rate_per_s: float = 0.0,
        burst: int = 0,
        max_concurrent: int = 0,
        *,
        redis_url: str = "",
        namespace: str = "",
    ) -> None:
        self.rate = rate_per_s
        self.burst = burst or max(1, math.ceil(rate_per_s))
        self.max_concurrent = max_concurrent
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}
        self._in_flight: dict[str, int] = {}
        self._prefix = f"memlake:{namespace}:rl:" if namespace else "memlake:rl:"
        self._redis = self._script = None
        if redis_url and rate_per_s > 0:
            import redis

            self._redis = redis.Redis.from_url(
                redis_url, socket_timeout=0.2, socket_connect_timeout=0.2
            )
            self._script = self._redis.register_script(_BUCKET)
        self._redis_down_until = 0.0

    @property
    def enabled(self) -> bool:
        return self.rate > 0 or self.max_concurrent > 0

    def admit(self, tenant: str) -> Callable[[], None]:
        """Takes one token and one in-flight slot for tenant, or raises RESOURCE_EXHAUSTED.
        Returns the function that gives the slot back (call it when the RPC ends)."""
        if self.rate > 0:
            wait = self._take(tenant)
            if wait > 0:
                raise retry_error(
                    f"tenant rate limit of {self.rate:g} requests/s reached",
                    wait,
                    "RATE_LIMITED",
                )
        if self.max_concurrent <= 0:
            return _noop
        with self._lock:
            n = self._in_flight.get(tenant, 0)
            if n >= self.max_concurrent:
                raise retry_error(
                    f"tenant has {n} calls in flight (at most {self.max_concurrent})",
                    0.05,
                    "TOO_MANY_CONCURRENT_CALLS",
                )
            self._in_flight[tenant] = n + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            with self._lock:
                left = self._in_flight.get(tenant, 1) - 1
                if left:
                    self._in_flight[tenant] = left
                else:
                    self._in_flight.pop(tenant, None)

        return release

    def _take(self, tenant: str) -> float:
        """0 when a token was taken, else seconds until one is there."""
        if self._script is not None and time.monotonic() >= self._redis_down_until:
            try:
                allowed, wait_ms = self._script(
                    keys=[self._prefix + tenant], args=[self.rate, self.burst]
                )
                return 0.0 if int(allowed) else int(wait_ms) / 1000
            except Exception as exc:  # noqa: BLE001 - Redis is never required
                log.warning("rate limit store unavailable, limiting in-process: %s", exc)
                self._redis_down_until = time.monotonic() + 5.0
        now = time.monotonic()
        with self._lock:
            b = self._buckets.get(tenant)
            if b is None:
                b = self._buckets[tenant] = _Bucket(float(self.burst), now)
            b.tokens = min(self.burst, b.tokens + (now - b.ts) * self.rate)
            b.ts = now
            if b.tokens >= 1:
                b.tokens -= 1
                return 0.0
            return (1 - b.tokens) / self.rate

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


def _noop() -> None:
    return None
