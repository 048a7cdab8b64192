"""The default embedder is a real sentence model, loaded offline."""

from __future__ import annotations

import numpy as np

from shared.embedding import CachedEmbedder, HashEmbedder, make_embedder
from shared.settings import Settings


def test_default_embedder_is_minilm():
    assert Settings().embedder == "minilm"


def test_minilm_embeds_meaning_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    e = make_embedder("minilm")
    v = e.embed(
        [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The girl is carrying a baby.",
            "A monkey is playing drums.",
        ]
    )
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sims = v @ v.T
    assert sims[0, 1] > 0.6  # paraphrases are close
    assert sims[0, 1] > sims[0, 2] + 0.3 and sims[0, 1] > sims[0, 3] + 0.3
    # Batched and single embeddings agree.
    assert np.allclose(e.embed_one("A monkey is playing drums."), v[3], atol=1e-4)


def test_hash_embedder_and_cache_are_deterministic():
    h = HashEmbedder()
    c = CachedEmbedder(h, size=2)
    a = c.embed(["red apple", "green pear", "red apple"])
    assert np.array_equal(a[0], a[2])
    assert np.array_equal(c.embed_one("green pear"), h.embed_one("green pear"))
    assert a[0] @ h.embed_one("red apple tree") > a[0] @ h.embed_one("green pear")
