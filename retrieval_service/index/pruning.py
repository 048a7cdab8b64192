"""The best lexical rows of a large partition without scoring every row (MaxScore).

A row's lexical score is the sum, over the query's terms in its own BM25 document and in
its window document, of what each term adds (Partition._lexical). What a term can add
to any row has an upper bound (lexical.QueryTerm.upper), known without reading its
postings. Once some rows' exact scores are known, the score the `top`-th best row has
at least (theta) is known too; the terms whose bounds, summed from the smallest, stay
below theta cannot lift a row holding only them into the top. Only rows holding one of
the other terms are candidates, and only those are scored (exactly, with every term).
The common terms (a speaker's name is in half of the turns) are the long postings and
the small bounds, so they are the ones skipped.

Scores are the exhaustive path's, sum for sum in the same order (BM25.scores_of)."""

from __future__ import annotations

import numpy as np

from retrieval_service.lexical import QueryTerm


class LexicalQuery:
    """One query's lexical scores over one partition (read under its lock)."""

    def __init__(self, part, query: str) -> None:
        self.p = part
        self.w = part.smoothing.window_weight
        self.own, self.own_bound = part.bm25.query_terms(query)
        self.win, self.win_bound = part.bm25_window.query_terms(query)
        # Per index, from the last _scored: each document's normalised score, and which
        # documents' scores are complete (the others got only some of their terms).
        self._known: list[tuple[np.ndarray, np.ndarray] | None] = [None, None]

    def postings(self) -> int:
        """The query terms' postings in both indexes: what scoring every row reads."""
        return sum(len(t.docs) for t in self.own) + sum(len(t.docs) for t in self.win)

    def at(self, rows: np.ndarray) -> np.ndarray:
        """Partition._lexical(query)[rows] without scoring the other rows (row -1: 0)."""
        p, w = self.p, self.w
        rows = np.asarray(rows, dtype=np.int64)
        safe = np.maximum(rows, 0)
        parts = []
        for i, (terms, bound, index, docs) in enumerate(
            (
                (self.own, self.own_bound, p.bm25, p.doc_turn[safe]),
                (self.win, self.win_bound, p.bm25_window, p.doc_window[safe]),
            )
        ):
            known = self._known[i]
            if known is None:
                parts.append(index.scores_of(terms, bound, docs))
                continue
            acc, done = known
            out = acc[docs]  # doc -1: acc's last entry, 0
            todo = ~done[docs]
            if todo.any():
                out[todo] = index.scores_of(terms, bound, docs[todo])
            parts.append(out)
        out = (parts[0] + w * parts[1]) / (1 + w)
        out[rows < 0] = 0
        return out

    def _lists(self) -> list[tuple[float, QueryTerm, object]]:
        """(upper bound on the row score it adds, term, index) per term and index."""
        w, out = self.w, []
        for terms, bound, index, share in (
            (self.own, self.own_bound, self.p.bm25, 1.0),
            (self.win, self.win_bound, self.p.bm25_window, w),
        ):
            if bound > 0:
                scale = share / (bound * (1 + w))
                out.extend((t.upper * scale, t, index) for t in terms)
        return out

    def _scored(self, rows: np.ndarray, full: set[int]) -> np.ndarray:
        """at(rows) for many rows: the terms in `full` (whose every row is among these)
        are added for all their documents into one array per index, the others looked
        up for these rows' documents only; term by term in query order, as scores() adds
        them, so each of these rows gets the same sum."""
        p, w = self.p, self.w
        parts = []
        for i, (terms, bound, index, docs) in enumerate(
            (
                (self.own, self.own_bound, p.bm25, p.doc_turn[rows]),
                (self.win, self.win_bound, p.bm25_window, p.doc_window[rows]),
            )
        ):
            acc = np.zeros(index.n_docs + 1, dtype=np.float32)  # [-1]: no document
            sdocs = np.sort(docs[docs >= 0])  # distinct: rows are, and each has one doc
            for t in terms:
                if id(t) in full:
                    acc[t.docs] += index._contribution(t, t.docs, t.tfs)
                    continue
                at = np.searchsorted(t.docs, sdocs)
                np.minimum(at, len(t.docs) - 1, out=at)
                hit = t.docs[at] == sdocs
                if hit.any():
                    acc[sdocs[hit]] += index._contribution(t, sdocs[hit], t.tfs[at[hit]])
            acc[: index.n_docs] *= index.live[: index.n_docs]
            if bound > 0:
                acc /= bound
            acc[-1] = 0
            done = np.zeros(index.n_docs + 1, dtype=bool)
            done[sdocs] = True
            done[-1] = True
            self._known[i] = (acc, done)
            parts.append(acc[docs])
        return (parts[0] + w * parts[1]) / (1 + w)

    @staticmethod
    def _rows(t: QueryTerm, index, m: np.ndarray) -> np.ndarray:
        """The rows passing m whose live document holds t."""
        live = index.live[t.docs]
        rows = index.owner[t.docs[live]]
        rows = rows[rows >= 0]
        return rows[m[rows]]

    def best(self, m: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """(rows, scores, pruned): rows passing m with a lexical score above 0, with their
        scores, among them every row that could be among the `top` best; pruned: rows with
        lower scores were left out (else these are all the rows with lexical evidence)."""
        lists = sorted(self._lists(), key=lambda x: -x[0])
        seen = np.zeros(len(m), dtype=bool)
        cand: list[np.ndarray] = []
        count, used = 0, 0
        # What the strongest terms add to their rows: a lower bound of each row's score.
        part = np.zeros(len(m), dtype=np.float32)
        for _, t, index in lists:  # the strongest terms' rows until there are enough
            live = index.live[t.docs]
            docs = t.docs[live]
            rows = index.owner[docs]
            ok = (rows >= 0) & m[np.maximum(rows, 0)]
            rows, docs = rows[ok], docs[ok]
            share = self.w if index is self.p.bm25_window else 1.0
            bound = self.win_bound if index is self.p.bm25_window else self.own_bound
            tfs = t.tfs[np.flatnonzero(live)[ok]]
            part[rows] += index._contribution(t, docs, tfs) * (share / (bound * (1 + self.w)))
            new = rows[~seen[rows]]
            seen[new] = True
            cand.append(new)
            count += len(new)
            used += 1
            if count >= top:
                break
        rows = np.concatenate(cand) if cand else np.zeros(0, np.int64)
        full = {id(t) for _, t, _ in lists[:used]}
        pruned = False
        if used < len(lists) and len(rows) >= top:
            low = part[rows]
            theta = float(np.partition(low, len(low) - top)[len(low) - top])
            rest = lists[used:]  # the weaker terms: skip those summing below theta
            skip, total = 0, 0.0
            for upper, _, _ in reversed(rest):
                if total + upper >= theta * (1 - 1e-5):
                    break
                total += upper
                skip += 1
            more = []
            for _, t, index in rest[: len(rest) - skip]:
                r = self._rows(t, index, m)
                more.append(r[~seen[r]])
                seen[r] = True
                full.add(id(t))
            pruned = skip > 0
            rows = np.concatenate([rows, *more])
        scores = self._scored(rows, full)
        keep = scores > 0
        return rows[keep], scores[keep], pruned
