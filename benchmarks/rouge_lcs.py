"""ROUGE-L's LCS: rapidfuzz ``LCSseq`` (what ``coverage.metrics.rouge_l_f`` uses) against the pure-Python dynamic
programme it replaced, on the filter's workload: each candidate scored against its 20 nearest kept prompts.

Prompts: ``examples/pool.jsonl`` (949 prompts written for this project; no dataset needed). Each candidate is paired
with 20 others (seeded), the shape of ``advisor.filters`` (ROUGE-L on the 20 nearest by cosine). Both
implementations score the same pairs; the values must be identical, and the ratio of CPU seconds is the result
(CPU time, not wall time: the steadier number on a shared machine).

    python benchmarks/rouge_lcs.py            # 400 candidates × 20 = 8,000 pairs, best of 3
    python benchmarks/rouge_lcs.py --quick    # 50 candidates
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C

from data_advisor.coverage import metrics as M

SCRIPT = "rouge_lcs"
NEIGHBOURS = 20


def reference_rouge_l_f(ta: list[str], tb: list[str]) -> float:
    """The textbook LCS dynamic programme the project used before rapidfuzz."""
    if not ta or not tb:
        return 0.0
    prev = [0] * (len(tb) + 1)
    for x in ta:
        cur = [0]
        for j, y in enumerate(tb, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(ta), lcs / len(tb)
    return 2 * p * r / (p + r)


def main() -> None:
    args = C.base_parser(__doc__ or "").parse_args()
    started = time.perf_counter()
    texts = [json.loads(line)["text"] for line in (C.REPO / "examples" / "pool.jsonl").read_text("utf-8").splitlines()
             if line.strip()]
    tokens = [M.tokenize(t) for t in texts]
    rng = random.Random(args.seed)
    n_candidates = 50 if args.quick else 400
    pairs = [(tokens[i], tokens[j]) for i in rng.sample(range(len(tokens)), n_candidates)
             for j in rng.sample(range(len(tokens)), NEIGHBOURS)]
    timings: dict[str, float] = {}
    values: dict[str, list[float]] = {}
    for name, fn in (("pure_python", reference_rouge_l_f), ("rapidfuzz", M.rouge_l_f)):
        best = float("inf")
        for _ in range(3):
            with C.Timer() as t:
                out = [fn(a, b) for a, b in pairs]
            best = min(best, t.cpu)
        timings[name] = best
        values[name] = out
    identical = values["pure_python"] == values["rapidfuzz"]
    C.emit(SCRIPT, args, {
        "pairs": len(pairs), "candidates": n_candidates, "neighbours": NEIGHBOURS,
        "mean_tokens": round(sum(len(t) for t in tokens) / len(tokens), 1),
        "cpu_s_best_of_3": {k: round(v, 4) for k, v in timings.items()},
        "speedup": round(timings["pure_python"] / timings["rapidfuzz"], 1),
        "identical_values": identical,
    }, started=started)
    if not identical:
        sys.exit("error: rapidfuzz and the reference LCS disagree")


if __name__ == "__main__":
    main()
