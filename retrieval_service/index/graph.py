"""A partition's HNSW graph (faiss): its settings, and its storage, which is the
partition's rows. Once a partition has a graph, the graph's storage (faiss QT_bf16 codes:
the same bits as the partition's bfloat16 rows) is where its rows live, and the partition's
`vectors` is a numpy view of it (rows_of): one copy of each vector. Snapshots write a graph
without its storage (graph_links) and give it the rows back on load (with_rows)."""

from __future__ import annotations

import faiss
import numpy as np

# 24 links a row (48 at level 0): 64 B a memory less than M=32, so a graph partition fits
# in 2 KB a memory; a deeper build (efConstruction 120, not 80) gives it better neighbours:
# at 1M rows dense recall@10 0.993 (M=32 at 80: 0.988), hybrid agreement with the exact
# path 0.976 (0.986; M=24 at 80: 0.965). docs/scale.md has the runs.
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 120
# The graph's storage: bfloat16, faiss's codes are the partition's rows bit for bit (a row
# added as its widened float32 encodes back to the same bits), so it needs no training and
# the graph walks the very values every score comes from.
GRAPH_STORAGE = faiss.ScalarQuantizer.QT_bf16


def new_graph(dim: int):
    """An empty graph with the settings above (read when called: benches change HNSW_M)."""
    index = faiss.IndexHNSWSQ(dim, GRAPH_STORAGE, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    return index


class _Held:
    """A numpy view's base that keeps the faiss index whose memory it views alive."""

    def __init__(self, view: np.ndarray, owner) -> None:
        self.__array_interface__ = view.__array_interface__
        self.owner = owner


def rows_of(ann, dim: int) -> np.ndarray:
    """The graph's storage, its bfloat16 codes, as a writable (ntotal, dim) uint16 view
    (no copy). faiss may move the codes when rows are added: a partition takes a new view
    after each add, under its lock, and nothing keeps an older one past the lock."""
    storage = faiss.downcast_index(ann.storage)
    n = int(storage.ntotal)
    if n == 0:
        return np.zeros((0, dim), np.uint16)
    assert storage.code_size == 2 * dim and storage.codes.size() >= n * 2 * dim
    flat = faiss.rev_swig_ptr(storage.codes.data(), n * 2 * dim)
    return np.asarray(_Held(flat.view(np.uint16).reshape(n, dim), ann))


def graph_links(ann) -> np.ndarray:
    """The graph serialized without its storage (the rows, which snapshots hold anyway)."""
    w = faiss.VectorIOWriter()
    faiss.write_index(ann, w, faiss.IO_FLAG_SKIP_STORAGE)
    return faiss.vector_to_array(w.data)


def with_rows(graph, rows: np.ndarray):
    """A graph read from a snapshot with rows (bfloat16 bits, one per graph id) as its
    storage. A graph written with its own 8-bit copy (snapshot formats 3-5) drops it."""
    if graph.storage is not None:
        graph = faiss.deserialize_index(graph_links(graph))
    storage = faiss.IndexScalarQuantizer(rows.shape[1], GRAPH_STORAGE, faiss.METRIC_INNER_PRODUCT)
    rows = np.ascontiguousarray(rows, dtype=np.uint16)
    storage.codes.resize(rows.nbytes)
    if rows.nbytes:
        faiss.rev_swig_ptr(storage.codes.data(), rows.nbytes)[:] = rows.reshape(-1).view(np.uint8)
    storage.ntotal = len(rows)
    storage.this.disown()  # the graph owns and frees it
    graph.storage = storage
    graph.own_fields = True
    return graph
