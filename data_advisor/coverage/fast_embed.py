"""Faster embedding backends: a static model distilled locally from the transformer, and a cascade.

Why: embedding is ~90% of an audit on a CPU (~150 prompts/s with all-MiniLM-L6-v2 on 2 cores), so a million
prompts take hours. Two backends trade a little fidelity for a lot of speed, and both say what they trade.

``static``  A *static* (token-lookup) model distilled from the bundled transformer with the Model2Vec recipe
            (https://github.com/MinishLab/model2vec): every word piece of the tokenizer's vocabulary is passed
            through the transformer as ``[CLS] token [SEP]`` and mean-pooled; the table is weighted with
            SIF-from-Zipf weights (rank = vocabulary id); a sentence is the weighted mean of its word pieces,
            L2-normalised. No PCA by default, so static vectors stay in the transformer's own 384-d output
            space (needed by the cascade, which mixes both kinds of vectors). Distillation runs once, offline,
            from the bundled model's own files (~1 min on 2 cores) and is cached under
            ``<cache root>/static/``. It is implemented here rather than by calling ``model2vec.distill``
            because model2vec's ``distill`` extra pins ``transformers<5.4``, which conflicts with the
            project's lock; inference needs only ``tokenizers`` and numpy (both already dependencies).

``cascade`` Static first; the transformer re-embeds only the prompts whose static anchor decision is not
            confident (see :class:`CascadeEmbedder`). Agreement with the transformer is high by construction and
            the share re-embedded is reported (``CascadeEmbedder.last``).

Both implement the :class:`~data_advisor.coverage.embed.Embedder` protocol and carry their own ``model_id``
so the disk cache never mixes their vectors with the transformer's.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from data_advisor import _env
from data_advisor.coverage.embed import DEFAULT_MODEL, Embedder, SentenceTransformerEmbedder, notice, resolve_model
from data_advisor.errors import DataAdvisorError, InputError

T = TypeVar("T")

#: Bump when the distillation recipe or the stored format changes (old cached tables are then rebuilt).
STATIC_FORMAT = 1
#: Word pieces never used by real text (BERT's ``[unusedN]`` slots) are left out of the table.
_REMOVE_TOKENS = re.compile(r"\[unused\d+\]")
#: SIF coefficient of the Model2Vec recipe (weight = a / (a + p(rank)), p from Zipf's law).
DEFAULT_SIF = 1e-4
#: The files of a distilled static model folder (their sha256 sums are kept in its meta.json).
STATIC_FILES = ("vectors.npy", "token_rows.npy", "tokenizer.json")
#: The files of an exported ONNX model folder.
ONNX_FILES = ("fp32.onnx", "int8.onnx", "tokenizer.json")


def static_root() -> Path:
    """Where distilled static tables are cached: ``<DATA_ADVISOR_CACHE>/static``."""
    return _env.cache_root() / "static"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sif_weights(n: int, sif: float | None) -> np.ndarray:
    """Model2Vec's weights: Zipf probability from the vocabulary rank, then SIF ``a / (a + p)``."""
    if sif is None:
        return np.ones(n, dtype=np.float64)
    inv_rank = 1.0 / np.arange(2, n + 2, dtype=np.float64)
    p = inv_rank / inv_rank.sum()
    return sif / (sif + p)


