"""Okapi BM25 over a partition's rows. Postings are append-only numpy buffers; removed rows
stay in them and are dropped by the caller's mask (a compaction rebuilds them)."""

from __future__ import annotations

import math
import re
from collections import Counter

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")
STOPWORDS = frozenset(
    "a an and are as at be but by did do does for from had has have he her his how i if in "
    "into is it its me my of on or our she so than that the their them then there these they "
    "this to was we were what when where which who whom why will with would you your".split()
)


def _stem(w: str) -> str:
    # A light suffix stripper: enough to join plurals and simple verb forms.
    for suf in ("ing", "edly", "ed", "ies", "es", "s"):
        if len(w) > len(suf) + 2 and w.endswith(suf):
            return w[: -len(suf)] + ("y" if suf == "ies" else "")
    return w


def tokenize(text: str) -> list[str]:
    return [_stem(w) for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS]


class _Postings:
    __slots__ = ("rows", "tfs", "pending_rows", "pending_tfs")

    def __init__(self) -> None:
        self.rows = np.zeros(0, dtype=np.int64)
        self.tfs = np.zeros(0, dtype=np.float32)
        self.pending_rows: list[int] = []
        self.pending_tfs: list[int] = []

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.pending_rows:
            self.rows = np.concatenate([self.rows, np.asarray(self.pending_rows, np.int64)])
            self.tfs = np.concatenate([self.tfs, np.asarray(self.pending_tfs, np.float32)])
            self.pending_rows, self.pending_tfs = [], []
        return self.rows, self.tfs


class BM25:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.postings: dict[str, _Postings] = {}
        self.doc_len = np.zeros(64, dtype=np.float32)
        self.live = np.zeros(64, dtype=bool)
        self.n_live = 0
        self.total_len = 0.0

    def _ensure(self, row: int) -> None:
        if row >= len(self.doc_len):
            cap = max(row + 1, len(self.doc_len) * 2)
            self.doc_len = np.concatenate(
                [self.doc_len, np.zeros(cap - len(self.doc_len), np.float32)]
            )
            self.live = np.concatenate([self.live, np.zeros(cap - len(self.live), bool)])

    def add(self, row: int, text: str) -> None:
        """Indexes a new row (a row is indexed once; changed text means a new row)."""
        self._ensure(row)
        counts = Counter(tokenize(text))
        for term, tf in counts.items():
            p = self.postings.get(term)
            if p is None:
                p = self.postings[term] = _Postings()
            p.pending_rows.append(row)
            p.pending_tfs.append(tf)
        n = float(sum(counts.values()))
        self.doc_len[row] = n
        self.live[row] = True
        self.n_live += 1
        self.total_len += n

    def remove(self, row: int) -> None:
        if row < len(self.live) and self.live[row]:
            self.live[row] = False
            self.n_live -= 1
            self.total_len -= float(self.doc_len[row])

    def scores(self, query: str, size: int) -> np.ndarray:
        """BM25 score of every row (indexed by row; 0 where no term matches)."""
        out = np.zeros(size, dtype=np.float32)
        if self.n_live == 0:
            return out
        avgdl = max(self.total_len / self.n_live, 1.0)
        for term in set(tokenize(query)):
            p = self.postings.get(term)
            if p is None:
                continue
            rows, tf = p.arrays()
            df = max(int(self.live[rows].sum()), 1)
            idf = math.log(1 + (self.n_live - df + 0.5) / (df + 0.5))
            dl = self.doc_len[rows]
            out[rows] += (
                idf * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * dl / avgdl))
            )
        out[: min(size, len(self.live))] *= self.live[: min(size, len(self.live))]
        return out
