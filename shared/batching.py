"""Micro-batching for writes: concurrent callers' texts are embedded together, and a
caller whose turn would come after its deadline is refused at once with
RESOURCE_EXHAUSTED and a retry hint, instead of queueing without bound.

One worker thread takes everything waiting (up to max_batch texts) and embeds it in one
model call; a batch of 32 short texts costs little more than a few single ones, so under
load each write waits for at most one batch in progress plus its own."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from shared import deadline
from shared.embedding import Embedder
from shared.errors import DeadlineExceeded
from shared.limits import retry_error


@dataclass
class _Job:
    texts: list[str]
    until: float | None = None  # the caller's deadline (monotonic); past it, not embedded
    done: threading.Event = field(default_factory=threading.Event)
    out: np.ndarray | None = None
    error: BaseException | None = None


class MicroBatcher(Embedder):
    def __init__(self, inner: Embedder, max_batch: int = 64, max_queue: int = 4096) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._q: deque[_Job] = deque()
        self._queued = 0  # texts waiting
        self._cv = threading.Condition()
        self._rate = 1000.0  # texts/s, an EWMA of what batches achieved (optimistic start)
        self._busy_until = 0.0  # when the batch in progress should end
        self._thread = threading.Thread(target=self._run, name="embed-batcher", daemon=True)
        self._thread.start()
        self.batches = 0
        self.texts = 0

    def expected_wait(self, n: int) -> float:
        """Seconds until n more texts would be embedded, by the recent rate."""
        with self._cv:
            ahead = self._queued
            busy = max(self._busy_until - time.monotonic(), 0.0)
        return busy + (ahead + n) / self._rate

    def _embed(self, texts: list[str]) -> np.ndarray:
        left = deadline.remaining()
        if left is not None:
            wait = self.expected_wait(len(texts))
            if wait > left:
                raise retry_error(
                    f"the embedding queue needs about {wait:.2f} s, more than this call's "
                    f"{max(left, 0):.2f} s",
                    wait,
                    "OVERLOADED",
                )
        job = _Job(list(texts), None if left is None else time.monotonic() + left)
        with self._cv:
            if self._queued + len(texts) > self.max_queue and self._q:
                raise retry_error(
                    "the embedding queue is full", self.expected_wait(0), "OVERLOADED"
                )
            self._q.append(job)
            self._queued += len(texts)
            self._cv.notify()
        if not job.done.wait(None if left is None else max(left, 0.0) + 0.05):
            raise DeadlineExceeded("the deadline passed while queued for embedding")
        if job.error is not None:
            raise job.error
        assert job.out is not None
        return job.out

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._q:
                    self._cv.wait()
                jobs, n = [], 0
                while self._q and (not jobs or n + len(self._q[0].texts) <= self.max_batch):
                    j = self._q.popleft()
                    jobs.append(j)
                    n += len(j.texts)
                self._queued -= n
                now = time.monotonic()
                late = [j for j in jobs if j.until is not None and j.until <= now]
                jobs = [j for j in jobs if j not in late]
                n = sum(len(j.texts) for j in jobs)
                self._busy_until = now + n / self._rate
            for j in late:  # their callers have gone: no work done for them
                j.error = DeadlineExceeded("the deadline passed while queued for embedding")
                j.done.set()
            if not jobs:
                continue
            t0 = time.monotonic()
            try:
                vecs = self.inner.embed([t for j in jobs for t in j.texts])
                i = 0
                for j in jobs:
                    j.out = vecs[i : i + len(j.texts)]
                    i += len(j.texts)
            except BaseException as exc:  # noqa: BLE001 - handed to every caller
                for j in jobs:
                    j.error = exc
            took = max(time.monotonic() - t0, 1e-4)
            with self._cv:
                self._rate = 0.5 * self._rate + 0.5 * (n / took)
                self._busy_until = 0.0
                self.batches += 1
                self.texts += n
            for j in jobs:
                j.done.set()
