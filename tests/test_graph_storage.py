"""A partition with an HNSW graph holds each vector once: the graph's storage (bfloat16
codes) is the partition's rows. It stays so through incremental adds, removals, snapshot
round trips (formats 6 and 5) and compaction; the graph and exact paths still score a row
alike."""

from __future__ import annotations

import random

import faiss
import numpy as np

from retrieval_service.index import Filters, Partition, snapshots
from retrieval_service.index.storage import to_bf16
from tests.helpers import both_paths
from tests.test_graph_scores import _partition, _queries, _rec

DIM = 16


def _storage(p: Partition):
    return faiss.downcast_index(p.ann.storage)


def _one_copy(p: Partition) -> None:
    """The partition's rows are the graph's storage, byte for byte the same memory."""
    s = _storage(p)
    assert s.code_size == 2 * DIM and s.ntotal == p.ann.ntotal == p.n
    assert p.vectors.shape == (p.n, DIM) and p.vectors.dtype == np.uint16
    codes = faiss.rev_swig_ptr(s.codes.data(), s.codes.size())
    assert p.vectors.ctypes.data == codes.ctypes.data  # no second copy
    assert p.vectors.flags.writeable


def _agree(p: Partition, vecs: np.ndarray, words: list[str], seed: int) -> None:
    rnd = random.Random(seed)
    f = Filters(user_id="u1")
    for query in _queries(rnd, words, 8):
        qvec = vecs[rnd.randrange(len(vecs))]
        g, e, at = both_paths(p, f, qvec, query)
        np.testing.assert_allclose(g.dense, e.dense[at], rtol=0, atol=1e-6)
    p.ann_threshold = 500


def test_a_graph_partition_holds_one_copy_of_its_vectors_through_adds_and_removals():
    p, words, vecs = _partition(3, 3000, dim=DIM, ann_threshold=500)
    before = p.vectors[: p.n].copy()
    p.build_ann()
    _one_copy(p)
    assert np.array_equal(p.vectors, before)  # the graph's codes are the rows, bit for bit
    # Incremental adds after the build (put and the tailer's put_many) grow the storage,
    # which faiss may move: the partition's view follows it.
    rng = np.random.default_rng(4)
    more = rng.standard_normal((700, DIM)).astype(np.float32)
    more /= np.linalg.norm(more, axis=1, keepdims=True)
    for i in range(200):
        p.put(_rec(3000 + i, f"w{i % 7} {words[i % 50]}", f"s-new{i // 20}", i % 20), more[i])
        _one_copy(p)
    recs = [_rec(3200 + i, words[i % 80], f"s-late{i // 20}", i % 20) for i in range(500)]
    p.put_many(recs, more[200:])
    _one_copy(p)
    assert np.array_equal(p.vectors[3000:], to_bf16(more))
    # The graph finds an added row by its own vector (it walks the same storage).
    _, labels = p.ann.search(more[650:651], 1)
    assert labels[0][0] == 3650
    # A removal blanks the row in the graph's storage at once (there is no other copy).
    row = p.row_of.get(3651)
    assert p.remove(3651)
    assert not p.ann.reconstruct(int(row)).any()
    assert p.needs_compaction()  # the graph still links to it: rebuilt by compaction
    q = p.compact()
    _one_copy(q)
    assert q.n == p.n_alive and not q.needs_compaction()
    _agree(q, vecs, words, 11)


def test_graph_and_exact_paths_agree_after_incremental_adds():
    p, words, vecs = _partition(6, 2000, dim=DIM, ann_threshold=500)
    p.build_ann()
    rng = np.random.default_rng(8)
    more = rng.standard_normal((600, DIM)).astype(np.float32)
    more /= np.linalg.norm(more, axis=1, keepdims=True)
    for i in range(100):
        p.put(_rec(2000 + i, " ".join(words[i : i + 3]), f"s-n{i // 20}", i % 20), more[i])
    recs = [_rec(2100 + i, " ".join(words[i : i + 2]), f"s-m{i // 20}", i % 20) for i in range(500)]
    p.put_many(recs, more[100:])
    _agree(p, np.concatenate([vecs, more]), words, 12)


def test_a_graph_partition_round_trips_through_a_snapshot_with_its_graph():
    p, words, vecs = _partition(5, 3000, dim=DIM, ann_threshold=500)
    p = p.compact()  # no tombstones: the snapshot keeps the graph
    assert p.ann is not None
    c = snapshots.copy_partition(p)
    blob = snapshots.encode(c)
    # The graph is written without its storage: the vectors are in the snapshot once.
    with_storage = faiss.serialize_index(p.ann).nbytes
    assert c.graph is not None and with_storage - c.graph.nbytes >= p.n * 2 * DIM
    q = snapshots.decode(blob, DIM, 500, 1, None)
    assert q.ann is not None
    _one_copy(q)
    assert np.array_equal(q.vectors, p.vectors)
    assert np.array_equal(
        faiss.vector_to_array(q.ann.hnsw.neighbors), faiss.vector_to_array(p.ann.hnsw.neighbors)
    )
    x = np.ascontiguousarray(vecs[:20])
    assert np.array_equal(q.ann.search(x, 10)[1], p.ann.search(x, 10)[1])
    _agree(q, vecs, words, 13)
    # It keeps growing after the load.
    q.put(_rec(10_000, "fresh words", "s-x", 0), vecs[0])
    _one_copy(q)