def distill_static(model_path: str | Path, out_dir: str | Path, *, base_model_id: str = "", sif: float | None = DEFAULT_SIF,
                   batch_size: int = 512, show_progress: bool = False) -> Path:
    """Distil a static token table from a local sentence-transformers/BERT-style model folder into ``out_dir``.

    Writes ``vectors.npy`` (float32, one row per kept word piece, already SIF-weighted), ``token_rows.npy``
    (vocabulary id → table row, −1 for dropped tokens), ``tokenizer.json`` and ``meta.json``. Never touches the
    network: the model and its tokenizer are read from ``model_path`` with ``local_files_only``.
    """
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    from data_advisor.io import save_npy_atomic, write_json_atomic

    model_path = Path(model_path)
    tok_file = model_path / "tokenizer.json"
    if not tok_file.exists():
        raise InputError(f"cannot distil a static model from {model_path}: it has no tokenizer.json",
                         "use --embedder st with this model, or a model folder that ships a fast tokenizer")
    tokenizer = Tokenizer.from_file(str(tok_file))
    vocab = tokenizer.get_vocab()  # token -> id
    n_vocab = max(vocab.values()) + 1
    special = {t for t in ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]")}
    cls_id, sep_id = vocab.get("[CLS]"), vocab.get("[SEP]")
    keep = sorted(i for t, i in vocab.items() if not _REMOVE_TOKENS.fullmatch(t) and t not in special - {"[UNK]"})
    with torch.inference_mode():
        model = AutoModel.from_pretrained(str(model_path), local_files_only=True)
        model.eval()
        prefix = [cls_id] if cls_id is not None else []
        suffix = [sep_id] if sep_id is not None else []
        rows: list[np.ndarray] = []
        it = range(0, len(keep), batch_size)
        if show_progress:
            from tqdm import tqdm

            it = tqdm(it, desc="distilling static table", unit="batch")
        for start in it:
            ids = torch.tensor([[*prefix, t, *suffix] for t in keep[start : start + batch_size]], dtype=torch.long)
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids))
            rows.append(out.last_hidden_state.float().mean(dim=1).numpy())
    table = np.concatenate(rows).astype(np.float64)
    table *= _sif_weights(len(table), sif)[:, None]
    token_rows = np.full(n_vocab, -1, dtype=np.int64)
    token_rows[np.asarray(keep)] = np.arange(len(keep))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_npy_atomic(out_dir / "vectors.npy", table.astype(np.float32))
    save_npy_atomic(out_dir / "token_rows.npy", token_rows)
    (out_dir / "tokenizer.json").write_bytes(tok_file.read_bytes())
    max_len = 256
    with contextlib.suppress(OSError, ValueError, KeyError):
        max_len = int(json.loads((model_path / "sentence_bert_config.json").read_text("utf-8"))["max_seq_length"])
    write_json_atomic(out_dir / "meta.json", {
        "format": STATIC_FORMAT, "recipe": "model2vec (mean of [CLS] t [SEP] outputs, SIF-from-Zipf weights, no PCA)",
        "base_model_id": base_model_id, "sif": sif, "dim": int(table.shape[1]), "n_tokens": len(keep),
        "max_tokens": max_len, "sha256": _file_digests(out_dir, STATIC_FILES),
    })
    return out_dir


def _model_folder(root: Path, base_id: str, key: str) -> Path:
    """Folder of a derived model artefact: a readable stem of the base model plus a hash of ``key``."""
    short = re.sub(r"[^A-Za-z0-9]+", "-", base_id.split("@")[0].split("/")[-1]).strip("-")[:40]
    return root / f"{short}-{_short_hash(key)}"


