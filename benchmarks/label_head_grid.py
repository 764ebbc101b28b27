"""Head weight × anchor temperature of the labelled assignment, picked leave-one-dataset-out (issue 16, item 3).

The labelled head adds ``HEAD_WEIGHT`` × its log-probabilities to the anchor scores' log-softmax at temperature
``ANCHOR_TEMPERATURE`` (``coverage/labelled.py``).  A flatter anchor prior (higher T) helped the 12-principle user
taxonomy in an earlier measurement; this script checks whether a setting picked on the *other* dataset groups helps
the held-out one.  Per (set, taxonomy): macro-F1 on the unreviewed prompts at ``review``'s default n with its own
picks (``review_loop.one_run``: LODO harm threshold, pool without the set's own taxonomy), mean over draws.

    nice -n 10 python benchmarks/label_head_grid.py           # 3 draws (~1 min on 2 busy cores)
    nice -n 10 python benchmarks/label_head_grid.py --quick   # 1 draw
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C
import _sets as S

SCRIPT = "label_head_grid"
WEIGHTS = (1.0, 3.0, 10.0)
TEMPERATURES = (0.05, 0.2, 1.0)


def use_setting(weight: float, temperature: float) -> None:
    """Make ``labelled.LabelModel`` use this head weight and anchor temperature (benchmark-only patch)."""
    from data_advisor.coverage import labelled as L

    orig_head, orig_softmax = getattr(L, "_orig", (L.LabelHead, L.anchor_log_softmax))
    L._orig = (orig_head, orig_softmax)

    class Head(orig_head):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **k: Any) -> None:
            super().__init__(*a, **k)
            self.weight, self.temperature = weight, temperature

    L.LabelHead = Head
    L.anchor_log_softmax = lambda s, temperature=temperature: orig_softmax(s, temperature)


def main() -> None:
    import fit_harm
    import review_loop as R

    from data_advisor.coverage import labelled as L
    from data_advisor.coverage.embedding.registry import make_embedder
    from data_advisor.coverage.harm import DEFAULT_TOP_K
    from data_advisor.coverage.review_pick import PER_PRINCIPLE, RANDOM_MIN, RANDOM_SHARE

    p = C.base_parser(__doc__)
    p.add_argument("--draws", type=int, default=3)
    args = p.parse_args()
    ds = C.require_datasets(args.datasets)
    started = time.perf_counter()
    draws = 1 if args.quick else args.draws
    embedder = make_embedder()
    parts = fit_harm.groups(ds, embedder, DEFAULT_TOP_K)
    lodo_thr = {g: fit_harm.fit_threshold([q for q in parts if q["group"] != g]) for g in {q["group"] for q in parts}}
    pipe = R.Pipeline(embedder, lodo_thr)
    grid = [f"{w}/{t}" for w, t in itertools.product(WEIGHTS, TEMPERATURES)]
    shipped = f"{L.HEAD_WEIGHT}/{L.ANCHOR_TEMPERATURE}"
    rows: list[dict[str, Any]] = []
    for spec in S.labelled_sets(ds):
        vecs = embedder.encode(spec.texts)
        for kind, tax, gold in S.taxonomy_runs(spec):
            base, anchors = pipe.assign(tax, vecs, spec), pipe.anchors(tax, spec.beside)
            leaf = [q.id for q in tax.leaves()]
            f1: dict[str, float] = {}
            for key in grid:
                use_setting(*map(float, key.split("/")))
                f1[key] = round(float(np.mean([R.one_run(pipe, base, anchors, vecs, gold, leaf, PER_PRINCIPLE * len(leaf),
                                                         args.seed + d, "informative", (RANDOM_MIN, RANDOM_SHARE))
                                               ["macro_f1_unreviewed"] for d in range(draws)])), 4)
            rows.append({"set": spec.key, "group": spec.group, "taxonomy": kind, "macro_f1": f1})
            C.log(f"{spec.key} {kind}: shipped {f1[shipped]:.3f}, best {max(f1.values()):.3f} ({max(f1, key=f1.get)})")
    lodo: dict[str, Any] = {}
    for g in sorted({r["group"] for r in rows}):
        other = [r for r in rows if r["group"] != g]
        pick = max(grid, key=lambda k: float(np.mean([r["macro_f1"][k] for r in other])))
        held = [r for r in rows if r["group"] == g]
        lodo[g] = {"picked": pick, "held_out": {f"{r['set']}/{r['taxonomy']}": {"picked": r["macro_f1"][pick],
                                                                              "shipped": r["macro_f1"][shipped]}
                                                for r in held}}
    deltas = [v["picked"] - v["shipped"] for g in lodo.values() for v in g["held_out"].values()]
    C.emit(SCRIPT, args, {"grid": grid, "shipped": shipped, "draws": draws, "sets": rows, "lodo": lodo,
                          "summary": {"lodo_minus_shipped_mean": round(float(np.mean(deltas)), 4),
                                      "lodo_better_pairs": int(sum(d > 0 for d in deltas)),
                                      "lodo_worse_pairs": int(sum(d < 0 for d in deltas)), "pairs": len(deltas)}},
           started=started)


if __name__ == "__main__":
    main()
