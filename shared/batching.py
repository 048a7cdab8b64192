"""The process's embedding queue: every model call of every service in the process goes
through one MicroBatcher, so concurrent callers share batches, searches go first, and
back-pressure is decided by the queue that will actually do the work.

- Concurrent callers' texts are embedded together: a batch of short texts costs little
  more than a few single ones.
- Two lanes. A search's query (asked within `urgent()`) is taken before any queued
  write, and while searches are about, writes use one worker at a time, so the next
  query finds a worker free (or waits for at most one batch of queries in progress).
- A caller whose turn would come after its deadline is refused at once with
  RESOURCE_EXHAUSTED and a retry hint instead of queueing without bound; a job whose
  caller has gone is dropped unembedded.
- A job larger than a batch is cut into batches of texts of like length (sorted by
  length, its vectors returned in the caller's order): less padding per batch.
- At most `workers` batches run at once (one per core by default; the model releases the
  GIL). A caller that finds nothing queued ahead of it and a worker's share free runs its
  own batch in its thread: no hand-over to a worker thread and back, which on a busy
  machine costs two thread wake-ups."""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

from shared import deadline
from shared.embedding import CachedEmbedder, Embedder
from shared.errors import DeadlineExceeded
from shared.limits import retry_error

# Searches seen within this many seconds count as "about".
QUERY_QUIET_S = 2.0
URGENT, NORMAL = 0, 1

_urgent: ContextVar[bool] = ContextVar("memlake_embed_urgent", default=False)


@contextmanager
def urgent() -> Iterator[None]:
    """Embeddings asked within this block (a search's query) go before queued writes."""
    token = _urgent.set(True)
    try:
        yield
    finally:
        _urgent.reset(token)


@dataclass
class _Job:
    texts: list[str]
    until: float | None = None  # the caller's deadline (monotonic); past it, not embedded
    done: threading.Event = field(default_factory=threading.Event)
    out: np.ndarray | None = None
    error: BaseException | None = None
    taken: int = 0  # texts handed to batches so far (a big job is cut into several)
    left: int = 0  # texts not embedded yet