def _file_digests(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """sha256 of each named file of an artefact folder (read in 1 MiB blocks; ~0.2 s for the fp32 ONNX model)."""
    from data_advisor.io import file_sha256

    return {name: file_sha256(folder / name) for name in names}


class _ArtefactDamaged(Exception):
    """Internal: an artefact folder's meta.json, a checksum or a file load failed; the folder is rebuilt."""


def _artefact_meta(meta: Path, fmt: int, base_id: str) -> dict[str, Any] | None:
    """The folder's meta.json when it says format ``fmt`` built from ``base_id``; None when missing or stale (an
    older format: rebuilt without fuss). Raises :class:`_ArtefactDamaged` when it cannot be read."""
    if not meta.exists():
        return None
    try:
        m = json.loads(meta.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        raise _ArtefactDamaged("meta.json is not valid JSON") from None
    if not isinstance(m, dict):
        raise _ArtefactDamaged("meta.json is not a JSON object")
    return m if m.get("format") == fmt and m.get("base_model_id") == base_id else None


def _verify_digests(folder: Path, meta: dict[str, Any], names: Sequence[str]) -> None:
    """Compare the files with the checksums meta.json recorded when they were built (folders built before
    checksums existed have none: loading them is then the only check)."""
    sums = meta.get("sha256")
    if sums is None:
        return
    if not isinstance(sums, dict):
        raise _ArtefactDamaged("meta.json's checksums are unreadable")
    try:
        got = _file_digests(folder, [n for n in names if n in sums])
    except OSError as exc:
        raise _ArtefactDamaged(f"a file cannot be read ({exc.strerror or exc})") from None
    bad = [n for n in got if got[n] != sums[n]]
    if bad:
        raise _ArtefactDamaged(f"{', '.join(bad)} changed since it was built")


def _load_artefact(folder: Path, *, fmt: int, base_id: str, files: Sequence[str], what: str,
                   build: Callable[[], None], load: Callable[[dict[str, Any]], T]) -> T:
    """Build the folder if missing or stale, check its files against meta.json's checksums, then ``load`` it.

    A damaged folder (meta.json unreadable, a checksum mismatch, a file that fails to load) is moved aside
    (``<folder>.damaged-<time>``) and built again, said in one line on stderr; if even the rebuilt folder fails,
    one-line :class:`InputError`. ``build`` raises InputError itself when it cannot build (a hub model).
    """
    lock = folder.parent / f".{folder.name}.lock"
    meta_path = folder / "meta.json"

    def attempt() -> T:
        with _file_lock(lock):
            meta = _artefact_meta(meta_path, fmt, base_id)
            if meta is None:
                build()
                meta = _artefact_meta(meta_path, fmt, base_id)
                if meta is None:
                    raise _ArtefactDamaged("meta.json was not written")
            _verify_digests(folder, meta, files)
        try:
            return load(meta)
        except DataAdvisorError:
            raise
        except Exception as exc:  # tokenizers, numpy, onnxruntime: each has its own error types for a bad file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise _ArtefactDamaged(f"it cannot be loaded: {first}") from None

    try:
        return attempt()
    except _ArtefactDamaged as exc:
        reason = str(exc)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    aside = folder.with_name(f"{folder.name}.damaged-{stamp}-{os.getpid()}")
    with _file_lock(lock):
        try:
            if folder.exists():
                os.replace(folder, aside)
        except OSError as exc:
            raise InputError(f"the {what} in {folder} is damaged ({reason}) and cannot be moved aside",
                             f"delete {folder} (it is rebuilt from the bundled model): {exc.strerror or exc}") from None
    notice(f"the {what} in {folder} was damaged ({reason}): moved it to {aside.name} and building it again "
           "(delete the damaged copy when done)")
    try:
        return attempt()
    except _ArtefactDamaged as exc:
        raise InputError(f"the {what} in {folder} cannot be loaded even after rebuilding it ({exc})",
                         f"delete {folder} and retry, or use --embedder st") from None


class StaticEmbedder:
    """Static (token-lookup) embedder distilled from a transformer; distils and caches on first use.

    ``model`` is what ``--model`` names (``default`` = the bundled MiniLM). Texts are tokenised with the
    transformer's own word-piece tokenizer (no special tokens, truncated like the transformer) and embedded as
    the mean of their token rows, L2-normalised.
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, sif: float | None = DEFAULT_SIF, root: Path | None = None,
                 batch_size: int = 4096) -> None:
        self.model = model
        self.sif = sif
        self.batch_size = batch_size
        self._load_path, self._base_id, self._local = resolve_model(model)
        self._model_id = f"static[{STATIC_FORMAT},sif={sif}]:{self._base_id}"
        self._root = root
        self._table: np.ndarray | None = None
        self._rows: np.ndarray | None = None
        self._tok: Any = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def folder(self) -> Path:
        return _model_folder(self._root or static_root(), self._base_id, self._model_id)

    def _ensure(self) -> None:
        if self._table is not None:
            return
        with self._lock:
            if self._table is not None:
                return
            def build() -> None:
                if not self._local:
                    raise InputError(
                        f"the static embedder distils from a local model; {self.model!r} is not a local folder",
                        "use --model default (bundled) or a local sentence-transformers folder with --embedder "
                        "static/cascade, or --embedder st for hub models",
                    )
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                distill_static(self._load_path, folder, base_model_id=self._base_id, sif=self.sif)

            def load(m: dict[str, Any]) -> tuple[Any, np.ndarray, np.ndarray]:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
                tok.no_padding()
                tok.enable_truncation(max_length=int(m.get("max_tokens", 256)))
                rows = np.load(folder / "token_rows.npy", allow_pickle=False)
                table = np.load(folder / "vectors.npy", allow_pickle=False)
                if (rows.ndim != 1 or table.ndim != 2 or not np.isfinite(table).all()
                        or int(rows.max(initial=-1)) >= len(table) or table.shape[1] != int(m.get("dim", table.shape[1]))):
                    raise ValueError("the token table does not match its row map or holds non-finite numbers")
                return tok, rows, table

            folder = self.folder
            self._tok, self._rows, self._table = _load_artefact(
                folder, fmt=STATIC_FORMAT, base_id=self._base_id, files=STATIC_FILES, what="static embedding model",
                build=build, load=load)

    @property
    def dim(self) -> int:
        self._ensure()
        return int(self._table.shape[1])  # type: ignore[union-attr]

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self._ensure()
        table, rows, tok = self._table, self._rows, self._tok
        assert table is not None and rows is not None
        out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            encs = tok.encode_batch(chunk, add_special_tokens=False)
            lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
            ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64, count=int(lens.sum()))
            r = rows[ids] if len(ids) else ids
            valid = r >= 0
            counts = np.bincount(np.repeat(np.arange(len(chunk)), lens)[valid], minlength=len(chunk))
            vecs = np.zeros((len(chunk), table.shape[1]), dtype=np.float32)
            nonempty = counts > 0
            if nonempty.any():
                starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nonempty]
                # Sum of token rows per text; the mean's divisor cancels in the normalisation.
                vecs[nonempty] = np.add.reduceat(table[r[valid]], starts, axis=0)
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out[start : start + len(chunk)] = vecs / np.maximum(norms, 1e-12)
        return out


# ------------------------------------------------------------------------------------------------ ONNX
#: Bump when the export/optimisation recipe changes.
ONNX_FORMAT = 1
ONNX_VARIANTS = ("fp32", "int8")


def onnx_root() -> Path:
    """Where exported ONNX models are cached: ``<DATA_ADVISOR_CACHE>/onnx``."""
    return _env.cache_root() / "onnx"


def export_onnx(model_path: str | Path, out_dir: str | Path, *, base_model_id: str = "") -> Path:
    """Export a local BERT-style sentence-transformers model (mean pooling + normalisation inside the graph) to
    ONNX, fuse it with ONNX Runtime's transformer optimiser (attention, skip-layer-norm, bias-GELU) and write a
    dynamically quantised int8 copy. Offline: reads only ``model_path``."""
    import warnings

    import torch
    from transformers import AutoConfig, AutoModel

    from data_advisor.io import write_json_atomic

    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        from onnxruntime.transformers import optimizer
    except ImportError:
        raise InputError("the onnx embedders need onnxruntime and onnx", 'pip install "data-advisor[fast]"') from None
    model_path = Path(model_path)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = AutoConfig.from_pretrained(str(model_path), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_path), local_files_only=True, attn_implementation="eager").eval()

    class _Pooled(torch.nn.Module):  # what sentence-transformers computes: mean over real tokens, then L2 norm
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            h = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(h.dtype)
            v = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(v, p=2, dim=1)

    raw = out_dir / "raw.onnx"
    ids = torch.ones((2, 8), dtype=torch.long)
    axes = {k: {0: "batch", 1: "seq"} for k in ("input_ids", "attention_mask", "token_type_ids")}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Pooled(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(raw),
                          input_names=list(axes), output_names=["embedding"],
                          dynamic_axes={**axes, "embedding": {0: "batch"}}, opset_version=17, dynamo=False)
    opt = optimizer.optimize_model(str(raw), model_type="bert", num_heads=int(cfg.num_attention_heads),
                                   hidden_size=int(cfg.hidden_size), opt_level=1)
    fused = {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}
    opt.save_model_to_file(str(out_dir / "fp32.onnx"))
    import logging

    import onnx

    root_logger = logging.getLogger()
    level = root_logger.level
    root_logger.setLevel(logging.ERROR)  # the quantiser logs advice about calibration pre-processing at WARNING
    try:
        quantize_dynamic(str(out_dir / "fp32.onnx"), str(out_dir / "int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root_logger.setLevel(level)
    raw.unlink()
    (out_dir / "tokenizer.json").write_bytes((model_path / "tokenizer.json").read_bytes())
    max_len = 256
    with contextlib.suppress(OSError, ValueError, KeyError):
        max_len = int(json.loads((model_path / "sentence_bert_config.json").read_text("utf-8"))["max_seq_length"])
    write_json_atomic(out_dir / "meta.json", {"format": ONNX_FORMAT, "base_model_id": base_model_id,
                                              "dim": int(cfg.hidden_size), "max_tokens": max_len, "fused": fused,
                                              "sha256": _file_digests(out_dir, ONNX_FILES)})
    return out_dir


class OnnxEmbedder:
    """The bundled transformer run by ONNX Runtime: exported once (offline), graph-fused, optionally int8.

    ``variant="fp32"`` reproduces sentence-transformers' vectors (cosine ≥ 0.99999); ``"int8"`` is dynamically
    quantised (faster, less exact: see benchmarks/scale.py for its anchor agreement).
    """

    def __init__(self, model: str = DEFAULT_MODEL, *, variant: str = "fp32", batch_size: int = 64,
                 threads: int | None = None, root: Path | None = None) -> None:
        if variant not in ONNX_VARIANTS:
            raise ValueError(f"variant must be one of {ONNX_VARIANTS}")
        self.model = model
        self.variant = variant
        self.batch_size = batch_size
        self.threads = threads
        self._load_path, self._base_id, self._local = resolve_model(model)
        self._model_id = f"onnx[{ONNX_FORMAT},{variant}]:{self._base_id}"
        self._root = root
        self._sess: Any = None
        self._tok: Any = None
        self._dim = 0
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def folder(self) -> Path:
        return _model_folder(self._root or onnx_root(), self._base_id, f"{ONNX_FORMAT}:{self._base_id}")

    def _ensure(self) -> None:
        if self._sess is not None:
            return
        with self._lock:
            if self._sess is not None:
                return
            try:
                import onnxruntime as ort
            except ImportError:
                raise InputError("the onnx embedders need onnxruntime", 'pip install "data-advisor[fast]"') from None

            def build() -> None:
                if not self._local:
                    raise InputError(f"the onnx embedder exports a local model; {self.model!r} is not one",
                                     "use --model default (bundled) or a local folder, or --embedder st")
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                export_onnx(self._load_path, folder, base_model_id=self._base_id)

            def load(m: dict[str, Any]) -> tuple[Any, Any, int]:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
                tok.no_padding()
                tok.enable_truncation(max_length=int(m.get("max_tokens", 256)))
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                so.intra_op_num_threads = self.threads or _cpu_threads()
                so.inter_op_num_threads = 1
                so.log_severity_level = 3
                sess = ort.InferenceSession(str(folder / f"{self.variant}.onnx"), so, providers=["CPUExecutionProvider"])
                return sess, tok, int(m["dim"])

            folder = self.folder
            self._sess, self._tok, self._dim = _load_artefact(
                folder, fmt=ONNX_FORMAT, base_id=self._base_id, files=ONNX_FILES, what="ONNX embedding model",
                build=build, load=load)

    @property
    def dim(self) -> int:
        self._ensure()
        return self._dim

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        self._ensure()
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        if not len(texts):
            return out
        encs = self._tok.encode_batch(list(texts))
        lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
        order = np.argsort(lens, kind="stable")  # length-sorted batches: least padding
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc=f"embedding ({self.variant} onnx)", unit="prompt")
        for start in range(0, len(texts), self.batch_size):
            idx = order[start : start + self.batch_size]
            width = int(lens[idx].max())
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros_like(ids)
            for r, j in enumerate(idx):
                row = encs[j].ids
                ids[r, : len(row)] = row
                mask[r, : len(row)] = 1
            out[idx] = self._sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0]
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return out


def _cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


# --------------------------------------------------------------------------------------------- cascade
#: Default share of prompts (at least ``CALIBRATION_MIN``) embedded exactly to calibrate the cascade.
CALIBRATION_SHARE = 0.02
CALIBRATION_MIN = 2000
#: The cascade picks its confidence threshold so that the estimated share of prompts keeping the exact
#: embedder's anchor decision is at least this (estimated out-of-fold on the calibration sample).
DEFAULT_TARGET_AGREEMENT = 0.995


@dataclass
class CascadeStats:
    """What the last :meth:`CascadeEmbedder.encode` did."""

    n: int = 0
    n_exact: int = 0  # embedded by the exact stage (calibration sample included)
    n_calibration: int = 0
    threshold: float = 0.0  # confidence below which a prompt was re-embedded exactly
    estimated_agreement: float = 1.0  # out-of-fold estimate on the calibration sample
    map_cosine: float = 0.0  # mean cosine of mapped static vs exact vectors (out-of-fold, calibration sample)
    mode: str = "exact"  # "exact" (no anchors or a small input) or "cascade"

    @property
    def exact_share(self) -> float:
        return self.n_exact / self.n if self.n else 0.0


def _ridge(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    xb = np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)]).astype(np.float64)
    gram = xb.T @ xb
    gram[np.diag_indices_from(gram)] += lam
    return np.linalg.solve(gram, xb.T @ y.astype(np.float64)).astype(np.float32)


def _apply_map(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    m = x @ w[:-1] + w[-1]
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


class CascadeEmbedder:
    """Static first, the exact transformer only where the anchor decision is in doubt.

    Anchor-aware by design (an embedding cascade cannot know "confident" without the anchors): call
    :meth:`set_anchors` with the audit's :class:`~data_advisor.coverage.assign.AnchorSet` (built with *this*
    embedder, so the anchors themselves are exact vectors) before encoding prompts. Then ``encode``:

    1. embeds every prompt with the static model (thousands per second);
    2. embeds a seeded calibration sample exactly (``calibration_share`` of the prompts, at least
       ``calibration_min``) and fits a ridge-regression map from static to exact vectors on it, so every output
       vector lives in the exact model's space (clustering, duplicates and Vendi stay meaningful);
    3. scores each mapped vector against the anchors; its *confidence* is the smallest of the distances to the
       three decision boundaries (runner-up principle margin, harm-vs-background margin, ``min_score``);
    4. picks the lowest confidence threshold whose out-of-fold agreement on the calibration sample is at least
       ``target_agreement``, and re-embeds exactly every prompt under it.

    So a prompt's anchor decision is the exact model's unless the mapped static vector was confidently on one
    side of every boundary. Without anchors, or for inputs no larger than the calibration sample, every prompt
    is embedded exactly. ``last`` reports the share re-embedded and the estimated agreement.
    """

    encodes_whole_input = True
    """It calibrates on a sample of what it is given (and chunks internally): wrappers pass every text at once."""

    def __init__(self, fast: Embedder, exact: Embedder, *, target_agreement: float = DEFAULT_TARGET_AGREEMENT,
                 calibration_share: float = CALIBRATION_SHARE, calibration_min: int = CALIBRATION_MIN,
                 seed: int = 0, chunk_size: int = 50_000) -> None:
        self.fast = fast
        self.exact = exact
        self.target_agreement = target_agreement
        self.calibration_share = calibration_share
        self.calibration_min = calibration_min
        self.seed = seed
        self.chunk_size = chunk_size
        self._assigner: Any = None
        self.last = CascadeStats()

    @property
    def model_id(self) -> str:
        return (f"cascade[{self.fast.model_id} > {self.exact.model_id}]"
                f"@target={self.target_agreement},cal={self.calibration_share}/{self.calibration_min},seed={self.seed}")

    @property
    def dim(self) -> int:
        return self.exact.dim

    def set_anchors(self, anchors: Any, *, margin_threshold: float | None = None, min_score: float | None = None,
                    use_background: bool = True) -> None:
        """The anchors (exact vectors) and assignment settings that define a "confident" decision."""
        from data_advisor.coverage.assign import DEFAULT_MARGIN_THRESHOLD, DEFAULT_MIN_SCORE, AnchorAssigner

        self._assigner = AnchorAssigner(
            margin_threshold=DEFAULT_MARGIN_THRESHOLD if margin_threshold is None else margin_threshold,
            min_score=DEFAULT_MIN_SCORE if min_score is None else min_score, use_background=use_background,
        ).fit(anchors)

    def _confidence(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(confidence, decision) of each vector: decision = principle index, or −1 when unanchored."""
        a = self._assigner.assign(vectors)
        conf = np.minimum(a.margin, np.abs(a.score - self._assigner.min_score))
        if a.settings.get("use_background"):
            conf = np.minimum(conf, np.abs(a.relevance - self._assigner.margin_threshold))
        return conf, np.where(a.anchored, a.best, -1)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        n = len(texts)
        m = min(n, max(self.calibration_min, round(self.calibration_share * n)))
        if self._assigner is None or n <= m:
            self.last = CascadeStats(n=n, n_exact=n, mode="exact")
            return self.exact.encode(texts, show_progress=show_progress)
        rng = np.random.default_rng(self.seed)
        cal = np.sort(rng.choice(n, size=m, replace=False))
        out = np.zeros((n, self.dim), dtype=np.float32)
        out[cal] = self.exact.encode([texts[i] for i in cal], show_progress=show_progress)
        x_cal = self.fast.encode([texts[i] for i in cal])
        # Out-of-fold mapped vectors of the calibration sample → threshold for the target agreement.
        folds = rng.permutation(m) % 2
        mapped = np.zeros_like(out[cal])
        for f in (0, 1):
            w = _ridge(x_cal[folds != f], out[cal][folds != f], lam=1e-4 * m)
            mapped[folds == f] = _apply_map(x_cal[folds == f], w)
        conf, dec = self._confidence(mapped)
        _, exact_dec = self._confidence(out[cal])
        wrong = dec != exact_dec
        order = np.argsort(-conf, kind="stable")  # most confident first
        wrong_kept = np.cumsum(wrong[order])  # wrong decisions kept if the top-k most confident stay static
        ok = np.where(1.0 - wrong_kept / m >= self.target_agreement)[0]
        if len(ok) == 0:  # not even the most confident prompt may stay static
            threshold = float("inf")
        else:
            k = int(ok[-1])  # the k+1 most confident may stay static: the threshold is the next one's confidence
            threshold = float(conf[order[k + 1]]) if k + 1 < m else float("-inf")
        est = 1.0 - float(wrong[conf > threshold].sum()) / m  # prompts at or under the threshold are re-embedded
        map_cos = float((mapped * out[cal]).sum(1).mean())
        w = _ridge(x_cal, out[cal], lam=1e-4 * m)
        is_cal = np.zeros(n, dtype=bool)
        is_cal[cal] = True
        rest = np.where(~is_cal)[0]
        n_exact = m
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(rest), desc="cascade (static → exact)", unit="prompt")
        for start in range(0, len(rest), self.chunk_size):
            idx = rest[start : start + self.chunk_size]
            v = _apply_map(self.fast.encode([texts[i] for i in idx]), w)
            c, _ = self._confidence(v)
            redo = c <= threshold
            if redo.any():
                v[redo] = self.exact.encode([texts[i] for i in idx[redo]])
                n_exact += int(redo.sum())
            out[idx] = v
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        self.last = CascadeStats(n=n, n_exact=n_exact, n_calibration=m, threshold=threshold,
                                 estimated_agreement=est, map_cosine=map_cos, mode="cascade")
        return out


