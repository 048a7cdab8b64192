"""Okapi BM25 with append-only numpy postings, and the query cues ranking uses.

Documents get ids in their own dense space; a removed document is masked out by `live`,
and `purge` drops it from the postings of the terms it had (its owner passes them).
Tokenizer, stop words and stemmer were chosen by measurement on LoCoMo (bench/locomo.py).
"""

from __future__ import annotations

import math
import re
from array import array
from collections import Counter
from functools import lru_cache

import numpy as np

BM25_K1, BM25_B = 0.9, 0.4

STOPWORDS = frozenset(
    """
a about above after again against all am an and any are aren't as at be because
been before being below between both but by can can't cannot could couldn't did
didn't do does doesn't doing don't down during each few for from further had
hadn't has hasn't have haven't having he he'd he'll he's her here here's hers
herself him himself his how how's i i'd i'll i'm i've if in into is isn't it it's
its itself let's me more most mustn't my myself no nor not of off on once only or
other ought our ours ourselves out over own same shan't she she'd she'll she's
should shouldn't so some such than that that's the their theirs them themselves
then there there's these they they'd they'll they're they've this those through
to too under until up very was wasn't we we'd we'll we're we've were weren't what
what's when when's where where's which while who who's whom why why's with won't
would wouldn't you you'd you'll you're you've your yours yourself yourselves
also just really get got yeah oh wow hey now
""".replace("'", " ").split()
) - {"won"}  # contractions split at the apostrophe; "won" stays (as in "won a prize")

_TOKEN = re.compile(r"[^\W_]+")
_VOWEL = re.compile(r"[aeiouy]")


# Bounded: about 135 bytes an entry, so 200k took 27 MB (a quarter of the index of 100k
# memories with unique words); the stemmer itself takes about 1 us a word.
@lru_cache(maxsize=1 << 12)
def stem(w: str) -> str:
    """A conservative suffix stripper: painting/paints/painted -> paint."""
    if len(w) <= 3 or w.isdigit():
        return w
    for suf, rep in (("ies", "y"), ("ied", "y"), ("sses", "ss"), ("xes", "x"),
                     ("ches", "ch"), ("shes", "sh")):  # fmt: skip
        if w.endswith(suf) and len(w) - len(suf) >= 2:
            return w[: -len(suf)] + rep
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    for suf in ("ingly", "edly", "ing", "ed", "ly"):
        if w.endswith(suf):
            base = w[: -len(suf)]
            if len(base) >= 3 and _VOWEL.search(base):
                if len(base) >= 4 and base[-1] == base[-2] and base[-1] not in "lsz":
                    base = base[:-1]
                return base
            break
    if w.endswith("e") and len(w) >= 4:
        w = w[:-1]
    return w


