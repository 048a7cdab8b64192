"""The derived search index: partitions by scope, built by tailing the change log.

A partition holds the rows of one (tenant, user) or (tenant, agent) scope: vectors, BM25
postings and the columns filters need, so a scoped query touches only its own rows and
filters are exact (a mask applied before ranking, never after). Rows are append-only;
a removed memory leaves a tombstone that holds no content (text, scope strings, document,
vector and BM25 postings are dropped at once) until the partition is compacted. Above a size
threshold a partition also keeps an HNSW graph (faiss, graph.py) over its rows; a search
uses it with the filter mask as an IDSelector, and falls back to exact search whenever the
mask is small or the graph returns fewer hits than exist (candidates.py: what a query reads).

Vectors are held as bfloat16 (the upper half of each float32, rounded to nearest even):
half the bytes of float32, and widening them back is one integer shift, so a scan over
all rows costs no more than float32 did (numpy's float16 cast has no SIMD path here and
was 30x slower). The cosine moves by at most about 3e-4. Every dense score, on either
path, comes from these same stored vectors, so the graph and exact paths agree exactly.
Once a partition has a graph, the graph's storage (faiss QT_bf16 codes: the same bits) is
where its rows live, and `vectors` is a numpy view of it: one copy of each vector, not
the rows plus a copy of the graph's own (see graph.rows_of).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from pathlib import Path

import faiss
import numpy as np

from memlake.v1 import memory_pb2 as pb
from retrieval_service.index.candidates import (
    INF,
    Candidates,
    Filters,
    Reads,
    Smoothing,
)
from retrieval_service.index.graph import graph_links, new_graph, rows_of, with_rows
from retrieval_service.index.storage import (
    Blobs,
    RowMap,
    Texts,
    _Codes,
    from_bf16,
    to_bf16,
    trim_heap,
)
from retrieval_service.lexical import BM25, has_time_expression, tokenize
from shared.convert import record_to_proto
from shared.db.models import MemoryRecord
from shared.text import index_text, speaker_of

log = logging.getLogger("memlake.index")
__all__ = ["Candidates", "Filters", "Partition", "Smoothing", "graph_links", "partition_key"]


def partition_key(tenant: str, user_id: str, agent_id: str) -> tuple[str, str]:
    if user_id:
        return (tenant, "u:" + user_id)
    if agent_id:
        return (tenant, "a:" + agent_id)
    return (tenant, "")


def _first_name(name: str) -> str:
    return name.split()[0].lower() if name.strip() else ""


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


SCOPE_COLUMNS = ("sessions", "agents", "users", "speakers")


class Partition(Reads):
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
        self.vectors = rows_of(self.ann, self.dim)

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
        index = new_graph(self.dim)
        storage = faiss.downcast_index(index.storage)
        storage.codes.resize(n0 * storage.code_size)  # room for n0 rows at once:
        storage.codes.resize(0)  # no doubling (and copying) of the codes while adding
        for s in range(0, n0, 1 << 16):  # widened a slice at a time
            index.add(from_bf16(vecs[s : s + (1 << 16)]))
        del vecs
        with self.lock:
            if self.n > n0:
                index.add(from_bf16(self.vectors[n0 : self.n]))
            rows = rows_of(index, self.dim)
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
            self.ann = with_rows(graph, self.vectors[: self.n])
            self.vectors = rows_of(self.ann, self.dim)
