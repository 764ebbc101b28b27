"""``--embedder onnx`` / ``onnx-int8``: the transformer exported to ONNX Runtime (fused; optionally int8).

``fp32`` reproduces sentence-transformers' vectors (cosine ≥ 0.99999) faster on a CPU; ``int8`` is dynamically
quantised (faster still, less exact: see benchmarks/scale.py for its anchor agreement).

Hand-written export, not sentence-transformers' ``backend="onnx"``: that path exports through optimum, which is
not installed and not in the lock, and its graph stops at the token embeddings (pooling stays in torch), while this
export puts mean pooling and normalisation inside the graph so inference needs only onnxruntime and tokenizers,
never torch; the fusion (attention, skip-layer-norm, bias-GELU) and the int8 copy use onnxruntime's own tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor import _env
from data_advisor.coverage.embedding.artefacts import file_digests, load_artefact, model_folder
from data_advisor.coverage.embedding.base import EmbedderBase
from data_advisor.coverage.embedding.batching import BUCKET_ROWS, bucketed_batches, filled
from data_advisor.coverage.embedding.models import DEFAULT_MODEL, offline_hub, resolve_model
from data_advisor.errors import InputError

#: The files of an exported ONNX model folder.
ONNX_FILES = ("fp32.onnx", "int8.onnx", "tokenizer.json")
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
                                              "sha256": file_digests(out_dir, ONNX_FILES)})
    return out_dir


class OnnxEmbedder(EmbedderBase):
    """The bundled transformer run by ONNX Runtime: exported once (offline), graph-fused, optionally int8.

    ``variant="fp32"`` reproduces sentence-transformers' vectors (cosine ≥ 0.99999); ``"int8"`` is dynamically
    quantised (faster, less exact: see benchmarks/scale.py for its anchor agreement).
    """

    def __init__(self, embedding_model: str = DEFAULT_MODEL, *, variant: str = "fp32", batch_size: int = 64,
                 threads: int | None = None, root: Path | None = None) -> None:
        if variant not in ONNX_VARIANTS:
            raise ValueError(f"variant must be one of {ONNX_VARIANTS}")
        self.embedding_model = self.model = embedding_model
        self.variant = variant
        self.backend = "onnx" if variant == "fp32" else "onnx-int8"
        self.batch_size = batch_size
        self.threads = threads
        self._load_path, self._base_id, self._local = resolve_model(embedding_model)
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
        return model_folder(self._root or onnx_root(), self._base_id, f"{ONNX_FORMAT}:{self._base_id}")

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
                with offline_hub():
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
            self._sess, self._tok, self._dim = load_artefact(
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
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(texts), desc=f"embedding ({self.variant} onnx)", unit="prompt")
        # Bucketed batches (see .batching): BUCKET_ROWS rows of one padded length that depends on each text alone.
        for idx, width in bucketed_batches([len(e.ids) for e in encs]):
            ids = np.zeros((BUCKET_ROWS, width), dtype=np.int64)
            mask = np.zeros((BUCKET_ROWS, width), dtype=np.int64)
            for r, j in enumerate(filled(list(idx), BUCKET_ROWS)):
                ids[r, : len(encs[j].ids)] = encs[j].ids
                mask[r, : len(encs[j].ids)] = 1
            out[idx] = self._sess.run(None, {"input_ids": ids, "attention_mask": mask,
                                             "token_type_ids": np.zeros_like(ids)})[0][: len(idx)]
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


def onnx_available() -> bool:
    """Whether onnxruntime is importable (the ``fast`` extra)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True
