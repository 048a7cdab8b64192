"""Hot caches: Redis when configured, an in-process cache otherwise. Never the only copy:
every method may fail or miss, and callers fall back to the database."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict, defaultdict
from collections.abc import Callable

log = logging.getLogger("memlake.cache")
CHANGES_CHANNEL = "memlake:changes"


class Cache(ABC):
    """Session tails (lists of serialized turns, oldest first) and change wake-ups."""

    @abstractmethod
    def push_turn(self, key: str, item: bytes, max_len: int, ttl_s: int) -> bool:
        """Appends to a cached tail; False (and nothing stored) when the tail is not cached."""

    @abstractmethod
    def get_tail(self, key: str) -> list[bytes] | None:
        """None on a miss (unknown key); [] is never stored."""

    @abstractmethod
    def set_tail(self, key: str, items: list[bytes], max_len: int, ttl_s: int) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def delete_tails(self, match: Callable[[str], bool]) -> int:
        """Deletes every tail whose key match() accepts; returns how many (erasure)."""

    @abstractmethod
    def publish_change(self, seq: int) -> None: ...

    @abstractmethod
    def subscribe_changes(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Calls callback(seq) on every published change; returns an unsubscribe function."""

    @abstractmethod
    def ping(self) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class InProcessCache(Cache):
    def __init__(self, max_keys: int = 10000) -> None:
        self._lock = threading.Lock()
        self._tails: OrderedDict[str, tuple[float, list[bytes]]] = OrderedDict()
        self._max_keys = max_keys
        self._subs: dict[int, Callable[[int], None]] = {}
        self._next = 0

    def _expire(self, key: str) -> list[bytes] | None:
        entry = self._tails.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._tails[key]
            return None
        self._tails.move_to_end(key)
        return entry[1]

    def push_turn(self, key, item, max_len, ttl_s):
        with self._lock:
            items = self._expire(key)
            if items is None:
                return False  # only extend tails that are cached; a miss reloads from the DB
            items.append(item)
            del items[:-max_len]
            self._tails[key] = (time.monotonic() + ttl_s, items)
            return True

    def get_tail(self, key):
        with self._lock:
            items = self._expire(key)
            return list(items) if items is not None else None

    def set_tail(self, key, items, max_len, ttl_s):
        with self._lock:
            self._tails[key] = (time.monotonic() + ttl_s, list(items[-max_len:]))
            while len(self._tails) > self._max_keys:
                self._tails.popitem(last=False)

    def delete(self, key):
        with self._lock:
            self._tails.pop(key, None)

    def delete_tails(self, match):
        with self._lock:
            gone = [k for k in self._tails if match(k)]
            for k in gone:
                del self._tails[k]
            return len(gone)

    def publish_change(self, seq):
        with self._lock:
            subs = list(self._subs.values())
        for cb in subs:
            cb(seq)

    def subscribe_changes(self, callback):
        with self._lock:
            self._next += 1
            token = self._next
            self._subs[token] = callback

        def _unsub():
            with self._lock:
                self._subs.pop(token, None)

        return _unsub

    def ping(self):
        return None


# Appends to a tail only if the key exists (a missing tail is reloaded from the DB).
_PUSH_IF_EXISTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[2]), -1)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  return 1
end
return 0
"""


class RedisCache(Cache):
    def __init__(self, url: str, prefix: str = "memlake:") -> None:
        import redis

        self._redis = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=30
        )
        self._prefix = prefix
        self._push = self._redis.register_script(_PUSH_IF_EXISTS)
        self._threads: list[tuple[threading.Event, object]] = []

    def _k(self, key: str) -> str:
        return f"{self._prefix}tail:{key}"

    def push_turn(self, key, item, max_len, ttl_s):
        return bool(self._push(keys=[self._k(key)], args=[item, max_len, ttl_s]))

    def get_tail(self, key):
        k = self._k(key)
        pipe = self._redis.pipeline()
        pipe.exists(k)
        pipe.lrange(k, 0, -1)
        exists, items = pipe.execute()
        return list(items) if exists else None

    def set_tail(self, key, items, max_len, ttl_s):
        k = self._k(key)
        pipe = self._redis.pipeline()
        pipe.delete(k)
        if items:
            pipe.rpush(k, *items[-max_len:])
            pipe.expire(k, ttl_s)
        pipe.execute()

    def delete(self, key):
        self._redis.delete(self._k(key))

    def delete_tails(self, match):
        start = len(self._k(""))
        gone = [
            k
            for k in self._redis.scan_iter(match=self._k("*"), count=1000)
            if match(k.decode("utf-8", "replace")[start:])
        ]
        for i in range(0, len(gone), 500):
            self._redis.delete(*gone[i : i + 500])
        return len(gone)

    def publish_change(self, seq):
        self._redis.publish(self._prefix + CHANGES_CHANNEL, str(seq))

    def subscribe_changes(self, callback):
        stop = threading.Event()
        channel = self._prefix + CHANGES_CHANNEL

        def _run():
            while not stop.is_set():
                try:
                    pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                    pubsub.subscribe(channel)
                    while not stop.is_set():
                        msg = pubsub.get_message(timeout=0.5)
                        if msg and msg.get("type") == "message":
                            callback(int(msg["data"]))
                    pubsub.close()
                except Exception as exc:  # noqa: BLE001 - polling covers the gap
                    log.warning("redis pub/sub interrupted: %s", exc)
                    stop.wait(1.0)

        t = threading.Thread(target=_run, name="redis-sub", daemon=True)
        t.start()
        self._threads.append((stop, t))
        return stop.set

    def ping(self):
        self._redis.ping()

    def close(self):
        for stop, _ in self._threads:
            stop.set()
        self._redis.close()


def make_cache(redis_url: str, namespace: str = "") -> Cache:
    """namespace keeps installs that share one Redis apart: keys and pub/sub channels
    (channels are global across Redis databases) are prefixed with it."""
    if not redis_url:
        return InProcessCache()
    return RedisCache(redis_url, prefix=f"memlake:{namespace}:" if namespace else "memlake:")


def safe(fn: Callable, *args, default=None):
    """Runs a cache call; a cache failure is logged and treated as a miss."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the cache is never required
        log.warning("cache unavailable: %s", exc)
        return default


class LocalNotifier:
    """Process-local wake-ups, so an all-in-one process does not wait for a poll."""

    def __init__(self) -> None:
        self._subs: dict[int, Callable[[int], None]] = defaultdict()
        self._lock = threading.Lock()

    def publish(self, seq: int) -> None:
        with self._lock:
            subs = list(self._subs.values())
        for cb in subs:
            cb(seq)

    def subscribe(self, cb: Callable[[int], None]) -> None:
        with self._lock:
            self._subs[id(cb)] = cb
