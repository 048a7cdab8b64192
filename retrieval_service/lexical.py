"""Okapi BM25 over a partition's rows, with add/remove."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict

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


class BM25:
    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self.postings: dict[str, dict[int, int]] = defaultdict(dict)
        self.doc_len: dict[int, int] = {}
        self.total_len = 0
        self._terms_of: dict[int, list[str]] = {}

    def add(self, row: int, text: str) -> None:
        if row in self.doc_len:
            self.remove(row)
        counts = Counter(tokenize(text))
        for term, tf in counts.items():
            self.postings[term][row] = tf
        n = sum(counts.values())
        self.doc_len[row] = n
        self.total_len += n
        self._terms_of[row] = list(counts)

    def remove(self, row: int) -> None:
        n = self.doc_len.pop(row, None)
        if n is None:
            return
        self.total_len -= n
        for term in self._terms_of.pop(row, []):
            p = self.postings.get(term)
            if p is not None:
                p.pop(row, None)
                if not p:
                    del self.postings[term]

    def scores(self, query: str, size: int) -> np.ndarray:
        """BM25 score of every row (array indexed by row; 0 where no term matches)."""
        out = np.zeros(size, dtype=np.float32)
        n = len(self.doc_len)
        if n == 0:
            return out
        avgdl = self.total_len / n if n else 1.0
        for term in set(tokenize(query)):
            p = self.postings.get(term)
            if not p:
                continue
            idf = math.log(1 + (n - len(p) + 0.5) / (len(p) + 0.5))
            rows = np.fromiter(p.keys(), dtype=np.int64, count=len(p))
            tf = np.fromiter(p.values(), dtype=np.float32, count=len(p))
            dl = np.fromiter((self.doc_len[r] for r in p), dtype=np.float32, count=len(p))
            out[rows] += (
                idf * tf * (self.k1 + 1) / (tf + self.k1 * (1 - self.b + self.b * dl / avgdl))
            )
        return out
