"""Micro-batching of write embeddings: concurrent callers share model calls, and a call
whose turn would come after its deadline gets RESOURCE_EXHAUSTED with a retry hint."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from shared import deadline
from shared.batching import MicroBatcher, urgent
from shared.embedding import Embedder, HashEmbedder
from shared.errors import ResourceExhausted


class Slow(Embedder):
    """HashEmbedder at a fixed cost per call plus per text (like a model)."""

    def __init__(self, per_call: float = 0.02, per_text: float = 0.001) -> None:
        self.inner = HashEmbedder()
        self.name, self.dim = self.inner.name, self.inner.dim
        self.per_call, self.per_text = per_call, per_text
        self.calls = 0

    def _embed(self, texts):
        self.calls += 1
        time.sleep(self.per_call + self.per_text * len(texts))
        return self.inner.embed(texts)


def test_concurrent_callers_share_batches_and_get_their_own_vectors():
    slow = Slow()
    b = MicroBatcher(slow)
    out: dict[int, np.ndarray] = {}
    go = threading.Barrier(16)

    def run(i):
        go.wait()
        out[i] = b.embed([f"text number {i}", f"another {i}"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert slow.calls < 16, "every caller paid for its own model call"
    ref = HashEmbedder()
    for i in range(16):
        assert np.allclose(out[i], ref.embed([f"text number {i}", f"another {i}"]))


def test_a_queue_longer_than_the_deadline_is_refused_at_once():
    slow = Slow(per_call=0.0, per_text=0.01)  # 100 texts/s
    b = MicroBatcher(slow, max_batch=50)
    for k in range(4):  # learn the rate
        b.embed([f"warm {k} {i}" for i in range(50)])
    busy = threading.Thread(target=b.embed, args=([f"t{i}" for i in range(200)],))
    busy.start()
    time.sleep(0.05)
    t0 = time.monotonic()
    with deadline.call_deadline(0.3), pytest.raises(ResourceExhausted) as info:
        b.embed(["late"])
    assert time.monotonic() - t0 < 0.1
    retry = info.value.details[0].retry_delay
    assert retry.seconds + retry.nanos / 1e9 > 0.3
    busy.join()
    with deadline.call_deadline(5.0):
        assert b.embed(["now there is room"]).shape == (1, slow.dim)


def test_a_job_whose_caller_has_gone_is_not_embedded():
    slow = Slow(per_call=0.3, per_text=0.0)
    b = MicroBatcher(slow)
    busy = threading.Thread(target=b.embed, args=(["occupies the worker"],))
    busy.start()
    time.sleep(0.05)
    b._rate = 1e9  # admit it: the queue looks empty
    with deadline.call_deadline(0.1), pytest.raises(Exception) as info:
        b.embed(["too late"])
    assert "deadline" in str(info.value).lower()
    busy.join()
    assert slow.calls == 1


class Tracking(Slow):
    """Slow, and remembers the most model calls that ran at once and each call's size."""

    def __init__(self, per_call: float) -> None:
        super().__init__(per_call=per_call, per_text=0.0)
        self._mu = threading.Lock()
        self.running = self.most = 0
        self.sizes: list[int] = []

    def _embed(self, texts):
        with self._mu:
            self.running += 1
            self.most = max(self.most, self.running)
            self.sizes.append(len(texts))
        try:
            return super()._embed(texts)
        finally:
            with self._mu:
                self.running -= 1


def _writes(b: MicroBatcher, jobs: int, size: int) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=b.embed, args=([f"write {j} {k}" for k in range(size)],))
        for j in range(jobs)
    ]
    for t in threads:
        t.start()
    return threads


def test_a_query_goes_before_queued_writes():
    model = Tracking(per_call=0.1)
    b = MicroBatcher(model, max_batch=4, workers=2)
    with urgent():
        b.embed(["an earlier search"])  # searches are about
    writers = _writes(b, jobs=6, size=4)  # six batches of writes, 0.6 s of model time
    time.sleep(0.05)
    t0 = time.monotonic()
    with urgent():
        vec = b.embed(["the query"])
    took = time.monotonic() - t0
    for t in writers:
        t.join()
    assert np.allclose(vec, HashEmbedder().embed(["the query"]))
    # Behind the queued writes it would wait for at least three batches (0.3 s).
    assert took < 0.25, f"the query waited {took:.2f} s"