class MicroBatcher(Embedder):
    def __init__(
        self,
        inner: Embedder,
        max_batch: int = 64,
        max_queue: int = 4096,
        workers: int = 1,
        write_nice: int = 0,
        write_model: Embedder | None = None,
    ) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        # With write_nice: the model in a niced child process (shared/embed_child.py) for
        # write batches, so the workers stay at the process's priority (a niced thread
        # holding the GIL stalls every thread of the process). Until it is ready, or if
        # it fails, the workers nice themselves and run the model here.
        self.write_model = write_model
        # > 0: write batches run only on the workers, which lower their own CPU priority by
        # this much, and a search's query runs at once in its caller's thread at the
        # process's priority: the OS gives queries the cores first, even mid-batch.
        self.write_nice = max(0, write_nice)
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._lanes: tuple[deque[_Job], deque[_Job]] = (deque(), deque())
        self._queued = [0, 0]  # texts waiting, by lane
        self._cv = threading.Condition()
        self._rate = 1000.0  # texts/s of one worker, an EWMA of batches (optimistic start)
        self._busy_until: dict[object, float] = {}  # runner -> when its batch should end
        self._last_query = -1e9
        self._writing = 0  # batches of writes running
        self._active = 0  # batches running (by workers, or by callers themselves)
        self.workers = max(1, workers)
        self._niced = threading.local()
        self.batches = 0
        self.texts = 0
        for w in range(self.workers):
            threading.Thread(target=self._run, args=(w,), name=f"embed-{w}", daemon=True).start()

    def expected_wait(self, n: int, lane: int = NORMAL) -> float:
        """Seconds until n more texts in lane would be embedded, by the recent rate: the
        texts ahead of them (urgent ones are ahead of everything) on the workers that lane
        may use, after the soonest batch in progress ends."""
        with self._cv:
            now = time.monotonic()
            ahead = self._queued[URGENT]
            workers = self.workers
            if lane == NORMAL:
                ahead += self._queued[NORMAL]
                if self._searching():
                    workers = 1
            ends = [max(t - now, 0.0) for t in self._busy_until.values()]
            busy = min(ends) if len(ends) == self.workers else 0.0
        return busy + (ahead + n) / (self._rate * workers)

    def _embed(self, texts: list[str]) -> np.ndarray:
        lane = URGENT if _urgent.get() else NORMAL
        if lane == URGENT and self.write_nice:
            with self._cv:
                self._last_query = time.monotonic()
            out = self.inner.embed(texts)
            with self._cv:
                self.batches += 1
                self.texts += len(texts)
            return out
        with self._cv:
            if lane == URGENT:
                self._last_query = time.monotonic()
            inline = (
                len(texts) <= self.max_batch
                and not (lane == NORMAL and self.write_nice)
                and self._free_now(lane)
            )
            if inline:
                self._start(lane, ("caller", threading.get_ident()), len(texts))
        if inline:  # nothing queued and a worker's share free: no hand-over to a thread
            t0 = time.monotonic()
            try:
                return self.inner.embed(texts)
            finally:
                with self._cv:
                    self._finish(lane, ("caller", threading.get_ident()), len(texts), t0)
        left = deadline.remaining()
        if left is not None:
            wait = self.expected_wait(len(texts), lane)
            if wait > left:
                raise retry_error(
                    f"the embedding queue needs about {wait:.2f} s, more than this call's "
                    f"{max(left, 0):.2f} s",
                    wait,
                    "OVERLOADED",
                )
        # A big job is cut into batches in the order of its texts: sorted by length, so
        # each batch pads to texts of like length (arrival-order batches of 32 ran at half
        # the rate of length-sorted ones; issue 8). The vectors come back in the caller's
        # order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        job = _Job([texts[i] for i in order], None if left is None else time.monotonic() + left)
        job.left = len(texts)
        with self._cv:
            if sum(self._queued) + len(texts) > self.max_queue and any(self._lanes):
                raise retry_error(
                    "the embedding queue is full", self.expected_wait(0, lane), "OVERLOADED"
                )
            self._lanes[lane].append(job)
            self._queued[lane] += len(texts)
            self._cv.notify()
        if not job.done.wait(None if left is None else max(left, 0.0) + 0.05):
            raise DeadlineExceeded("the deadline passed while queued for embedding")
        if job.error is not None:
            raise job.error
        assert job.out is not None
        out = np.empty_like(job.out)
        out[order] = job.out
        return out

    def _searching(self) -> bool:
        return time.monotonic() - self._last_query < QUERY_QUIET_S

    def _lane(self) -> int | None:
        """Under the lock: the lane a free worker serves next, or None to stay free. At
        most `workers` batches run at once, and while searches are about, writes run one
        batch at a time, so a worker's share stays free for the next query."""
        if self._active >= self.workers:
            return None
        if self._lanes[URGENT]:
            return URGENT
        if self._lanes[NORMAL] and (self.write_nice or not (self._writing and self._searching())):
            return NORMAL
        return None

    def _free_now(self, lane: int) -> bool:
        """Under the lock: a caller of lane may run its own batch at once (nothing ahead)."""
        if self._active >= self.workers or self._lanes[URGENT]:
            return False
        return lane == URGENT or not (self._lanes[NORMAL] or (self._writing and self._searching()))

    def _start(self, lane: int, who: object, n: int) -> None:
        self._active += 1
        self._writing += lane == NORMAL
        self._busy_until[who] = time.monotonic() + n / self._rate

    def _finish(self, lane: int, who: object, n: int, t0: float) -> None:
        took = max(time.monotonic() - t0, 1e-4)
        self._rate = 0.7 * self._rate + 0.3 * (n / took)
        self._active -= 1
        self._writing -= lane == NORMAL
        self._busy_until.pop(who, None)
        self.batches += 1
        self.texts += n
        self._cv.notify_all()  # a worker kept free may now take a batch

    def _take(self, lane: int) -> tuple[list[tuple[_Job, int, int]], list[_Job]]:
        """Under the lock: the next batch of lane as (job, start, end) slices (a big job
        is cut into several), and the jobs whose callers have gone."""
        now = time.monotonic()
        q = self._lanes[lane]
        parts: list[tuple[_Job, int, int]] = []
        late: list[_Job] = []
        n = 0
        while q and n < self.max_batch:
            j = q[0]
            if j.taken == 0 and j.until is not None and j.until <= now:
                q.popleft()  # its caller has gone: no work done for it
                self._queued[lane] -= len(j.texts)
                late.append(j)
                continue
            k = min(self.max_batch - n, len(j.texts) - j.taken)
            parts.append((j, j.taken, j.taken + k))
            j.taken += k
            n += k
            self._queued[lane] -= k
            if j.taken == len(j.texts):
                q.popleft()
        return parts, late

    def _nice_thread(self) -> None:
        try:  # this thread only (Linux): queries in other threads go first
            tid = threading.get_native_id()
            nice = os.getpriority(os.PRIO_PROCESS, tid) + self.write_nice
            os.setpriority(os.PRIO_PROCESS, tid, min(nice, 19))
        except (OSError, AttributeError):
            pass

    def _model(self, lane: int) -> Embedder:
        """The model a worker runs a batch of lane on: writes in the niced child when it
        is up; otherwise here (the worker nices itself once, for good, if it must)."""
        child = self.write_model
        if lane == NORMAL and child is not None and self.write_nice:
            if child.ready:
                return child
            if child.broken and not getattr(self._niced, "done", False):
                self._nice_thread()
                self._niced.done = True
        return self.inner

    def _run(self, worker: int) -> None:
        if self.write_nice and self.write_model is None:
            self._nice_thread()
        while True:
            with self._cv:
                while (lane := self._lane()) is None:
                    self._cv.wait()
                parts, late = self._take(lane)
                n = sum(e - s for _, s, e in parts)
                if n:
                    self._start(lane, worker, n)
            for j in late:
                j.error = DeadlineExceeded("the deadline passed while queued for embedding")
                j.done.set()
            if not n:
                continue
            t0 = time.monotonic()
            vecs = error = None
            texts = [t for j, s, e in parts for t in j.texts[s:e]]
            model = self._model(lane)
            try:
                vecs = model.embed(texts)
            except BaseException as exc:  # noqa: BLE001 - handed to every caller
                error = exc
                if model is not self.inner:  # the child failed: once more, here
                    try:
                        vecs, error = self._model(lane).embed(texts), None
                    except BaseException as exc2:  # noqa: BLE001
                        error = exc2
            finished = []
            with self._cv:
                self._finish(lane, worker, n, t0)
                i = 0
                for j, s, e in parts:
                    if error is not None:
                        j.error = error
                    else:
                        if j.out is None:
                            j.out = np.empty((len(j.texts), self.dim), dtype=np.float32)
                        j.out[s:e] = vecs[i : i + e - s]
                    i += e - s
                    j.left -= e - s
                    if j.left == 0:
                        finished.append(j)
            for j in finished:
                j.done.set()


