"""Which prompts a reviewer should label: a uniformly random slice and an informative slice, kept apart.

Why two slices: the labels serve two purposes that want opposite samples.  An *estimate* (how accurate is the
assignment on this data, how large is each anchor really) is unbiased only from a uniform sample of the prompts it
describes, so the random slice is drawn first, uniformly from the prompts not yet reviewed, and the estimates use
it alone.  *Teaching* the assignment gains most from prompts the audit is unsure of: a small margin between the two
nearest principles, a harm score near the anchored/unanchored boundary, spread over anchors and fine-grained
clusters, never two near-duplicates (a second copy teaches nothing).  Every anchor gets at least
:data:`MIN_PER_ANCHOR` labels across both slices where it has prompts, because a few-shot head never predicts a
class it has no example of (shared/reference/review-loop.md §4).

Pure NumPy on arrays an audit already wrote: no model, no taxonomy, no files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Default budget per leaf principle (``review --n`` defaults to this × the number of leaf principles).
PER_PRINCIPLE = 5
#: The random slice is at least this many labels (or the whole budget when it is smaller): a Wilson 95% interval
#: on 30 binomial labels is at most 0.34 wide (p = 0.5) and about 0.31 at p = 0.75, the "useful" bound of issue 16.
RANDOM_MIN = 30
#: Share of the budget that goes to the random slice above :data:`RANDOM_MIN`.  benchmarks/review_loop.py compares
#: splits on the shared sets (RESULTS.md, "The review loop"): 20 random labels / 40% bought ~0.03 macro-F1 but gave
#: intervals wider than 0.35 and holding the truth in 80% of draws (93% here); 30 / 75% was within 0.005 of this.
RANDOM_SHARE = 0.5
#: Two prompts at or above this cosine are near-duplicates: at most one of them is picked informatively.
DUPLICATE_COSINE = 0.9
#: Informative picks come from this many times their number of most uncertain prompts.
POOL_FACTOR = 5
#: Labels wanted per anchor (counted by suggested anchor, both slices) before the uncertain pool is used.
MIN_PER_ANCHOR = 2


@dataclass
class ReviewPick:
    """Row indices to review, random slice first (in drawing order), then the informative slice."""

    random: np.ndarray
    informative: np.ndarray
    notes: list[str] = field(default_factory=list)

    def order(self) -> list[tuple[int, str]]:
        """(row index, why) in the order the reviewer sees them."""
        return [(int(i), "random") for i in self.random] + [(int(i), "informative") for i in self.informative]


def split_budget(n: int, *, random_min: int = RANDOM_MIN, random_share: float = RANDOM_SHARE) -> tuple[int, int]:
    """(random, informative) sizes for a budget of ``n`` labels."""
    n_random = min(n, max(random_min, math.ceil(random_share * n)))
    return n_random, n - n_random


def harm_boundary(harm_score: np.ndarray, anchored: np.ndarray) -> float:
    """The harm score that best separates the audit's anchored from its unanchored prompts.

    Why from the rows and not the calibration file: the boundary an audit used may be shifted (``--margin-threshold``)
    or refitted per audit, and only the rows say where it ended up.  With one side empty, 0.5 (the calibrated
    boundary) is used.
    """
    h = np.asarray(harm_score, dtype=np.float64)
    a = np.asarray(anchored, dtype=bool)
    ok = np.isfinite(h)
    h, a = h[ok], a[ok]
    if len(h) == 0 or a.all() or not a.any():
        return 0.5
    order = np.argsort(h, kind="stable")
    hs, as_ = h[order], a[order]
    # errors if the boundary sits just above position i: anchored at or below it + unanchored above it
    anchored_below = np.cumsum(as_)
    unanchored_above = (~as_).sum() - np.cumsum(~as_)
    errors = anchored_below + unanchored_above
    i = int(np.argmin(np.r_[(~as_).sum(), errors]))  # i = 0: boundary below every score
    if i == 0:
        return float(hs[0])
    if i == len(hs):
        return float(hs[-1])
    return float((hs[i - 1] + hs[i]) / 2)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Rank in [0, 1] (0 = smallest); ties share the order of appearance (deterministic)."""
    n = len(values)
    r = np.empty(n, dtype=np.float64)
    r[np.argsort(values, kind="stable")] = np.arange(n) / max(1, n - 1)
    return r


def uncertainty(margin: np.ndarray, harm_score: np.ndarray | None, anchored: np.ndarray) -> np.ndarray:
    """Lower = less sure.  An anchored prompt is unsure when its margin is small *or* its harm score is near the
    boundary; an unanchored one only in the second sense (its runner-up margin does not decide anything)."""
    m = _ranks(np.nan_to_num(np.asarray(margin, dtype=np.float64), nan=0.0))
    if harm_score is None:
        return m
    h = np.asarray(harm_score, dtype=np.float64)
    if not np.isfinite(h).any():
        return m
    boundary = harm_boundary(h, anchored)
    d = _ranks(np.nan_to_num(np.abs(h - boundary), nan=np.inf))
    return np.where(anchored, np.minimum(m, d), d)


