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


def test_chosen_path_matches_fp32_reference_vectors():
    """The path picked for this CPU gives the original model's vectors within a tolerance:
    reference vectors from the fp32 weights (bench/minilm_reference.py)."""
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "data" / "minilm_fp32_reference.json").read_text())
    want = np.asarray(ref["vectors"], dtype=np.float32)
    e = make_embedder("minilm")
    got = e.embed(ref["texts"])
    cos = (got * want).sum(axis=1)
    assert cos.min() > 0.99, cos  # measured: >= 0.9993, 0.9964 for the two-token "ok"
    # Similarities between texts, what ranking uses, move by less than 0.02.
    assert np.abs(got @ got.T - want @ want.T).max() < 0.02


def test_parallel_workers_give_the_same_vectors():
    from shared.minilm import MiniLMEmbedder

    texts = [f"turn {i}: " + "word " * (i % 17) + "end" for i in range(150)]
    one = MiniLMEmbedder(workers=1)._embed(texts)
    two = MiniLMEmbedder(workers=2)._embed(texts)
    assert np.allclose(one, two, atol=1e-6)


def test_precision_is_fp32_wherever_installed():
    """Issue 8: fp32 cost fewer CPU-seconds per text than "int8" with AVX-512/VNNI/AMX and
    with AVX2 kernels alike, so "auto" no longer follows the CPU's int8 flags."""
    from shared.cpu import choose_precision, parse_cpuinfo

    both = ["int8", "fp32", "q8"]
    for flags in ({"avx2", "avx512_vnni"}, {"avx2", "avx_vnni"}, {"avx2", "avx512f"},
                  {"avx2", "fma"}, {"amx_int8", "avx512f"}, set()):  # fmt: skip
        assert choose_precision(frozenset(flags), both)[0] == "fp32"
    assert choose_precision(frozenset({"avx512_vnni"}), ["int8"]) == (
        "int8",
        "only int8 is installed",
    )
    assert choose_precision(frozenset({"avx2"}), ["q8"])[0] == "q8"  # never a missing one
    # From /proc/cpuinfo text: an AVX2-only EPYC (Zen 2, issue 8's) and a Zen 4.
    zen2 = (
        "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse2 ssse3 fma sse4_1 "
        "sse4_2 avx f16c avx2 bmi2 sha_ni\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B12\n"
    )
    zen4 = "model name\t: AMD EPYC 9B14\nflags\t\t: fpu avx avx2 fma avx512f avx512bw avx512_vnni\n"
    model, flags = parse_cpuinfo(zen2)
    assert model == "AMD EPYC 7B12" and "avx2" in flags and "avx512f" not in flags
    assert choose_precision(flags, both) == ("fp32", "exact vectors, fewest CPU-seconds per "
                                             "text (measured with AVX2)")  # fmt: skip
    assert choose_precision(parse_cpuinfo(zen4)[1], both)[0] == "fp32"


def _reference():
    import json
    from pathlib import Path

    ref = json.loads((Path(__file__).parent / "data" / "minilm_fp32_reference.json").read_text())
    return ref["texts"], np.asarray(ref["vectors"], dtype=np.float32)


def test_fp32_path_gives_the_original_vectors(tmp_path, monkeypatch):
    """The fp32 graph built from the original weights gives the numpy reference's vectors,
    one text at a time and padded in one batch; forcing a precision is honoured."""
    from shared.minilm import MiniLMEmbedder, available_precisions

    monkeypatch.setenv("MEMLAKE_MODEL_CACHE", str(tmp_path))
    assert "fp32" in available_precisions()
    e = MiniLMEmbedder(precision="fp32")
    assert e.precision == "fp32" and e.why == "configured"
    texts, want = _reference()
    batched = e._run(texts)  # one batch: every text padded to the longest
    single = np.stack([e._run([t])[0] for t in texts])
    for got in (batched, single):
        cos = (got * want).sum(axis=1)
        assert cos.min() >= 0.9999, cos  # measured: 0.999999
    assert len(list(tmp_path.glob("*.onnx"))) == 1


def test_int8_and_fp32_paths_agree():
    """The two carried paths rank alike: per-text cosine and pairwise similarities."""
    from shared.minilm import MiniLMEmbedder

    texts, _ = _reference()
    texts = texts + [
        f"Caroline: turn {i} about " + "painting and hiking " * (i % 7) for i in range(20)
    ]
    a = MiniLMEmbedder(precision="int8")._embed(texts)
    b = MiniLMEmbedder(precision="fp32")._embed(texts)
    assert (a * b).sum(axis=1).min() > 0.99
    assert np.abs(a @ a.T - b @ b.T).max() < 0.02


def test_fp32_model_cache_is_rebuilt_when_missing_or_corrupt(tmp_path, monkeypatch):
    from shared import minilm_onnx

    monkeypatch.setenv("MEMLAKE_MODEL_CACHE", str(tmp_path))
    path = minilm_onnx.fp32_model_path()
    assert path.parent == tmp_path and path.stat().st_size > 80_000_000
    good = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    assert minilm_onnx.fp32_model_path() == path and path.stat().st_mtime_ns == mtime  # reused
    path.write_bytes(good[: len(good) // 2])  # a torn or damaged file
    assert minilm_onnx.fp32_model_path() == path and path.read_bytes() == good
    path.unlink()
    assert minilm_onnx.fp32_model_path() == path and path.read_bytes() == good
    assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind


def test_q8_path_stays_near_the_original_vectors(tmp_path, monkeypatch):
    """Dynamic int8 arithmetic (opt-in, MEMLAKE_EMBED_PRECISION=q8) moves vectors more than
    the other paths; this bounds how much. Measured: cosine >= 0.985, pairwise <= 0.041."""
    from shared.minilm import MiniLMEmbedder

    monkeypatch.setenv("MEMLAKE_MODEL_CACHE", str(tmp_path))
    texts, want = _reference()
    got = MiniLMEmbedder(precision="q8")._embed(texts)
    assert (got * want).sum(axis=1).min() > 0.98
    assert np.abs(got @ got.T - want @ want.T).max() < 0.05
    assert got[0] @ got[1] > max(got[0] @ got[2], got[0] @ got[3]) + 0.3  # paraphrases
    assert {p.name.split("-")[-2] for p in tmp_path.glob("*.onnx")} == {"fp32", "q8"}


def test_cpu_info_reports_the_precision_that_runs():
    """Benches print cpu_info beside their figures: a forced precision is the one shown."""
    from shared.cpu import cpu_info

    both = ["int8", "fp32", "q8"]
    assert cpu_info(both)["chosen"] == "fp32"
    forced = cpu_info(both, setting="q8")
    assert forced["chosen"] == "q8" and "MEMLAKE_EMBED_PRECISION" in forced["why"]