def scheduled(
    embedder: Embedder,
    workers: int = 0,
    instrument: Callable[[Embedder], Embedder] | None = None,
    write_nice: int = 0,
    child: tuple[str, int, str] | None = None,
) -> Embedder:
    """The embedder with its model calls queued through one MicroBatcher; a cache in front
    (CachedEmbedder) stays in front, so a hit is answered without queueing. `instrument`
    wraps the model itself (it then times real batches). workers 0 means one per core."""
    cached = isinstance(embedder, CachedEmbedder)
    model = embedder.inner if cached else embedder
    if instrument is not None:
        model = instrument(model)
    # With write_nice, a batch is one model call (32 texts) so it runs whole on the niced
    # worker; a larger one would be split over the model's own (not niced) threads.
    write_model = None
    if child is not None and write_nice:  # (kind, threads, precision) of the model
        from shared.embed_child import ChildEmbedder

        write_model = ChildEmbedder(*child, nice=write_nice, dim=model.dim, name=model.name)
        if instrument is not None:
            write_model = instrument(write_model)
    batcher = MicroBatcher(
        model,
        max_batch=32 if write_nice else 64,
        workers=workers or os.cpu_count() or 1,
        write_nice=write_nice,
        write_model=write_model,
    )
    return CachedEmbedder(batcher) if cached else batcher
