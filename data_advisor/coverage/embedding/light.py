"""A light loader for plain mean-pooling sentence-transformers models: ``tokenizers`` + transformers' BERT + torch.

Why: ``import sentence_transformers`` costs twice what the model itself needs (it imports scikit-learn, its trainer,
its multimodal processors…): measured on this machine, ~2× the import of torch + transformers' ``AutoModel``.  That
import is most of a first audit once the anchors ship embedded (``anchor_seed``), so models whose folder is exactly
``Transformer → Pooling(mean) → Normalize`` (the bundled all-MiniLM-L6-v2, and most ``all-*`` models) are run here
directly: the fast tokenizer from ``tokenizer.json`` (truncated to the folder's ``max_seq_length``), the transformer,
attention-masked mean pooling and L2 normalisation — what sentence-transformers computes for them.  Equality with
sentence-transformers is tested (``tests/coverage/test_light_st.py``: max |Δ| < 1e-5 on real prompts, long ones
included).  Anything else (other pooling, prompts, dense layers, remote code) returns ``None`` and the caller uses
sentence-transformers as before.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage.embedding.batching import BUCKET_ROWS, bucketed_batches, filled

_PLAIN_MODULES = ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                  "sentence_transformers.models.Normalize"]


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text("utf-8"))


def plain_mean_pooling_layout(folder: Path) -> int | None:
    """``max_seq_length`` when ``folder`` is a plain Transformer → mean Pooling → Normalize model, else None."""
    try:
        modules = _read_json(folder / "modules.json")
        if [m.get("type") for m in modules] != _PLAIN_MODULES or modules[0].get("path", "") != "":
            return None
        pooling = _read_json(folder / modules[1]["path"] / "config.json")
        others = ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens", "pooling_mode_lasttoken")
        if not pooling.get("pooling_mode_mean_tokens") or any(pooling.get(k) for k in others):
            return None
        st_cfg = _read_json(folder / "sentence_bert_config.json")
        if st_cfg.get("do_lower_case"):
            return None
        cfg = _read_json(folder / "config_sentence_transformers.json") if (
            folder / "config_sentence_transformers.json").exists() else {}
        if any((cfg.get("prompts") or {}).values()) or cfg.get("default_prompt_name"):
            return None
        if not (folder / "tokenizer.json").exists() or _read_json(folder / "config.json").get("auto_map"):
            return None
        return int(st_cfg.get("max_seq_length") or 512)
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


class LightMeanPoolEncoder:
    """Tokenizer + transformer + masked mean + L2 norm, in fixed-shape bucketed batches (see :mod:`.batching`)."""

    def __init__(self, folder: Path, max_seq_length: int, *, device: str = "cpu") -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        self.torch = torch
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()  # each text is padded below to a length of its own (batching.padded_length)
        self.model = AutoModel.from_pretrained(str(folder), local_files_only=True).to(device).eval()
        self.device = device
        self.dim = int(self.model.config.hidden_size)

    @classmethod
    def try_load(cls, folder: str | Path, *, device: str = "cpu") -> LightMeanPoolEncoder | None:
        folder = Path(folder)
        max_len = plain_mean_pooling_layout(folder) if folder.is_dir() else None
        return None if max_len is None else cls(folder, max_len, device=device)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        """Vectors in bucketed batches (:mod:`.batching`): every forward pass is :data:`BUCKET_ROWS` rows of one
        padded length that depends on each text alone, so a vector never depends on the other texts.
        ``batch_size`` is accepted for compatibility and changes nothing."""
        torch = self.torch
        texts = [str(t).strip() for t in texts]  # as sentence-transformers does
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encs = self.tokenizer.encode_batch(texts)
        lengths = [sum(e.attention_mask) for e in encs]
        batches: Any = list(bucketed_batches(lengths))
        if show_progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="Batches", unit="batch")
        with torch.inference_mode():
            for idx, width in batches:
                rows = filled(list(idx), BUCKET_ROWS)
                ids = torch.zeros((BUCKET_ROWS, width), dtype=torch.long)
                types = torch.zeros((BUCKET_ROWS, width), dtype=torch.long)
                mask = torch.zeros((BUCKET_ROWS, width), dtype=torch.long)
                for r, i in enumerate(rows):
                    n = int(lengths[i])
                    ids[r, :n] = torch.tensor(encs[i].ids[:n], dtype=torch.long)
                    types[r, :n] = torch.tensor(encs[i].type_ids[:n], dtype=torch.long)
                    mask[r, :n] = 1
                ids, types, mask = ids.to(self.device), types.to(self.device), mask.to(self.device)
                hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                m = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled[: len(idx)].float().cpu().numpy()
        return out
