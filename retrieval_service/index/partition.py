"""The derived search index: partitions by scope, built by tailing the change log.

A partition holds the rows of one (tenant, user) or (tenant, agent) scope: vectors, BM25
postings and the columns filters need, so a scoped query touches only its own rows and
filters are exact (a mask applied before ranking, never after). Rows are append-only;
a removed memory leaves a tombstone that holds no content (text, scope strings, document,
vector and BM25 postings are dropped at once) until the partition is compacted. Above a size
threshold a partition also keeps an HNSW graph (faiss) over its rows; a search uses it
with the filter mask as an IDSelector, and falls back to exact search whenever the
mask is small or the graph returns fewer hits than exist.

Vectors are held as bfloat16 (the upper half of each float32, rounded to nearest even):
half the bytes of float32, and widening them back is one integer shift, so a scan over
all rows costs no more than float32 did (numpy's float16 cast has no SIMD path here and
was 30x slower). The cosine moves by at most about 3e-4. Every dense score, on either
path, comes from these same stored vectors, so the graph and exact paths agree exactly.
Once a partition has a graph, the graph's storage (faiss QT_bf16 codes: the same bits) is
where its rows live, and `vectors` is a numpy view of it: one copy of each vector, not
the rows plus a copy of the graph's own (see _rows_of).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index.outcome import outcome_of
from retrieval_service.index.storage import (
    Blobs,
    RowMap,
    Texts,
    _Codes,
    from_bf16,
    to_bf16,
    trim_heap,
)
from retrieval_service.lexical import BM25, has_time_expression, is_outcome_query, tokenize
from shared.convert import record_to_proto
from shared.db.models import MemoryRecord
from shared.text import index_text, speaker_of

log = logging.getLogger("memlake.index")
INF = float("inf")
# 24 links a row (48 at level 0): 64 B a memory less than 32 for the same hybrid agreement
# with the exact path at 100k (docs/scale.md); the graph must fit the 2 KB per memory.
HNSW_M = 24
HNSW_EF_CONSTRUCTION = 80
# The graph's storage: bfloat16, faiss's codes are the partition's rows bit for bit (a row
# added as its widened float32 encodes back to the same bits), so it needs no training and
# the graph walks the very values every score comes from.
GRAPH_STORAGE = faiss.ScalarQuantizer.QT_bf16
# On the graph path, how many rows with lexical evidence are scored besides the graph's.
LEXICAL_CANDIDATES = 2048
SMALL_SET = 2048  # a boosted set this small is scored whole instead of walked in the graph
NEIGHBOURS = True  # the turns next to candidates compete too (see _with_neighbours)
# When more rows have lexical evidence than are taken by it, the graph's nearest among
# them compete too: a row with some words of the query and a good cosine.
LEXICAL_GRAPH = True


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """np.union1d (sorted, distinct) by one sort: numpy's hashing unique was slower here."""
    x = np.concatenate([a, b])
    if not len(x):
        return x
    x.sort()
    keep = np.empty(len(x), dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def graph_depth(want: int, count: int) -> int:
    """How many nearest rows to take from the graph for `want` candidates: more as the
    rows grow, because the cosines near the top crowd together and boosts and small terms
    (recency, neighbours' scores) reorder them. bench/graph_diag.py, top-10 agreement with
    the exact path: 100k rows 0.984 at 1x want, 0.995 at 2x, 0.998 at 4x; 1M rows 0.836 at
    1x, 0.931 at 4x, 0.955 at 6.3x, 0.976 at 10x (0.988 with 4096 lexical rows)."""
    return int(want * max(1.0, math.sqrt(count / 10_000)))


def lexical_depth(k: int, count: int) -> int:
    """How many of the best lexical rows compete on the graph path (at 1M rows, 4096
    against 2048 took agreement from 0.976 to 0.988)."""
    return max(k, int(LEXICAL_CANDIDATES * max(1.0, math.sqrt(count / 250_000))))


def graph_ef(k: int) -> int:
    """efSearch for k nearest rows."""
    return max(2 * k, 64)


class _Held:
    """A numpy view's base that keeps the faiss index whose memory it views alive."""

    def __init__(self, view: np.ndarray, owner) -> None:
        self.__array_interface__ = view.__array_interface__
        self.owner = owner


def _rows_of(ann, dim: int) -> np.ndarray:
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


def _with_rows(graph, rows: np.ndarray):
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


def partition_key(tenant: str, user_id: str, agent_id: str) -> tuple[str, str]:
    if user_id:
        return (tenant, "u:" + user_id)
    if agent_id:
        return (tenant, "a:" + agent_id)
    return (tenant, "")


def _first_name(name: str) -> str:
    return name.split()[0].lower() if name.strip() else ""


@dataclass
class Filters:
    types: frozenset[int] = frozenset()
    user_id: str = ""
    agent_id: str = ""
    session_id: str = ""
    start: float = -INF
    end: float = INF
    include_history: bool = False
    # The caller's read grants (shared.auth.grants.Grant); None: no restriction.
    access: tuple | None = None


# name -> (dtype, fill value) of the per-row columns
COLUMNS = {
    "ids": (np.int64, 0),
    "types": (np.int8, 0),
    "when": (np.float64, 0.0),  # occur_time, else create_time (epoch seconds)
    "day": (np.int32, 0),  # the same as yyyymmdd
    "expire": (np.float64, INF),
    "current": (bool, False),
    "alive": (bool, False),
    "conflicted": (bool, False),
    "importance": (np.float32, 0.0),
    "confidence": (np.float32, 1.0),
    "turn": (np.int32, -1),
    "prev_row": (np.int32, -1),  # the previous / next turn of the same session
    "next_row": (np.int32, -1),
    "has_time": (bool, False),  # the text holds a time expression
    "question": (bool, False),  # the text ends with a question mark
    "doc_turn": (np.int32, -1),  # ids in the two BM25 indexes
    "doc_window": (np.int32, -1),
}
STRINGS = ("sessions", "agents", "users", "speakers", "texts")
SCAN_ROWS = 1024  # rows widened at a time by a full scan (stays in the L2 cache)


SCOPE_COLUMNS = ("sessions", "agents", "users", "speakers")


@dataclass
class Candidates:
    """Rows passing the filters that could rank in the top k, with their scores (after
    neighbour smoothing) and the cues the ranking boosts on."""

    rows: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    exact: bool


class _Sparse:
    """Lexical scores of a partition's rows, read like _lexical's array over every row
    but combined only where read: the two indexes' scores by row, and the rows passing
    the filters where either is above 0 (as a mask and sorted)."""

    __slots__ = ("mask", "rows", "own", "win", "w")

    def __init__(self, mask: np.ndarray, own: np.ndarray, win: np.ndarray, w: float) -> None:
        self.mask, self.rows = mask, np.flatnonzero(mask)
        self.own, self.win, self.w = own, win, w

    def __getitem__(self, rows) -> np.ndarray:
        w = self.w
        return (self.own[rows] + w * self.win[rows]) / (1 + w)  # as _lexical combines them

    @property
    def scores(self) -> np.ndarray:
        return self[self.rows]


@dataclass
class Smoothing:
    dense_next: float = 0.3  # a turn inherits this share of the next turn's dense score
    lexical_prev: float = 0.5  # ... and of the previous turn's lexical score
    window_weight: float = 1.5  # weight of the window document's BM25 score
    outcome: float = 1.0  # an exchange's outcome turn takes this share of its question's


class Partition:
    def __init__(
        self, dim: int, ann_threshold: int, lexical_window: int = 1, smoothing=None
    ) -> None:
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.lexical_window = lexical_window
        self.smoothing = smoothing or Smoothing()
        self.lock = threading.RLock()
        self.n = 0
        self.n_alive = 0
        cap = 1  # most partitions hold a few memories; doubles as it fills
        for name, (dt, fill) in COLUMNS.items():
            setattr(self, name, np.full(cap, fill, dtype=dt))
        # bfloat16 bits; once there is a graph, a view of its storage (no spare rows)
        self.vectors = np.zeros((cap, dim), dtype=np.uint16)
        for name in SCOPE_COLUMNS:  # interned: rows of a session or user share one object
            setattr(self, name, [])
        self.texts = Texts()  # what BM25 indexes, per row
        self.docs = Blobs()  # serialized memlake.v1.Memory per row
        self.row_of = RowMap()
        # session -> the live row holding its highest turn (the latest such row): turns
        # arrive in order, so a turn's predecessor is found there; any other is looked
        # up by a scan (see _turn_row). A dict per row took about 85 bytes a memory.
        self.last_turn: dict[str, int] = {}
        self.bm25 = BM25()  # each row's own text
        self.bm25_window = BM25()  # a turn with the turns before it
        self.ann: faiss.IndexHNSWSQ | None = None
        # The graph's links still lead to a removed row (its vector, in the graph's storage,
        # is blanked with the row): rebuilt at the next compaction.
        self.ann_stale = False
        self._codes = {name: _Codes() for name in SCOPE_COLUMNS}
        self._version = 0  # counts writes to the columns filters read (see _cached_mask)
        self._mask_cache: tuple | None = None

    # -- writes -----------------------------------------------------------------------------

    def _grow(self) -> None:
        n = len(self.ids)
        cap = 2 * n if n < 4096 else n + n // 8  # large partitions: at most 12.5% unused
        for name, (dt, fill) in COLUMNS.items():
            old = getattr(self, name)
            new = np.full(cap, fill, dtype=dt)
            new[: len(old)] = old
            setattr(self, name, new)
        if self.ann is None:  # with a graph, adding to it grows its storage
            vec = np.zeros((cap, self.dim), dtype=np.uint16)
            vec[: self.n] = self.vectors[: self.n]
            self.vectors = vec

    def _store_rows(self, start: int, rows: np.ndarray) -> None:
        """Vectors (bfloat16 bits) of the new rows start..: into the row array, or, once
        there is a graph, added to it (graph ids are row numbers), which stores them."""
        if self.ann is None:
            self.vectors[start : start + len(rows)] = rows
            return
        assert self.ann.ntotal == start
        self.ann.add(from_bf16(rows))
        self.vectors = _rows_of(self.ann, self.dim)

    def put(self, rec: MemoryRecord, vec: np.ndarray) -> None:
        vec = to_bf16(vec)
        with self.lock:
            old = self.row_of.get(rec.id)
            if old is not None and np.array_equal(self.vectors[old], vec):
                self._set_meta(old, rec)  # status change (current, conflicted, ...)
                self.docs[old] = record_to_proto(rec).SerializeToString()
                return
            if old is not None:
                self._tombstone(old)
            if self.n == len(self.ids):
                self._grow()
            row = self.n
            self.n += 1
            self.n_alive += 1
            self.row_of[rec.id] = row
            self.ids[row] = rec.id
            self.alive[row] = True
            self._store_rows(row, vec[None])
            self._append_strings(rec)
            self._set_meta(row, rec)
            self._index_row(row)

    def put_many(self, recs: list, vecs: np.ndarray) -> None:
        """put() of each record in order (vecs: one float32 row each); new memories are
        appended together: one conversion, one growth and one slice write per column."""
        with self.lock:
            ids = [r.id for r in recs]
            if len(set(ids)) < len(ids) or any(self.row_of.get(m) is not None for m in ids):
                for rec, vec in zip(recs, vecs, strict=True):  # updates: one at a time
                    self.put(rec, vec)
                return
            k, start = len(recs), self.n
            while start + k > len(self.ids):
                self._grow()
            end = start + k
            self._store_rows(start, to_bf16(vecs))
            self.ids[start:end] = ids
            self.alive[start:end] = True
            for row, rec in enumerate(recs, start):
                self.row_of[rec.id] = row
                self._append_strings(rec)
            self._set_meta_many(start, recs)
            self.n_alive += k
            for row in range(start, end):
                self.n = row + 1  # as put() leaves it: a row sees the rows before it
                self._index_row(row)

    def _append_strings(self, rec: MemoryRecord) -> None:
        """A new row's string columns (interned: rows of a session or user share one
        string object), its index text and its document."""
        when = rec.occur_time or rec.create_time
        self.sessions.append(sys.intern(rec.session_id))
        self.agents.append(sys.intern(rec.agent_id))
        self.users.append(sys.intern(rec.user_id))
        self.speakers.append(sys.intern(_first_name(speaker_of(rec.attributes))))
        self.texts.append(index_text(rec.type, rec.content, rec.attributes, when))
        self.docs.append(record_to_proto(rec).SerializeToString())

    def _set_meta(self, row: int, rec: MemoryRecord) -> None:
        self._set_meta_many(row, [rec])

    def _set_meta_many(self, start: int, recs: list) -> None:
        """The numeric columns of rows start.. (one slice write per column)."""
        self._version += 1
        end = start + len(recs)
        whens = [r.occur_time or r.create_time for r in recs]
        self.types[start:end] = [r.type for r in recs]
        self.when[start:end] = [w.timestamp() for w in whens]
        self.day[start:end] = [w.year * 10000 + w.month * 100 + w.day for w in whens]
        self.expire[start:end] = [r.expire_time.timestamp() if r.expire_time else INF for r in recs]
        self.current[start:end] = [r.current for r in recs]
        self.conflicted[start:end] = [
            bool(r.conflicted) or r.fact_status == pb.FACT_STATUS_CONFLICTED for r in recs
        ]
        self.importance[start:end] = [r.importance for r in recs]
        conf = [(r.attributes or {}).get("confidence") for r in recs]
        self.confidence[start:end] = [float(c) if c else 1.0 for c in conf]
        self.turn[start:end] = [r.turn_index if r.turn_index is not None else -1 for r in recs]
        self.has_time[start:end] = [has_time_expression(r.content) for r in recs]
        self.question[start:end] = [t.rstrip().endswith("?") for t in self.texts[start:end]]

    def _index_row(self, row: int) -> None:
        """BM25 documents and neighbour links. Turns arrive in order (ingest numbers them),
        so a turn's predecessors are indexed before it."""
        self.doc_turn[row] = self.bm25.add(self.texts[row], row)
        t = int(self.turn[row])
        if t < 0:
            return
        session = self.sessions[row]
        prev = self._turn_row(session, t - 1)
        if prev is not None:
            self.prev_row[row] = prev
            self.next_row[prev] = row
        nxt = self._turn_row(session, t + 1)
        if nxt is not None:
            self.next_row[row] = nxt
            self.prev_row[nxt] = row
        last = self.last_turn.get(session)
        if last is None or t >= self.turn[last]:
            self.last_turn[session] = row
        self._index_window(row)

    def _turn_row(self, session: str, t: int) -> int | None:
        """The live row of a session's turn t (the latest, if several)."""
        last = self.last_turn.get(session)
        if last is None or t > self.turn[last]:
            return None
        if t == self.turn[last]:
            return last
        rows = self._session_rows(session)
        rows = rows[self.turn[rows] == t]
        return int(rows[-1]) if len(rows) else None

    def _session_rows(self, session: str) -> np.ndarray:
        n = self.n
        m = self._codes["sessions"].equal(self.sessions, session, n) & self.alive[:n]
        return np.nonzero(m)[0]

    def _index_window(self, row: int) -> None:
        parts = []
        r = row
        for _ in range(self.lexical_window):
            r = int(self.prev_row[r])
            if r < 0:
                break
            parts.append(self.texts[r])
        if self.doc_window[row] >= 0:
            self.bm25_window.remove(int(self.doc_window[row]))
        text = " ".join([*reversed(parts), self.texts[row]])
        self.doc_window[row] = self.bm25_window.add(text, row)

    def _tombstone(self, row: int) -> None:
        self._version += 1
        self.alive[row] = False
        self.n_alive -= 1
        self.bm25.remove(int(self.doc_turn[row]))
        if self.doc_window[row] >= 0:
            self.bm25_window.remove(int(self.doc_window[row]))
        self.docs[row] = b""
        prev, nxt = int(self.prev_row[row]), int(self.next_row[row])
        if prev >= 0:
            self.next_row[prev] = -1
        if nxt >= 0:  # the next turn no longer carries this one's words
            self.prev_row[nxt] = -1
            self._index_window(nxt)
        self._scrub(row)

    def _scrub(self, row: int) -> None:
        """A tombstone keeps no content: its words leave the postings, its strings, vector
        and id are blanked (so snapshots hold none of it; a graph's storage is the vectors,
        so the graph holds none either), and a graph still linking to it is rebuilt at the
        next compaction."""
        terms = tokenize(self.texts[row])
        session = self.sessions[row]
        if self.last_turn.get(session) == row:  # the row after it in turn order takes over
            rows = self._session_rows(session)
            rows = rows[self.turn[rows] >= 0]
            if len(rows):
                turns = self.turn[rows]
                self.last_turn[session] = int(rows[np.flatnonzero(turns == turns.max())[-1]])
            else:
                del self.last_turn[session]
        self.bm25.purge(terms)
        self.bm25_window.purge(terms)
        self.texts[row] = ""
        self.vectors[row] = 0
        self.ids[row] = 0
        for name in SCOPE_COLUMNS:
            column = getattr(self, name)
            value, column[row] = column[row], ""
            if value and value in self._codes[name].lookup and value not in column:
                self._codes[name] = _Codes()  # rebuilt lazily without the gone value
        if self.ann is not None:
            self.ann_stale = True

    def remove(self, memory_id: int) -> bool:
        with self.lock:
            row = self.row_of.pop(memory_id, None)
            if row is None:
                return False
            self._tombstone(row)
            return True

    # -- approximate index ------------------------------------------------------------------

    def needs_ann(self) -> bool:
        return self.ann is None and self.n_alive > self.ann_threshold

    def needs_compaction(self) -> bool:
        return self.ann_stale or (self.n > 1000 and self.n - self.n_alive > self.n // 4)

    def build_ann(self) -> None:
        """Builds the HNSW graph from the rows, outside the lock, then swaps it in after
        adding the rows that arrived meanwhile; from then on the graph's storage holds the
        rows (`vectors` is a view of it) and the row array is freed. Rows below n0 only
        change meanwhile by a removal blanking them, so the build reads the row array in
        place (no copy) and blanks again, at the swap, the rows removed since."""
        with self.lock:
            n0 = self.n
            # A graph's storage may move when rows are added to it: then read a copy.
            vecs = self.vectors[:n0] if self.ann is None else self.vectors[:n0].copy()
            alive0 = self.alive[:n0].copy()
        index = faiss.IndexHNSWSQ(self.dim, GRAPH_STORAGE, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        storage = faiss.downcast_index(index.storage)
        storage.codes.resize(n0 * storage.code_size)  # room for n0 rows at once:
        storage.codes.resize(0)  # no doubling (and copying) of the codes while adding
        for s in range(0, n0, 1 << 16):  # widened a slice at a time
            index.add(from_bf16(vecs[s : s + (1 << 16)]))
        del vecs
        with self.lock:
            if self.n > n0:
                index.add(from_bf16(self.vectors[n0 : self.n]))
            rows = _rows_of(index, self.dim)
            gone = np.nonzero(alive0 & ~self.alive[:n0])[0]
            rows[gone] = 0  # removed during the build: blanked in the graph's storage too
            self.ann_stale = self.ann_stale or len(gone) > 0  # its links still lead there
            self.ann = index
            self.vectors = rows
        trim_heap()  # the row array and the widened slices are free now

    def compact(self) -> Partition:
        """A new partition with only the live rows (tombstones dropped, graph rebuilt)."""
        with self.lock:
            live = np.nonzero(self.alive[: self.n])[0]
            p = Partition(self.dim, self.ann_threshold, self.lexical_window, self.smoothing)
            p._load_rows(
                {name: getattr(self, name)[live] for name in COLUMNS},
                self.vectors[live],
                {name: [getattr(self, name)[i] for i in live] for name in STRINGS},
                [self.docs[i] for i in live],
            )
        if p.needs_ann():
            p.build_ann()
        return p

    def _load_rows(self, cols: dict, vectors: np.ndarray, strings: dict, docs: list[bytes]):
        """Fills an empty partition from stored columns; derived parts (BM25, links) are
        rebuilt. Rows must be in arrival order (a turn after its predecessors)."""
        self._version += 1
        n = len(vectors)
        cap = max(1, n + n // 8)  # room for some growth without a power-of-two overhang
        for name, (dt, fill) in COLUMNS.items():
            arr = np.full(cap, fill, dtype=dt)
            arr[:n] = cols[name]
            setattr(self, name, arr)
        self.vectors = np.zeros((cap, self.dim), dtype=np.uint16)
        # float32 rows: a snapshot written before vectors were held as bfloat16
        self.vectors[:n] = vectors if vectors.dtype == np.uint16 else to_bf16(vectors)
        for name in SCOPE_COLUMNS:
            setattr(self, name, [sys.intern(x) for x in strings[name]])
        self.texts = Texts(strings["texts"])
        self._codes = {name: _Codes() for name in SCOPE_COLUMNS}
        self.docs = Blobs(docs)
        self.n = n
        self.n_alive = int(self.alive[:n].sum())
        live = np.nonzero(self.alive[:n])[0]
        self.row_of = RowMap.of(self.ids[live], live)
        self.last_turn = {}
        self.bm25, self.bm25_window = BM25(), BM25()
        for name in ("prev_row", "next_row", "doc_turn", "doc_window"):
            getattr(self, name)[:] = -1
        for r in range(n):
            if self.alive[r]:
                self._index_row(r)
            else:  # a snapshot written before tombstones were scrubbed
                for name in STRINGS:
                    getattr(self, name)[r] = ""
                self.docs[r] = b""
                self.vectors[r] = 0

    # -- reads ------------------------------------------------------------------------------

    def mask(self, f: Filters, now: float) -> np.ndarray:
        n = self.n
        m = self.alive[:n] & (self.expire[:n] > now)
        if not f.include_history:
            m &= self.current[:n]
        if f.types:
            m &= np.isin(self.types[:n], list(f.types))
        if f.start > -INF:
            m &= self.when[:n] >= f.start
        if f.end < INF:
            m &= self.when[:n] < f.end
        for value, column in zip(
            (f.session_id, f.agent_id, f.user_id), SCOPE_COLUMNS[:3], strict=True
        ):
            if value:
                m &= self._codes[column].equal(getattr(self, column), value, n)
        if f.access is not None:
            m &= self._granted(f.access, n)
        return m

    def _granted(self, grants: tuple, n: int) -> np.ndarray:
        """Rows that at least one of the caller's read grants allows."""
        allowed = np.zeros(n, dtype=bool)
        for g in grants:
            ok = np.isin(self.types[:n], list(g.types)) if g.types else np.ones(n, dtype=bool)
            for values, column in (
                (g.sessions, "sessions"),
                (g.agents, "agents"),
                (g.users, "users"),
            ):
                if values:
                    col = getattr(self, column)
                    any_of = np.zeros(n, dtype=bool)
                    for v in values:
                        any_of |= self._codes[column].equal(col, v, n)
                    ok &= any_of
            allowed |= ok
        return allowed

    def _cached_mask(self, f: Filters, now: float) -> tuple[np.ndarray, int]:
        """mask(f, now) and how many rows pass, kept from the last query (call with the
        lock held; the mask is shared, never write to it): the same filters pass the same
        rows until a write to the partition, or until a row they pass expires. A query
        over a million rows otherwise paid several passes over every column."""
        key = (f.types, f.user_id, f.agent_id, f.session_id, f.start, f.end)
        key += (f.include_history, f.access)
        c = self._mask_cache
        if c is not None and c[0] == key and c[1] == (self._version, self.n):
            if c[2] <= now < c[3]:
                return c[4], c[5]
        m = self.mask(f, now)
        count = int(np.count_nonzero(m))
        until = float(self.expire[: self.n][m].min()) if count else INF
        self._mask_cache = (key, (self._version, self.n), now, until, m, count)
        return m, count

    def _lexical(self, query: str) -> np.ndarray:
        """Lexical score of every row in [0, 1]: its own BM25 and the weighted window BM25,
        each divided by the most that index could score for the query (see BM25.scores),
        so a row's score does not depend on which other rows are candidates."""
        if not query:
            return np.zeros(self.n, np.float32)
        w = self.smoothing.window_weight
        own = self.bm25.scores(query, normalise=True)[self.doc_turn[: self.n]]
        win = self.bm25_window.scores(query, normalise=True)[self.doc_window[: self.n]]
        return (own + w * win) / (1 + w)  # doc id -1 (no window) reads as 0

    def _lexical_sparse(self, query: str, m: np.ndarray) -> _Sparse:
        """_lexical's scores, the same values bit for bit, and the rows m passes scoring
        above 0; each index's postings are added straight into arrays by row (BM25.by_owner), not
        into arrays by document then read through doc_turn and doc_window, which cost
        more than anything else in a query at a million rows."""
        n, w = self.n, self.smoothing.window_weight
        if not query:
            zero = np.zeros(n, np.float32)
            return _Sparse(np.zeros(n, dtype=bool), zero, zero, w)
        own = self.bm25.by_owner(query, n, normalise=True)
        win = self.bm25_window.by_owner(query, n, normalise=True)
        evidence = own > 0
        evidence |= win > 0
        evidence &= m
        return _Sparse(evidence, own, win, w)

    def _smooth(
        self,
        m: np.ndarray,
        rows: np.ndarray,
        dense: np.ndarray,
        lex_all: np.ndarray | _Sparse,
        qvec,
        outcome: bool = False,
    ):
        """A turn's scores borrow from its neighbours that pass the filters: the next
        turn's dense score, the previous turn's lexical score. A neighbour's score is
        computed whether or not it is a candidate, so the exact and the graph path give
        a row the same score. Each is a weighted mean over the turn and the neighbour it
        has, so dense stays on the cosine's scale and lexical within [0, 1]."""
        sm = self.smoothing
        nxt = self.next_row[rows]
        has_next = nxt >= 0
        has_next[has_next] = m[nxt[has_next]]
        # rows are sorted (np.nonzero, np.union1d): find each next turn among them
        at = np.minimum(np.searchsorted(rows, nxt), max(len(rows) - 1, 0))
        at = np.where(has_next & (rows[at] == nxt), at, -1) if len(rows) else at
        d_next = np.where(at >= 0, dense[np.maximum(at, 0)], 0).astype(np.float32)
        missing = has_next & (at < 0)  # a neighbour outside the candidates (graph path)
        if missing.any():
            d_next[missing] = self._dense(nxt[missing], qvec)
        prv = self.prev_row[rows]
        has_prev = prv >= 0
        has_prev[has_prev] = m[prv[has_prev]]
        l_prev = np.where(has_prev, lex_all[np.maximum(prv, 0)], 0)
        d = (dense + sm.dense_next * d_next) / (1 + sm.dense_next * has_next)
        lx = (lex_all[rows] + sm.lexical_prev * l_prev) / (1 + sm.lexical_prev * has_prev)
        if sm.outcome and outcome:
            asked = outcome_of(self, m, rows)
            out = asked >= 0
            if out.any():
                d[out] = np.maximum(d[out], sm.outcome * self._dense(asked[out], qvec))
                lx[out] = np.maximum(lx[out], sm.outcome * lex_all[asked[out]])
        return d.astype(np.float32), lx.astype(np.float32)

    def candidates(
        self, f: Filters, now: float, qvec: np.ndarray, query: str, want: int, focus=()
    ) -> Candidates | None:
        """Exact over every row passing the filters unless the graph is in use; then the
        graph's top rows, the graph's top rows of each `focus` set (functions of the row
        count returning a mask: the rows a cue boosts) and the best lexical rows. Either
        way a row's scores are the same."""
        with self.lock:
            m, count = self._cached_mask(f, now)
            if count == 0:
                return None
            exact = self.ann is None or count <= self.ann_threshold
            if not exact:
                k = min(graph_depth(want, count), count)
                every = count == self.n == self.ann.ntotal  # no selector needed
                dense_rows = self._graph(None if every else m, qvec, k)
                exact = len(dense_rows) < k  # the graph missed some: answer exactly
                for sub in self._boosted_sets(m, focus):  # their own nearest rows too
                    n_sub = int(np.count_nonzero(sub))
                    if exact or not n_sub:
                        continue
                    if n_sub <= SMALL_SET:  # few: all of them (a sparse graph walk misses)
                        dense_rows = _union(dense_rows, np.nonzero(sub)[0])
                    else:  # as deep as the whole: a boost lifts a row past the whole's top
                        ks = min(k, n_sub)
                        dense_rows = _union(dense_rows, self._graph(sub, qvec, ks))
            outcome = bool(self.smoothing.outcome) and is_outcome_query(query)
            if exact:
                lex_all = self._lexical(query)  # every row's: all are scored
                rows = np.nonzero(m)[0]
            else:
                # Every row with lexical evidence (its best LEXICAL_CANDIDATES) competes:
                # a row without any scores at most alpha * cosine, and the graph holds the
                # best of those. So the graph path ranks nearly as the exact one does.
                lex_all = self._lexical_sparse(query, m)  # the same scores
                with_lex = lex_all.rows
                top = lexical_depth(k, count)
                if len(with_lex) > top:
                    scores = lex_all[with_lex]
                    best = with_lex[np.argpartition(-scores, top - 1)[:top]]
                    if LEXICAL_GRAPH:  # and the nearest of them past the lexical cut
                        near = self._graph(lex_all.mask, qvec, min(k, len(with_lex)))
                        best = _union(best, near)
                    with_lex = best
                rows = _union(dense_rows, with_lex)
                if NEIGHBOURS:
                    rows = self._with_neighbours(m, rows, dense_rows, outcome)
            dense = self._dense(rows, qvec)
            dense, lex = self._smooth(m, rows, dense, lex_all, qvec, outcome)
            return Candidates(rows, dense, lex, exact)

    def _boosted_sets(self, m: np.ndarray, focus) -> list[np.ndarray]:
        """Each boosted set's rows passing m, and each intersection of two or more: a row
        in several sets gets their boosts multiplied, so it can rank first with a cosine
        below the nearest rows of each set alone."""
        sets = [m & rows_of(self.n) for rows_of in focus]
        out = list(sets)
        for size in range(2, len(sets) + 1):
            for combo in itertools.combinations(sets, size):
                out.append(np.logical_and.reduce(combo))
        return out

    def _with_neighbours(
        self, m: np.ndarray, rows: np.ndarray, dense_rows: np.ndarray, outcome: bool = False
    ):
        """Smoothing lends a turn part of its next turn's dense score and of its previous
        turn's lexical one: so the turn before each dense candidate, and the turn after
        each candidate, compete too (when they pass the filters); for a question about an
        outcome, also the turn two after each (an exchange's outcome takes its question's
        scores)."""
        prv = self.prev_row[dense_rows]
        nxt = self.next_row[rows]
        more = [prv[prv >= 0], nxt[nxt >= 0]]
        if outcome:
            nxt2 = self.next_row[nxt[nxt >= 0]]
            more.append(nxt2[nxt2 >= 0])
        more = np.concatenate(more)
        more = more[m[more]]
        return _union(rows, more) if len(more) else rows

    def _graph(self, m: np.ndarray | None, qvec: np.ndarray, k: int) -> np.ndarray:
        """The graph's k nearest rows among those m passes (None: every row)."""
        if m is None:
            params = faiss.SearchParametersHNSW(efSearch=graph_ef(k))
        else:
            bitmap = np.packbits(m, bitorder="little")
            sel = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=graph_ef(k))
        _, labels = self.ann.search(qvec.reshape(1, -1), k, params=params)
        return labels[0][labels[0] >= 0]

    def _dense(self, rows: np.ndarray, qvec: np.ndarray) -> np.ndarray:
        """Inner products of rows with the query, from the bfloat16 rows. Once a quarter
        of the rows pass, one pass over all rows, widened SCAN_ROWS at a time into a
        reused buffer, is cheaper than gathering them (20k rows: about 1.6 ms, float32
        took 2.4 ms); fewer are gathered and widened at once."""
        qvec = np.asarray(qvec, dtype=np.float32)
        if 4 * len(rows) < self.n:
            return from_bf16(self.vectors[rows]) @ qvec
        n = self.n
        out = np.empty(n, np.float32)
        buf = np.empty((min(n, SCAN_ROWS), self.dim), np.uint32)
        for s in range(0, n, SCAN_ROWS):
            e = min(n, s + SCAN_ROWS)
            b = buf[: e - s]
            np.copyto(b, self.vectors[s:e])
            np.left_shift(b, 16, out=b)
            out[s:e] = b.view(np.float32) @ qvec
        return out[rows]

    def vector_rows(self, rows) -> np.ndarray:
        """The stored vectors of rows, as float32."""
        with self.lock:
            return from_bf16(self.vectors[rows])

    def speaker_names(self) -> set[str]:
        """Every speaker's first name in this partition (lowercase)."""
        with self.lock:
            codes = self._codes["speakers"]
            codes.sync(self.speakers, self.n)
            return set(codes.lookup) - {""}

    def spoken_by(self, name: str, rows: np.ndarray) -> np.ndarray:
        with self.lock:
            return self._codes["speakers"].equal(self.speakers, name, self.n)[rows]

    def asks(self, rows: np.ndarray) -> np.ndarray:
        """Turns that ask a question someone answered (a later turn of the session exists):
        the answer, not the question, is what a search for it wants. (A column, not a
        Python loop per candidate: at 100k candidates the loop took about 100 ms.)"""
        return self.question[rows] & (self.next_row[rows] >= 0)

    def doc(self, row: int) -> bytes:
        return self.docs[row]

    # -- snapshots --------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        with self.lock:
            n = self.n
            path.mkdir(parents=True)
            np.savez(
                path / "columns.npz",
                vectors=self.vectors[:n],
                **{name: getattr(self, name)[:n] for name in COLUMNS},
            )
            (path / "strings.json").write_text(
                json.dumps({name: getattr(self, name)[:n] for name in STRINGS})
            )
            offsets = np.cumsum([0] + [len(d) for d in self.docs[:n]]).astype(np.int64)
            np.save(path / "doc_offsets.npy", offsets)
            (path / "docs.bin").write_bytes(b"".join(self.docs[:n]))
            if self.ann is not None:  # its links: its storage is the vectors above
                graph_links(self.ann).tofile(path / "hnsw.faiss")

    @classmethod
    def load(
        cls, path: Path, dim: int, ann_threshold: int, lexical_window: int, smoothing=None
    ) -> Partition:
        p = cls(dim, ann_threshold, lexical_window, smoothing)
        with np.load(path / "columns.npz") as z:
            cols = {name: z[name] for name in COLUMNS}
            vectors = z["vectors"]
        strings = json.loads((path / "strings.json").read_text())
        offsets = np.load(path / "doc_offsets.npy")
        blob = (path / "docs.bin").read_bytes()
        docs = [blob[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]
        p._load_rows(cols, vectors, strings, docs)
        if (path / "hnsw.faiss").exists():
            p.attach_graph(faiss.read_index(str(path / "hnsw.faiss")))
        return p

    def attach_graph(self, graph) -> None:
        """Takes a graph read from a snapshot (one id per row, in row order), with the
        partition's rows as its storage; one that does not fit is left out (rebuilt)."""
        with self.lock:
            if graph.ntotal != self.n or graph.d != self.dim or self.ann is not None:
                log.warning("a stored graph does not fit its partition; it is rebuilt")
                return
            self.ann = _with_rows(graph, self.vectors[: self.n])
            self.vectors = _rows_of(self.ann, self.dim)
