"""What a query reads of a partition (Partition inherits Reads): the filter mask, each
row's lexical and dense scores, the neighbour smoothing, and the candidate rows, exact or
by the graph. A row's scores are the same on either path."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import faiss
import numpy as np

from retrieval_service.index.outcome import outcome_of
from retrieval_service.index.storage import from_bf16
from retrieval_service.lexical import is_outcome_query

INF = float("inf")
# On the graph path, how many rows with lexical evidence are scored besides the graph's.
LEXICAL_CANDIDATES = 2048
SMALL_SET = 2048  # a boosted set this small is scored whole instead of walked in the graph
NEIGHBOURS = True  # the turns next to candidates compete too (see _with_neighbours)
# When more rows have lexical evidence than are taken by it, the graph's nearest among
# them compete too: a row with some words of the query and a good cosine.
LEXICAL_GRAPH = True
SCAN_ROWS = 1024  # rows widened at a time by a full scan (stays in the L2 cache)
FILTER_COLUMNS = ("sessions", "agents", "users")  # the scope columns a filter names


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


class Reads:
    """A partition's reads for a query (the rows and columns are Partition's)."""

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
            (f.session_id, f.agent_id, f.user_id), FILTER_COLUMNS, strict=True
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