def tokenize(text: str) -> list[str]:
    return [stem(t) for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


_NO_DOCS = np.zeros(0, dtype=np.int32)
_NO_TFS = np.zeros(0, dtype=np.uint16)
TF_MAX = np.iinfo(np.uint16).max  # a term's count in one document, saturating


class _Postings:
    """A term's postings: numpy arrays once scored, and the postings added since in two
    compact arrays; either way 6 bytes a posting (int32 doc, uint16 tf), where two lists
    of ints took ~70. A term with a single posting (most terms of a small partition, and
    rare words) holds it as one int (doc << 16 | tf) instead of two arrays (~250 bytes)."""

    __slots__ = ("docs", "tfs", "one", "new_docs", "new_tfs")

    def __init__(self) -> None:
        self.docs = _NO_DOCS
        self.tfs = _NO_TFS
        self.one: int | None = None
        self.new_docs: array | None = None
        self.new_tfs: array | None = None

    def add(self, doc: int, tf: int) -> None:
        tf = min(tf, TF_MAX)
        if self.new_docs is None:
            if self.one is None and not len(self.docs):
                self.one = (doc << 16) | tf
                return
            self.new_docs, self.new_tfs = array("i"), array("H")
            if self.one is not None:
                self.new_docs.append(self.one >> 16)
                self.new_tfs.append(self.one & TF_MAX)
                self.one = None
        self.new_docs.append(doc)
        self.new_tfs.append(tf)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self.one is not None:  # decoded at each use: stays one int
            return (np.array([self.one >> 16], np.int32), np.array([self.one & TF_MAX], np.uint16))
        if self.new_docs:
            self.docs = np.concatenate([self.docs, np.frombuffer(self.new_docs, np.int32)])
            self.tfs = np.concatenate([self.tfs, np.frombuffer(self.new_tfs, np.uint16)])
            self.new_docs = self.new_tfs = None
        return self.docs, self.tfs

    def set(self, docs: np.ndarray, tfs: np.ndarray) -> None:
        """Replaces the postings (the caller took them from arrays())."""
        self.new_docs = self.new_tfs = None
        if len(docs) == 1:
            self.one, self.docs, self.tfs = (int(docs[0]) << 16) | int(tfs[0]), _NO_DOCS, _NO_TFS
        else:
            self.one, self.docs, self.tfs = None, docs, tfs


class BM25:
    def __init__(self, k1: float = BM25_K1, b: float = BM25_B) -> None:
        self.k1, self.b = k1, b
        self.postings: dict[str, _Postings] = {}
        self.doc_len = np.zeros(1, dtype=np.float32)
        self.live = np.zeros(1, dtype=bool)
        self.owner = np.full(1, -1, dtype=np.int32)  # what the caller keys a document by
        self.n_docs = 0
        self.n_live = 0
        self.total_len = 0.0

    def add(self, text: str, owner: int = -1) -> int:
        """Indexes a document; returns its id. owner: what the caller keys the document by
        (a partition's row): by_owner() scores by it instead of by document id."""
        doc = self.n_docs
        if doc == len(self.doc_len):
            self.doc_len = np.concatenate([self.doc_len, np.zeros(doc, np.float32)])
            self.live = np.concatenate([self.live, np.zeros(doc, bool)])
            self.owner = np.concatenate([self.owner, np.full(doc, -1, np.int32)])
        self.n_docs += 1
        self.owner[doc] = owner
        counts = Counter(tokenize(text))
        for term, tf in counts.items():
            p = self.postings.get(term)
            if p is None:
                p = self.postings[term] = _Postings()
            p.add(doc, tf)
        n = float(sum(counts.values()))
        self.doc_len[doc] = n
        self.live[doc] = True
        self.n_live += 1
        self.total_len += n
        return doc

    def remove(self, doc: int) -> None:
        if 0 <= doc < self.n_docs and self.live[doc]:
            self.live[doc] = False
            self.n_live -= 1
            self.total_len -= float(self.doc_len[doc])

    def purge(self, terms) -> None:
        """Drops removed documents from these terms' postings, and terms left without any
        (so a forgotten text's words leave the index, not only its scores)."""
        for term in set(terms):
            p = self.postings.get(term)
            if p is None:
                continue
            docs, tfs = p.arrays()
            keep = self.live[docs]
            if keep.all():
                continue
            if not keep.any():
                del self.postings[term]
            else:
                p.set(docs[keep], tfs[keep])

    def _terms(self, query: str) -> tuple[list, float]:
        """Each query term's postings as (documents, score contributions), and the most a
        document could score (every term at saturation: the sum of idf * (k1 + 1))."""
        if self.n_live == 0:
            return [], 0.0
        avgdl = max(self.total_len / self.n_live, 1.0)
        k1, b = self.k1, self.b
        bound = 0.0
        out = []
        all_live = self.n_live == self.n_docs
        for term, qtf in Counter(tokenize(query)).items():
            p = self.postings.get(term)
            if p is None:
                continue
            docs, tfs = p.arrays()
            tf = tfs.astype(np.float32)
            df = max(len(docs) if all_live else int(self.live[docs].sum()), 1)
            idf = qtf * math.log(1 + (self.n_live - df + 0.5) / (df + 0.5))
            bound += idf * (k1 + 1)
            # k1 * (1 - b + b * doc_len / avgdl), then idf * tf * (k1 + 1) / (tf + norm):
            # the same operations in the same order, in place (a term can have a million
            # postings)
            norm = self.doc_len[docs]
            np.multiply(norm, b, out=norm)
            np.divide(norm, avgdl, out=norm)
            np.add(norm, 1 - b, out=norm)
            np.multiply(norm, k1, out=norm)
            np.add(norm, tf, out=norm)
            add = np.multiply(tf, idf)
            np.multiply(add, k1 + 1, out=add)
            np.divide(add, norm, out=add)
            out.append((docs, add))
        return out, bound

    def scores(self, query: str, normalise: bool = False) -> np.ndarray:
        """BM25 score of every document id (0 where no term matches or removed), plus a
        trailing 0 so that doc id -1 ("no document") reads as 0.

        normalise: divided by the most any document could score for this query (every
        matching term at saturation, tf -> infinity: the sum of idf * (k1 + 1)), so in
        [0, 1]. That bound does not depend on which documents are candidates, so a
        normalised score compares across queries and search paths."""
        out = np.zeros(self.n_docs + 1, dtype=np.float32)
        terms, bound = self._terms(query)
        if not terms:
            return out
        for docs, add in terms:
            # A term lists a document once, so a plain indexed add is exact (and several
            # times faster than np.add.at on a term with many documents).
            out[docs] += add
        out[: self.n_docs] *= self.live[: self.n_docs]
        if normalise and bound > 0:
            out /= bound
        return out

    def by_owner(self, query: str, n: int, normalise: bool = False) -> np.ndarray:
        """The score of each owner 0..n-1 (see add; 0 for an owner without a live document
        scoring above 0): the values scores() gives their live documents, bit for bit (the
        same float32 operations in the same order), where scores() is indexed by document
        id. Each term's postings are added straight into the owners' array: no array of
        every document to fill and then read through a map of every owner, so at a
        million documents it costs a third as much. An owner has at most one live
        document (a partition's row: its text, or its current window)."""
        out = np.zeros(n, dtype=np.float32)
        terms, bound = self._terms(query)
        all_live = self.n_live == self.n_docs
        for docs, add in terms:  # in the order scores() adds them
            if not all_live:  # a removed document scores 0 there
                keep = self.live[docs]
                docs, add = docs[keep], add[keep]
            out[self.owner[docs]] += add  # a term lists a document once
        if normalise and bound > 0:
            out /= bound
        return out


# -- query cues -----------------------------------------------------------------------------

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december"]  # fmt: skip
_MONTH = "|".join(MONTHS + [m[:3] for m in MONTHS if m != "may"] + ["sept"])
_TIME = re.compile(
    r"\b(yesterday|today|tonight|tomorrow|ago|recently|lately|weekend|"
    r"last (?:night|week|month|year|weekend|summer|winter|spring|fall|time|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday)|"
    r"next (?:week|month|year|weekend)|this (?:morning|week|month|year|weekend|past)|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"(?:19|20)\d\d|" + _MONTH + r")\b",
    re.I,
)
_TEMPORAL_Q = re.compile(
    r"^\s*when\b|\bwhen (?:did|was|is|will|does|do|were|has|had)\b|"
    r"\bwhat (?:year|month|date|day|time)\b|\bhow long\b|\bwhich (?:year|month|day)\b",
    re.I,
)
_DATES = [
    re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(" + _MONTH + r")[a-z]*\.?,?\s+(\d{4})\b", re.I),
    re.compile(r"\b(" + _MONTH + r")[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})\b", re.I),
]


