"""Client-supplied embeddings: checked against the server's model and dimension."""

from __future__ import annotations

import math

import numpy as np

from shared.errors import InvalidArgument

# Names a client may use for the model, besides the embedder's own name.
_PREFIXES = ("", "sentence-transformers/")


def client_vector(vec, field: str, model: str, dim: int) -> np.ndarray:
    """A memlake.v1.Vector as an L2-normalised float32 array; InvalidArgument naming the
    offending field (`field`.model or `field`.values) when it does not fit."""
    if vec.model.strip().lower() not in {p + model.lower() for p in _PREFIXES}:
        raise InvalidArgument(
            f"{field}.model",
            f"is {vec.model!r}; this server's vectors come from {model!r}",
            reason="EMBEDDING_MODEL_MISMATCH",
        )
    if len(vec.values) != dim:
        raise InvalidArgument(
            f"{field}.values",
            f"has {len(vec.values)} values; {model} vectors have {dim}",
            reason="EMBEDDING_DIMENSION_MISMATCH",
        )
    arr = np.asarray(vec.values, dtype=np.float32)  # exact: the values are float32
    wide = arr.astype(np.float64)  # float32 values square within float64
    norm = math.sqrt(float(wide @ wide))  # nan or inf when a value is
    if not math.isfinite(norm):
        raise InvalidArgument(f"{field}.values", "must be finite numbers")
    if norm == 0.0:
        raise InvalidArgument(f"{field}.values", "must not be all zero")
    return (wide / norm).astype(np.float32)
