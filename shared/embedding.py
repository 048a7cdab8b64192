"""Embedders: an interface chosen by configuration (MEMLAKE_EMBEDDER).

A vector is float32, L2-normalised; its inner product with another is their cosine.
"""

from __future__ import annotations

import hashlib
import re
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict

import numpy as np

_WORD = re.compile(r"[a-z0-9]+")


class Embedder(ABC):
    name: str
    dim: int

    @abstractmethod
    def _embed(self, texts: list[str]) -> np.ndarray: ...

    def embed(self, texts: list[str]) -> np.ndarray:
        """(n, dim) float32, each row L2-normalised. Identical texts are embedded once."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique = list(dict.fromkeys(texts))
        vecs = self._embed(unique)
        pos = {t: i for i, t in enumerate(unique)}
        return vecs[[pos[t] for t in texts]]

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


class CachedEmbedder(Embedder):
    """An LRU in front of an embedder, for repeated query texts."""

    def __init__(self, inner: Embedder, size: int = 4096) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def _embed(self, texts):
        out: list[np.ndarray | None] = []
        missing = []
        with self._lock:
            for t in texts:
                v = self._lru.get(t)
                if v is not None:
                    self._lru.move_to_end(t)
                else:
                    missing.append(t)
                out.append(v)
        if missing:
            vecs = self.inner.embed(missing)
            fresh = dict(zip(missing, vecs, strict=True))
            with self._lock:
                for t, v in fresh.items():
                    self._lru[t] = v
                while len(self._lru) > self._size:
                    self._lru.popitem(last=False)
            out = [v if v is not None else fresh[t] for t, v in zip(texts, out, strict=True)]
        return np.stack(out).astype(np.float32)


class HashEmbedder(Embedder):
    """Deterministic feature hashing of words and word bigrams. For unit tests only:
    it knows no meaning, only shared words."""

    name = "hash-256"
    dim = 256

    def _embed(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            words = _WORD.findall(t.lower())
            feats = words + [a + " " + b for a, b in zip(words, words[1:], strict=False)]
            for f in feats:
                h = int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little")
                out[i, h % self.dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms


def make_embedder(
    kind: str, threads: int = 1, workers: int = 1, precision: str = "auto"
) -> Embedder:
    """workers 0 means one per core."""
    if kind == "hash":
        return HashEmbedder()
    if kind == "minilm":
        import os

        from shared.minilm import MiniLMEmbedder

        workers = workers or os.cpu_count() or 1
        return CachedEmbedder(MiniLMEmbedder(threads=threads, workers=workers, precision=precision))
    raise ValueError(f"unknown MEMLAKE_EMBEDDER {kind!r}; use 'minilm' or 'hash'")


def to_bytes(vec: np.ndarray) -> bytes:
    return np.asarray(vec, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")
