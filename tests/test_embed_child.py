"""Write batches in a niced child process (shared/embed_child.py): the same vectors as the
model in this process, the child at the lower priority while this process's threads keep
theirs, queries never sent there, and a child that dies replaced by the model here."""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from shared.batching import MicroBatcher, urgent
from shared.embed_child import ChildEmbedder
from shared.embedding import HashEmbedder


def _child(nice: int = 5) -> ChildEmbedder:
    h = HashEmbedder()
    c = ChildEmbedder("hash", 1, "auto", nice, dim=h.dim, name=h.name)
    end = time.monotonic() + 60
    while not (c.ready or c.broken) and time.monotonic() < end:
        time.sleep(0.02)
    assert c.ready, "the child did not start"
    return c


def test_the_child_embeds_what_this_process_would_at_a_lower_priority():
    c = _child(nice=5)
    try:
        texts = [f"text number {i} about the harbour" for i in range(40)] + ["text number 1"]
        assert np.array_equal(c.embed(texts), HashEmbedder().embed(texts))
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, c.pid) == min(base + 5, 19)
    finally:
        c.close()
    assert c._proc.poll() == 0, "closing the pipe ends the child"


def test_writes_go_to_the_child_queries_stay_here_and_a_dead_child_is_replaced():
    c = _child(nice=5)
    seen: list[tuple[str, int]] = []

    class Here(HashEmbedder):
        def _embed(self, texts):
            seen.append((texts[0], threading.get_native_id()))
            return super()._embed(texts)

    before = set(threading.enumerate())
    b = MicroBatcher(Here(), max_batch=8, workers=2, write_nice=5, write_model=c)
    workers = [t for t in threading.enumerate() if t not in before]
    try:
        writes = b.embed([f"write {i}" for i in range(20)])
        assert np.array_equal(writes, HashEmbedder().embed([f"write {i}" for i in range(20)]))
        assert not seen, "a write batch ran in this process while the child was up"
        with urgent():
            q = b.embed(["the query"])
        assert np.array_equal(q, HashEmbedder().embed(["the query"]))
        assert [t for t, _ in seen] == ["the query"]
        # The workers kept this process's priority: nothing here runs niced.
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert len(workers) == 2
        for t in workers:
            assert os.getpriority(os.PRIO_PROCESS, t.native_id) == base
        os.kill(c.pid, 9)
        c._proc.wait()
        again = b.embed(["after the child died"])
        assert np.array_equal(again, HashEmbedder().embed(["after the child died"]))
        assert c.broken and seen[-1][0] == "after the child died"
        # From then on a worker nices itself, as without a child.
        assert os.getpriority(os.PRIO_PROCESS, seen[-1][1]) == min(base + 5, 19)
    finally:
        c.close()
