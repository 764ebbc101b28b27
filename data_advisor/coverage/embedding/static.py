"""``--embedder static``: a token-lookup model distilled locally from the transformer (the Model2Vec recipe).

Why: embedding is ~90% of an audit on a CPU (~150 prompts/s with all-MiniLM-L6-v2 on 2 cores), so a million
prompts take hours; a static model embeds thousands per second, at the cost of fidelity (a quick look only).

Every word piece of the tokenizer's vocabulary is passed through the transformer as ``[CLS] token [SEP]`` and
mean-pooled (https://github.com/MinishLab/model2vec); the table is weighted with SIF-from-Zipf weights (rank =
vocabulary id); a sentence is the weighted mean of its word pieces, L2-normalised.  No PCA, so static vectors stay in
the transformer's own 384-d space (the cascade mixes both kinds).  Distillation runs once, offline, from the bundled
model's own files (~1 min on 2 cores) and is cached under ``<cache root>/static/``.

Hand-written, not library calls: ``model2vec.distill`` needs model2vec's ``distill`` extra, which pins
``transformers<5.4`` against the project's lock (and model2vec is not installed); sentence-transformers'
``StaticEmbedding`` can hold the distilled table, but its ``from_distillation`` calls that same model2vec code, and
inference here needs only ``tokenizers`` and numpy (no torch import for a quick look).  A text none of whose word
pieces has a row (only ``[UNK]``, e.g. emoji-only prompts) gets a zero vector, as model2vec gives it: such texts are
not embeddable, and a shared ``[UNK]`` vector would make them all near-duplicates of each other.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor import _env
from data_advisor.coverage.embedding.artefacts import file_digests, load_artefact, model_folder
from data_advisor.coverage.embedding.base import EmbedderBase
from data_advisor.coverage.embedding.models import DEFAULT_MODEL, offline_hub, resolve_model
from data_advisor.errors import InputError

#: Bump when the distillation recipe or the stored format changes (old cached tables are then rebuilt).
STATIC_FORMAT = 1
#: Word pieces never used by real text (BERT's ``[unusedN]`` slots) are left out of the table.
_REMOVE_TOKENS = re.compile(r"\[unused\d+\]")
#: SIF coefficient of the Model2Vec recipe (weight = a / (a + p(rank)), p from Zipf's law).
DEFAULT_SIF = 1e-4
#: The files of a distilled static model folder (their sha256 sums are kept in its meta.json).
STATIC_FILES = ("vectors.npy", "token_rows.npy", "tokenizer.json")


def static_root() -> Path:
    """Where distilled static tables are cached: ``<DATA_ADVISOR_CACHE>/static``."""
    return _env.cache_root() / "static"



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
        "max_tokens": max_len, "sha256": file_digests(out_dir, STATIC_FILES),
    })
    return out_dir



class StaticEmbedder(EmbedderBase):
    """Static (token-lookup) embedder distilled from a transformer; distils and caches on first use.

    ``[UNK]`` word pieces are left out of the mean, as model2vec does; a text with no other word piece gets a zero
    vector (not embeddable: it scores 0 against every anchor and is nobody's near-duplicate).

    ``model`` is what ``--model`` names (``default`` = the bundled MiniLM). Texts are tokenised with the
    transformer's own word-piece tokenizer (no special tokens, truncated like the transformer) and embedded as
    the mean of their token rows, L2-normalised.
    """

    backend = "static"

    def __init__(self, embedding_model: str = DEFAULT_MODEL, *, sif: float | None = DEFAULT_SIF, root: Path | None = None,
                 batch_size: int = 4096) -> None:
        self.embedding_model = self.model = embedding_model
        self.sif = sif
        self.batch_size = batch_size
        self._load_path, self._base_id, self._local = resolve_model(embedding_model)
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
        return model_folder(self._root or static_root(), self._base_id, self._model_id)

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
                with offline_hub():
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
            self._tok, self._rows, self._table = load_artefact(
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
        unk = tok.token_to_id("[UNK]")
        out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            chunk = list(texts[start : start + self.batch_size])
            encs = tok.encode_batch(chunk, add_special_tokens=False)
            lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
            ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64, count=int(lens.sum()))
            r = rows[ids] if len(ids) else ids
            valid = (r >= 0) & (ids != unk) if unk is not None else r >= 0  # [UNK] carries no meaning: no row
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

