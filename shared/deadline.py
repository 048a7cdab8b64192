"""The current call's deadline, so work below the servicer (database statements, lock
waits, queues) stops when the caller has given up. Set by the server interceptor."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from shared.errors import DeadlineExceeded

_deadline: ContextVar[float | None] = ContextVar("memlake_deadline", default=None)


@contextmanager
def call_deadline(remaining_s: float | None) -> Iterator[None]:
    """Within this block, remaining() counts down from remaining_s (None: no deadline)."""
    token = _deadline.set(None if remaining_s is None else time.monotonic() + remaining_s)
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining() -> float | None:
    """Seconds left for the current call, or None when it has no deadline."""
    d = _deadline.get()
    return None if d is None else d - time.monotonic()


def check(what: str = "the call") -> float | None:
    """Raises DeadlineExceeded when the deadline has passed; returns the seconds left."""
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded(f"deadline passed before {what}")
    return left