def test_a_snapshot_graph_with_its_own_8bit_copy_loads_without_it():
    """Formats 3-5 wrote the graph with its own SQ8 copy of the vectors: it loads with the
    partition's rows as its storage (the copy dropped) and the same links."""
    p, words, vecs = _partition(7, 2500, dim=DIM, ann_threshold=500)
    p = p.compact()
    rows = p.vectors[: p.n].copy()
    old = faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_8bit, 32, faiss.METRIC_INNER_PRODUCT)
    old.hnsw.efConstruction = 40
    from retrieval_service.index.storage import from_bf16

    old.train(from_bf16(rows))
    old.add(from_bf16(rows))
    c = snapshots.copy_partition(p)
    c.graph = faiss.serialize_index(old)  # as format 5 wrote it
    q = snapshots.decode(snapshots.encode(c), DIM, 500, 1, None)
    _one_copy(q)
    assert np.array_equal(q.vectors, rows)
    assert np.array_equal(
        faiss.vector_to_array(q.ann.hnsw.neighbors), faiss.vector_to_array(old.hnsw.neighbors)
    )
    _agree(q, vecs, words, 14)


def test_partition_save_and_load_keep_the_graph_on_the_rows(tmp_path):
    p, words, vecs = _partition(9, 2200, dim=DIM, ann_threshold=500)
    p.build_ann()
    p.save(tmp_path / "p")
    q = Partition.load(tmp_path / "p", DIM, 500, 1)
    _one_copy(q)
    assert np.array_equal(q.vectors, p.vectors)
    x = np.ascontiguousarray(vecs[:20])
    assert np.array_equal(q.ann.search(x, 10)[1], p.ann.search(x, 10)[1])


def test_a_row_removed_while_the_graph_is_built_is_blanked_in_it(monkeypatch):
    """build_ann reads the rows outside the lock; a removal meanwhile blanks the row in the
    partition, and the swap blanks it in the graph's storage too (and marks the graph
    stale, so compaction rebuilds it)."""
    p, words, vecs = _partition(2, 1500, dim=DIM, ann_threshold=500)
    mid = next(m for m in range(1, 1501) if p.row_of.get(m) is not None)
    row = int(p.row_of.get(mid))

    class Hooked(faiss.IndexHNSWSQ):
        def add(self, x):
            super().add(x)
            if self.ntotal == p.n:  # the build has read every row: now the removal
                assert p.remove(mid)

    monkeypatch.setattr(faiss, "IndexHNSWSQ", Hooked)
    p.build_ann()
    monkeypatch.undo()
    _one_copy(p)
    assert not p.vectors[row].any() and not p.ann.reconstruct(row).any()
    assert p.needs_compaction()


def test_a_manager_restarts_from_a_snapshot_with_its_graph_on_the_rows(fresh_backend, tmp_path):
    """Through the index manager: a partition past the threshold gets its graph, a
    snapshot (format 6) keeps it without a second copy of the vectors, and a restart
    from it answers as the first manager did, with one copy of each vector."""
    from shared.embedding import HashEmbedder
    from tests.conftest import start_suite
    from tests.test_index import QUERIES, _corpus, _manager, _results

    backend, settings = fresh_backend
    suite = start_suite(settings, backend)
    try:
        with suite.client("acme") as c:
            _corpus(c, n=400)
    finally:
        suite.stop()
    root = tmp_path / "idx"
    a = _manager(settings.sqlalchemy_url(), ann_threshold=100, snapshot_dir=root)
    a.load_all()
    (pa,) = a.partitions.values()
    assert pa.ann is not None and faiss.downcast_index(pa.ann.storage).code_size == 2 * pa.dim
    assert a.save_snapshot()
    assert snapshots.SnapshotStore(root).read_manifest()["format"] == snapshots.FORMAT == 6
    b = _manager(settings.sqlalchemy_url(), ann_threshold=100, snapshot_dir=root)
    assert b.load_snapshot()
    (key,) = a.partitions
    pb_ = b.partition(key)
    assert pb_.ann is not None and pb_.ann.ntotal == pb_.n == pa.n
    s = faiss.downcast_index(pb_.ann.storage)
    assert pb_.vectors.ctypes.data == faiss.rev_swig_ptr(s.codes.data(), 1).ctypes.data
    assert np.array_equal(pb_.vectors, pa.vectors)
    f = Filters(user_id="u1")
    for q in QUERIES:
        assert _results(b, "acme", q, f) == _results(a, "acme", q, f)
    assert HashEmbedder.dim == pa.dim
    for m in (a, b):
        m._store.close()