# ------------------------------------------------------------------------------------------- factory
#: ``--embedder`` choices.
EMBEDDERS = ("st", "onnx", "onnx-int8", "static", "cascade")


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def make_fast_embedder(kind: str, model: str = DEFAULT_MODEL, *, cache_dir: Path | None, batch_size: int = 64,
                       seed: int = 0) -> Any:
    """The ``--embedder`` backends other than ``st``, each behind a :class:`CachedEmbedder`.

    ``cache_dir`` None disables the disk cache. ``static`` never uses the disk cache (embedding is faster than
    looking vectors up); ``cascade`` caches its exact stage under that stage's own model id (shared with
    ``--embedder onnx``/``st`` runs) and recomputes its cheap static stage.
    """
    from data_advisor.coverage.embed import CachedEmbedder

    if kind == "onnx":
        return CachedEmbedder(OnnxEmbedder(model, variant="fp32", batch_size=batch_size), cache_dir)
    if kind == "onnx-int8":
        return CachedEmbedder(OnnxEmbedder(model, variant="int8", batch_size=batch_size), cache_dir)
    if kind == "static":
        return CachedEmbedder(StaticEmbedder(model), None)
    if kind == "cascade":
        exact_inner: Embedder = (OnnxEmbedder(model, variant="fp32", batch_size=batch_size) if onnx_available()
                                 else SentenceTransformerEmbedder(model, batch_size=batch_size))
        exact = CachedEmbedder(exact_inner, cache_dir)
        return CachedEmbedder(CascadeEmbedder(StaticEmbedder(model), exact, seed=seed), None)
    raise InputError(f"unknown embedder {kind!r}", f"use one of {', '.join(EMBEDDERS)}")