def pick_for_review(
    n: int,
    *,
    margin: np.ndarray,
    anchors: Sequence[str | None],
    clusters: np.ndarray | None = None,
    harm_score: np.ndarray | None = None,
    vectors: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    seed: int = 0,
    random_min: int = RANDOM_MIN,
    random_share: float = RANDOM_SHARE,
    strategy: str = "informative",
) -> ReviewPick:
    """Choose ``n`` prompts to review.

    ``anchors`` are the suggested anchor ids (None = unanchored), ``exclude`` a boolean mask of prompts already
    reviewed (never picked), ``vectors`` unit-norm embeddings (near-duplicate control and spread; without them only
    clusters spread the picks).  ``strategy="random"`` makes the whole budget random (the benchmark's baseline).
    """
    total = len(anchors)
    eligible = np.ones(total, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    pool = np.flatnonzero(eligible)
    notes: list[str] = []
    if n > len(pool):
        notes.append(f"only {len(pool):,} prompts are not yet reviewed: all of them are picked")
        n = len(pool)
    n_random, n_info = (n, 0) if strategy == "random" else split_budget(n, random_min=random_min,
                                                                           random_share=random_share)
    rng = np.random.default_rng(seed)
    rand = rng.choice(pool, size=n_random, replace=False) if n_random else np.zeros(0, dtype=np.int64)
    info = np.zeros(0, dtype=np.int64)
    if n_info:
        anchored = np.array([a is not None for a in anchors], dtype=bool)
        unsure = uncertainty(np.asarray(margin), harm_score, anchored)
        taken = np.r_[rand, np.flatnonzero(~eligible)].astype(np.int64)
        info = _informative(n_info, unsure=unsure, anchors=anchors, eligible=eligible, taken=taken,
                            first=rand, clusters=clusters, vectors=vectors)
        if len(info) < n_info:  # everything left is a near-duplicate of a pick: fill uniformly
            left = np.setdiff1d(pool, np.r_[rand, info])
            extra = rng.choice(left, size=min(len(left), n_info - len(info)), replace=False)
            notes.append(f"{len(extra)} picks are random: the rest of the data are near-duplicates of earlier picks")
            info = np.r_[info, extra].astype(np.int64)
    return ReviewPick(np.asarray(rand, dtype=np.int64), np.asarray(info, dtype=np.int64), notes)


def _informative(n: int, *, unsure: np.ndarray, anchors: Sequence[str | None], eligible: np.ndarray,
                 taken: np.ndarray, first: np.ndarray, clusters: np.ndarray | None,
                 vectors: np.ndarray | None) -> np.ndarray:
    """Uncertain prompts, round-robin over suggested anchors, farthest-first within an anchor (k-center), spread
    over clusters, near-duplicates of anything picked or reviewed skipped.  Anchors with fewer than
    :data:`MIN_PER_ANCHOR` labels among ``first`` (the random slice) are served first from all their prompts."""
    names = sorted({a for a in anchors if a is not None})
    code_of = {a: j for j, a in enumerate(names)}
    none = len(names)  # the unanchored prompts form one more group
    groups = np.array([none if a is None else code_of[a] for a in anchors], dtype=np.int64)
    cand_mask = eligible.copy()
    cand_mask[taken] = False
    order = np.flatnonzero(cand_mask)
    order = order[np.argsort(unsure[order], kind="stable")]
    have = np.bincount(groups[first], minlength=none + 1) if len(first) else np.zeros(none + 1, dtype=np.int64)
    # rare anchors: each anchored group short of MIN_PER_ANCHOR draws from all its candidates (most uncertain first)
    present = np.zeros(none + 1, dtype=bool)
    present[groups[order]] = True
    short = [g for g in range(none) if present[g] and have[g] < MIN_PER_ANCHOR]
    extra = [order[groups[order] == g][: POOL_FACTOR * MIN_PER_ANCHOR] for g in short]
    cand = np.array(list(dict.fromkeys(np.concatenate([*extra, order[: POOL_FACTOR * n]]).tolist())), dtype=np.int64)
    if len(cand) == 0:
        return np.zeros(0, dtype=np.int64)
    near = np.full(len(cand), -1.0, dtype=np.float32)
    cvec = None if vectors is None else np.asarray(vectors[cand], dtype=np.float32)
    if cvec is not None:
        for s in range(0, len(taken), 4096):  # max cosine to everything already picked or reviewed
            near = np.maximum(near, (cvec @ np.asarray(vectors[taken[s:s + 4096]], dtype=np.float32).T).max(1))
    cl = np.full(len(cand), -1, dtype=np.int64) if clusters is None else np.asarray(clusters, dtype=np.int64)[cand]
    cl_used = np.zeros(int(cl.max(initial=-1)) + 2, dtype=np.int64)  # picks per cluster, slot 0 = noise (never counted)
    alive = near < DUPLICATE_COSINE
    cgroups = groups[cand]
    need = {g: MIN_PER_ANCHOR - int(have[g]) for g in short}
    picked_per_group = np.zeros(none + 1, dtype=np.int64)
    picks: list[int] = []
    rank = _ranks(unsure[cand])
    while len(picks) < n and alive.any():
        alive_groups = np.unique(cgroups[alive])
        pending = [g for g in short if need[g] > 0 and g in alive_groups]
        if pending:
            ring = pending
        else:  # round-robin: the groups with the fewest picks so far
            low = picked_per_group[alive_groups].min()
            ring = [int(g) for g in alive_groups if picked_per_group[g] == low]
        # within those groups: the candidate in a cluster picked least often, farthest from everything chosen
        # (k-center), then the least sure
        idx = np.flatnonzero(alive & np.isin(cgroups, ring))
        used = cl_used[cl[idx] + 1]
        best = int(idx[np.lexsort((rank[idx], near[idx], used))[0]])
        picks.append(int(cand[best]))
        alive[best] = False
        g = int(cgroups[best])
        picked_per_group[g] += 1
        if g in need:
            need[g] -= 1
        if cl[best] >= 0:
            cl_used[cl[best] + 1] += 1
        if cvec is not None:
            near = np.maximum(near, cvec @ cvec[best])
            alive &= near < DUPLICATE_COSINE
    return np.asarray(picks, dtype=np.int64)
