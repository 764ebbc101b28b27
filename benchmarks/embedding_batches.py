"""Canonical batches vs the former padded batches: speed (prompts/s, same run, interleaved) and batch dependence.

    python benchmarks/embedding_batches.py [--n 600] [--repeats 3] [--datasets ../shared/datasets]

Embeds the first ``n`` human turns of hh-rlhf's harmless-base test set with the bundled model's light loader:
``padded`` is the former recipe (longest first, batches of 64 padded to their longest text), ``canonical`` the
current one (:mod:`data_advisor.coverage.embedding.batching`: bucketed fixed-shape batches).  Reports
prompts/s of each (median over repeats, run alternately so machine load hits both alike), their ratio, and for
each recipe the largest difference between the vectors of batch sizes 64 and 7 (padded) or between the whole
set and a shuffled third (canonical).
Writes ``benchmarks/results/embedding_batches.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"  # ../shared/datasets of the checkout


def padded_encode(enc, texts: list[str], batch_size: int) -> np.ndarray:
    """The former LightMeanPoolEncoder.encode: longest first, padded batches, masked mean."""
    import copy

    torch = enc.torch
    tok = copy.deepcopy(enc.tokenizer)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    texts = [t.strip() for t in texts]
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), enc.dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            batch = tok.encode_batch([texts[i] for i in idx])
            ids = torch.tensor([e.ids for e in batch])
            mask = torch.tensor([e.attention_mask for e in batch])
            hidden = enc.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            out[idx] = torch.nn.functional.normalize(pooled, p=2, dim=1).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--datasets", type=Path, default=DATASETS)
    args = ap.parse_args()
    from data_advisor.coverage.embedding.light import LightMeanPoolEncoder
    from data_advisor.coverage.embedding.models import default_model_path

    texts = []
    with open(args.datasets / "hh-rlhf" / "harmless-base_test.jsonl", encoding="utf-8") as fh:
        for line in fh:
            first = json.loads(line)["chosen"].split("\n\nAssistant:")[0]
            texts.append(first.replace("\n\nHuman:", "", 1).strip())
            if len(texts) >= args.n:
                break
    enc = LightMeanPoolEncoder.try_load(default_model_path()[0])
    assert enc is not None
    enc.encode(texts[:16])  # warm up
    times: dict[str, list[float]] = {"padded": [], "canonical": []}
    for _ in range(args.repeats):
        t = time.perf_counter()
        padded = padded_encode(enc, texts, 64)
        times["padded"].append(time.perf_counter() - t)
        t = time.perf_counter()
        canonical = enc.encode(texts)
        times["canonical"].append(time.perf_counter() - t)
    rate = {k: len(texts) / statistics.median(v) for k, v in times.items()}
    third = np.random.default_rng(0).permutation(len(texts))[: len(texts) // 3]
    result = {
        "n_prompts": len(texts), "repeats": args.repeats,
        "prompts_per_s": {k: round(v, 1) for k, v in rate.items()},
        "canonical_over_padded": round(rate["canonical"] / rate["padded"], 3),
        "max_abs_diff_padded_batch64_vs_batch7": float(np.abs(padded - padded_encode(enc, texts, 7)).max()),
        "max_abs_diff_canonical_whole_vs_shuffled_third": float(np.abs(canonical[third] - enc.encode(
            [texts[i] for i in third])).max()),
        "max_abs_diff_canonical_vs_padded": float(np.abs(canonical - padded).max()),
    }
    out = Path(__file__).resolve().parent / "results" / "embedding_batches.json"
    out.write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