def attach_anchors(embedder: Any, anchors: Any, *, margin_threshold: float | None = None,
                   min_score: float | None = None, use_background: bool = True) -> bool:
    """Give an anchor-aware embedder (the cascade, possibly inside a CachedEmbedder) its anchors; returns
    whether it was one. Call it after ``build_anchors(taxonomy, embedder, ...)`` and before encoding prompts."""
    target = embedder
    while target is not None:
        hook = getattr(target, "set_anchors", None)
        if callable(hook):
            hook(anchors, margin_threshold=margin_threshold, min_score=min_score, use_background=use_background)
            return True
        target = getattr(target, "inner", None)
    return False


def describe(embedder: Any) -> str | None:
    """One line on what a cascade did in its last call (None for other embedders)."""
    target = embedder
    while target is not None and not isinstance(target, CascadeEmbedder):
        target = getattr(target, "inner", None)
    if target is None or target.last.n == 0:
        return None
    s = target.last
    if s.mode != "cascade":
        why = "no anchors" if target._assigner is None else "input no larger than the calibration sample"
        return f"cascade: all {s.n:,} prompts embedded exactly ({why})"
    return (f"cascade: {s.n_exact:,} of {s.n:,} prompts ({s.exact_share:.1%}) embedded exactly "
            f"(calibration sample {s.n_calibration:,}); estimated agreement with the exact model {s.estimated_agreement:.2%}")