_HOWTO_Q = re.compile(
    r"^\s*how (?:do|should|can|could|would) (?:i|we|you)\b|\bhow to\b|\bwhat are the steps\b",
    re.I,
)


_QUESTION = re.compile(
    r"\?\s*$|^\s*(?:what|when|where|who|whom|whose|which|why|how|is|are|was|were|do|does|"
    r"did|can|could|should|would|will|has|have|had)\b",
    re.I,
)


def is_question(q: str) -> bool:
    """A question (a question mark, or a question word or auxiliary first), as opposed to
    a lookup by words ("buy milk") or a remark."""
    return _QUESTION.search(q) is not None


_OUTCOME_Q = re.compile(r"\b(did|didn't|worked)\b", re.I)


def is_outcome_query(q: str) -> bool:
    """A question about what came of something ("how did she fix it", "what did he buy",
    "what worked"): the turn that reports what was done answers, not the advice before it."""
    return _OUTCOME_Q.search(q) is not None and is_question(q)


def is_howto_query(q: str) -> bool:
    """A question asking for a procedure ("how do I ...", "how to ..."): a SKILL answers."""
    return _HOWTO_Q.search(q) is not None


def has_time_expression(text: str) -> bool:
    return _TIME.search(text) is not None


def is_temporal_query(q: str) -> bool:
    return _TEMPORAL_Q.search(q) is not None


def _month(m: str) -> int:
    return [x[:3] for x in MONTHS].index(m.lower()[:3]) + 1


def query_days(text: str) -> set[int]:
    """Full dates written in the text, as yyyymmdd integers."""
    out = set()
    for m in _DATES[0].finditer(text):
        out.add(int(m.group(3)) * 10000 + _month(m.group(2)) * 100 + int(m.group(1)))
    for m in _DATES[1].finditer(text):
        out.add(int(m.group(3)) * 10000 + _month(m.group(1)) * 100 + int(m.group(2)))
    return out


def first_names(text: str) -> set[str]:
    return set(_TOKEN.findall(text.lower()))


def without_owner(query: str, owner: str) -> str:
    """The query without the name of the scope's owner (a user or agent id written as a
    word, possessive included): every memory of the scope is about its owner, so the name
    tells them apart no better than noise ("who did alice meet" in alice's memories asks
    "who did meet"), while it pulls towards the few memories that spell it out. Kept when
    nothing else would be left."""
    if not owner or not owner.strip():
        return query
    pattern = re.compile(r"(?<![\w-])" + re.escape(owner.strip()) + r"(?:'s|’s)?(?![\w-])", re.I)
    stripped = " ".join(pattern.sub(" ", query).split())
    return stripped if _TOKEN.search(stripped) else query
