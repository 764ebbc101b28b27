"""Scale paths: how the benchmark builds its large prompt sets, the IVF near-duplicate search against exact search,
and sampled discovery (fit on a seeded sample, extend by nearest neighbours) against a full fit."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from data_advisor.coverage import metrics as M

REPO = Path(__file__).resolve().parents[2]


def _scale_module():
    sys.path.insert(0, str(REPO / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_scale", REPO / "benchmarks" / "scale.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _clustered(n: int, d: int = 64, centres: int = 200, noise: float = 0.08, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centres, d))
    x = c[rng.integers(0, centres, n)] + noise * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.datasets
def test_large_prompt_sets_are_real_first_then_deterministic_persona_copies(datasets_dir: Path) -> None:
    scale = _scale_module()
    small, comp_small = scale.build_prompts(datasets_dir, 1000)
    assert comp_small["perturbed"] == 0 and len(small) == 1000
    corpus = comp_small["corpus"]["total"]
    n = corpus + 2500
    big, comp = scale.build_prompts(datasets_dir, n)
    assert len(big) == n and len(set(big)) == n  # every text distinct
    assert big[:1000] == small  # the real prompts come first, in the same order
    assert comp["real"] == corpus and comp["perturbed"] == 2500 and comp["persona_copies"] == 1
    assert big[corpus].startswith(scale.PERSONAS[0])
    assert big == scale.build_prompts(datasets_dir, n)[0]  # deterministic


def test_ivf_near_duplicate_search_finds_the_exact_neighbours() -> None:
    x = _clustered(20_000)
    es, ei = M.nearest_neighbor_similarity(x, ivf_above=len(x) + 1)
    isim, ii = M.nearest_neighbor_similarity(x, ivf_above=0)
    recall = float(((ii == ei) | (isim >= es - 1e-5)).mean())
    assert recall >= 0.95, recall
    assert abs(M.near_duplicate_rate(isim, 0.9) - M.near_duplicate_rate(es, 0.9)) < 0.02
    assert np.all(isim <= es + 1e-5)  # IVF can only miss neighbours, never invent closer ones
    assert np.all(ii != np.arange(len(x)))  # never the prompt itself


@pytest.mark.slow
def test_sampled_discovery_agrees_with_a_full_fit() -> None:
    from sklearn.metrics import adjusted_rand_score

    from data_advisor.coverage.cluster import ClusterDiscovery

    x = _clustered(6000, d=32, centres=12, noise=0.25, seed=1)
    mcs = 40
    sampled = ClusterDiscovery(max_fit=2000, min_cluster_size=mcs).fit(x)
    full = ClusterDiscovery(max_fit=10_000, min_cluster_size=mcs).fit(x)
    assert "sample" in " ".join(sampled.notes)
    ari = adjusted_rand_score(full.labels, sampled.labels)
    same_state = float(((full.labels == -1) == (sampled.labels == -1)).mean())
    print(f"sampled vs full: ARI {ari:.3f}, same cluster-vs-noise state {same_state:.3f}")
    assert ari >= 0.8 and same_state >= 0.85
