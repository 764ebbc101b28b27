"""Choosing prompts to review: a uniform random slice and an informative slice, kept apart."""

from __future__ import annotations

import numpy as np
import pytest

from data_advisor.coverage.review_pick import (
    DUPLICATE_COSINE,
    MIN_PER_ANCHOR,
    RANDOM_MIN,
    harm_boundary,
    pick_for_review,
    split_budget,
)


def _data(n: int = 600, k: int = 6, seed: int = 0, dup_groups: int = 0):
    """Unit vectors around k centres; margins uniform; anchors = nearest centre, 15% unanchored (low harm)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, 32))
    lab = rng.integers(0, k, n)
    x = centres[lab] + rng.normal(scale=0.9, size=(n, 32))
    if dup_groups:  # the first dup_groups*10 rows: groups of 10 near-identical prompts, all very unsure
        for g in range(dup_groups):
            x[g * 10:(g + 1) * 10] = x[g * 10] + rng.normal(scale=0.01, size=(10, 32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    margin = rng.random(n)
    harm = rng.random(n)
    anchors: list[str | None] = [f"a{j}" if h >= 0.15 else None for j, h in zip(lab, harm, strict=True)]
    if dup_groups:
        margin[: dup_groups * 10] = 0.0
    return x.astype(np.float32), margin, harm, anchors, lab


def test_split_keeps_a_useful_random_slice_and_leaves_room_for_informative_picks() -> None:
    assert split_budget(60) == (30, 30)
    assert split_budget(30)[0] == 30 and split_budget(12) == (12, 0)
    n_random, n_info = split_budget(100)
    assert n_random >= RANDOM_MIN and n_info > 0 and n_random + n_info == 100


def test_both_slices_present_disjoint_and_sized() -> None:
    x, margin, harm, anchors, lab = _data()
    pick = pick_for_review(60, margin=margin, anchors=anchors, clusters=lab, harm_score=harm, vectors=x, seed=3)
    assert len(pick.random) == 30 and len(pick.informative) == 30
    assert not set(pick.random) & set(pick.informative)
    order = pick.order()
    assert [w for _, w in order] == ["random"] * 30 + ["informative"] * 30
    assert len({i for i, _ in order}) == 60


def test_random_slice_is_seeded_and_uniform() -> None:
    x, margin, harm, anchors, lab = _data(n=200)
    kw = {"margin": margin, "anchors": anchors, "clusters": lab, "harm_score": harm, "vectors": x}
    a = pick_for_review(60, seed=1, **kw)
    assert np.array_equal(a.random, pick_for_review(60, seed=1, **kw).random)
    assert not np.array_equal(a.random, pick_for_review(60, seed=2, **kw).random)
    # every prompt equally likely: 400 draws of 30 from 200 → 60 expected per prompt (sd ≈ 7.2)
    hits = np.zeros(200)
    for s in range(400):
        hits[pick_for_review(60, seed=s, **kw).random] += 1
    assert hits.min() > 30 and hits.max() < 95
    # and blind to the margin the informative slice looks at: low-margin prompts are not over-drawn
    low = margin < np.median(margin)
    assert abs(hits[low].sum() / hits.sum() - 0.5) < 0.03


def test_informative_picks_are_unsure_and_spread_over_anchors() -> None:
    x, margin, harm, anchors, lab = _data()
    ranks = np.argsort(np.argsort(margin)) / (len(margin) - 1)
    only_margin = pick_for_review(60, margin=margin, anchors=anchors, clusters=lab, vectors=x, seed=0)
    assert ranks[only_margin.informative].mean() < 0.25  # the population mean is 0.5
    pick = pick_for_review(60, margin=margin, anchors=anchors, clusters=lab, harm_score=harm, vectors=x, seed=0)
    info = pick.informative
    anchored = np.array([a is not None for a in anchors])
    near_boundary = np.argsort(np.argsort(np.abs(harm - 0.15))) / (len(harm) - 1)
    unsure = np.where(anchored, np.minimum(ranks, near_boundary), near_boundary)
    assert unsure[info].mean() < 0.2 and unsure[pick.random].mean() > 0.25
    got = {anchors[i] for i in np.r_[pick.random, info] if anchors[i] is not None}
    assert got == {f"a{j}" for j in range(6)}
    for j in range(6):  # every anchor has at least MIN_PER_ANCHOR labels over both slices
        assert sum(anchors[i] == f"a{j}" for i in np.r_[pick.random, info]) >= MIN_PER_ANCHOR


def test_no_near_duplicates_among_informative_picks() -> None:
    x, margin, harm, anchors, lab = _data(dup_groups=8)  # 80 near-identical, maximally unsure prompts
    pick = pick_for_review(60, margin=margin, anchors=anchors, clusters=lab, harm_score=harm, vectors=x, seed=0)
    info = pick.informative
    sims = x[info] @ np.r_[x[info], x[pick.random]].T
    np.fill_diagonal(sims[:, : len(info)], -1.0)
    assert sims.max() < DUPLICATE_COSINE
    assert sum(int(i) < 80 for i in info) <= 8  # at most one per group of copies


def test_reviewed_prompts_are_never_picked_again() -> None:
    x, margin, harm, anchors, lab = _data()
    done = np.zeros(len(anchors), dtype=bool)
    done[np.argsort(margin)[:100]] = True  # the most unsure hundred were reviewed already
    done[::7] = True
    pick = pick_for_review(60, margin=margin, anchors=anchors, clusters=lab, harm_score=harm, vectors=x,
                           exclude=done, seed=0)
    picked = np.r_[pick.random, pick.informative]
    assert len(picked) == 60 and not done[picked].any()
    left = pick_for_review(10_000, margin=margin, anchors=anchors, exclude=done, seed=0)
    assert len(left.random) + len(left.informative) == int((~done).sum()) and left.notes


def test_random_strategy_is_all_random() -> None:
    x, margin, harm, anchors, _lab = _data()
    pick = pick_for_review(60, margin=margin, anchors=anchors, harm_score=harm, vectors=x, strategy="random")
    assert len(pick.random) == 60 and len(pick.informative) == 0


def test_harm_boundary_sits_between_anchored_and_unanchored() -> None:
    h = np.array([0.1, 0.2, 0.3, 0.62, 0.7, 0.9])
    assert harm_boundary(h, np.array([0, 0, 0, 1, 1, 1], bool)) == pytest.approx(0.46)
    assert harm_boundary(h, np.ones(6, bool)) == 0.5
    # one anchored prompt below the rest (refinement): the boundary still splits the bulk
    assert 0.3 < harm_boundary(h, np.array([1, 0, 0, 1, 1, 1], bool)) < 0.62