def test_writes_leave_a_worker_free_while_searches_are_about():
    model = Tracking(per_call=0.05)
    b = MicroBatcher(model, max_batch=4, workers=2)
    with urgent():
        b.embed(["a search"])
    for t in _writes(b, jobs=6, size=4):
        t.join()
    assert model.most == 1, "writes took every worker while searches were about"

    quiet = Tracking(per_call=0.05)  # no search yet: writes may use both workers
    b = MicroBatcher(quiet, max_batch=4, workers=2)
    for t in _writes(b, jobs=6, size=4):
        t.join()
    assert quiet.most == 2


def test_a_big_job_is_cut_into_batches_and_comes_back_in_order():
    model = Tracking(per_call=0.0)
    b = MicroBatcher(model, max_batch=4, workers=2)
    texts = [f"item {i}" for i in range(10)]
    out = b.embed(texts)
    assert max(model.sizes) <= 4
    assert np.allclose(out, HashEmbedder().embed(texts))


def test_a_big_job_is_cut_into_batches_of_texts_of_like_length():
    """Issue 8: arrival-order batches pad every text to the batch's longest; a big job's
    texts are sorted by length before it is cut, and its vectors come back in order."""
    calls: list[list[str]] = []

    class Recording(Slow):
        def _embed(self, texts):
            calls.append(list(texts))
            return super()._embed(texts)

    rng = np.random.default_rng(3)
    texts = [" ".join(["word"] * int(n)) + f" {i}" for i, n in enumerate(rng.integers(1, 60, 40))]
    b = MicroBatcher(Recording(per_call=0.0, per_text=0.0), max_batch=8, workers=1)
    out = b.embed(texts)
    assert [len(c) for c in calls] == [8] * 5
    assert [t for c in calls for t in c] == sorted(texts, key=len)
    assert np.allclose(out, HashEmbedder().embed(texts))


def test_a_lone_caller_runs_its_own_batch():
    seen: list[int] = []

    class Where(Slow):
        def _embed(self, texts):
            seen.append(threading.get_ident())
            return super()._embed(texts)

    b = MicroBatcher(Where(per_call=0.0, per_text=0.0), workers=2)
    b.embed(["nothing queued ahead"])
    with urgent():
        b.embed(["a query, nothing queued ahead"])
    assert seen == [threading.get_ident()] * 2


def test_with_write_nice_writes_run_niced_and_queries_at_once_at_full_priority():
    """write_nice: write batches run on worker threads at a lower CPU priority, and a
    search's query runs in its caller's thread at once, even with every worker busy."""
    import os

    base = os.getpriority(os.PRIO_PROCESS, 0)  # this thread's nice (Linux: per thread)
    nice_of: dict[str, list[int]] = {"write": [], "query": []}

    class Nice(Slow):
        def _embed(self, texts):
            kind = "query" if texts[0].startswith("q") else "write"
            nice_of[kind].append(os.getpriority(os.PRIO_PROCESS, 0))
            return super()._embed(texts)

    b = MicroBatcher(Nice(per_call=0.1), max_batch=4, workers=2, write_nice=5)
    writers = _writes(b, jobs=6, size=4)  # both workers busy for about 0.3 s
    time.sleep(0.05)
    t0 = time.monotonic()
    with urgent():
        vec = b.embed(["q the query"])
    took = time.monotonic() - t0
    for t in writers:
        t.join()
    assert np.allclose(vec, HashEmbedder().embed(["q the query"]))
    assert took < 0.2, f"the query waited {took:.2f} s behind busy workers"
    assert nice_of["query"] == [base]
    assert nice_of["write"] and set(nice_of["write"]) == {min(base + 5, 19)}
