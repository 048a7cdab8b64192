"""Micro-batching of write embeddings: concurrent callers share model calls, and a call
whose turn would come after its deadline gets RESOURCE_EXHAUSTED with a retry hint."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from shared import deadline
from shared.batching import MicroBatcher
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
