"""Reading report inputs (audit and run folders) and the numeric helpers the maps need.

Reports only *read* what an audit or a run already wrote — coverage.json, assignments.jsonl, optionally
embeddings.npy — and never load the embedding model, so rendering is cheap and cannot change a number.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage.report import CoverageReport
from data_advisor.errors import InputError
from data_advisor.io import split_lines, verify_checksums

REWRITE_FIX = "re-run the audit (or run) that wrote it; reports only read what audit/run wrote"


def read_text(path: Path) -> str:
    """A file written by audit/run, as text; unreadable or not UTF-8 (a damaged file) → one-line InputError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", REWRITE_FIX) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is damaged: not UTF-8 text (byte {exc.start})", REWRITE_FIX) from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSON Lines file; a broken line raises an :class:`InputError` naming it.

    Parsed as one JSON array (a single ``json.loads`` is ~2x faster than one call per line at 100k lines);
    only when that fails is the file re-parsed line by line to name the bad line.
    """
    path = Path(path)
    text = read_text(path)
    if "\x00" in text:  # zero-filled blocks: what a crash of the file system (not of our atomic writes) leaves
        lineno = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(f"{path}:{lineno} is damaged (NUL bytes)", REWRITE_FIX)
    lines = [ln for ln in split_lines(text) if ln.strip()]
    try:
        rows = json.loads("[" + ",".join(lines) + "]")
        if all(isinstance(r, dict) for r in rows):
            return rows
    except ValueError:
        pass
    rows = []
    for lineno, line in enumerate(split_lines(text), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise InputError(f"{path}:{lineno} is not valid JSON ({exc.msg})", REWRITE_FIX) from None
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{lineno} is not a JSON object", REWRITE_FIX) from None
        rows.append(obj)
    return rows


def read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except ValueError as exc:
        raise InputError(f"{path} is not valid JSON ({exc})", REWRITE_FIX) from None


@dataclass
class Points:
    """assignments.jsonl in columns (one entry per prompt, in file order = embeddings.npy order)."""

    ids: list[str]
    texts: list[str]
    anchor: list[str | None]
    cluster: np.ndarray  # int64, -1 = noise
    score: np.ndarray  # float32
    x: np.ndarray  # float32
    y: np.ndarray  # float32
    nearest: list[str | None] = field(default_factory=list)  # nearest principle even when unanchored
    extra: dict[str, list[Any]] = field(default_factory=dict)  # e.g. "round" for run prompts

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def read(cls, path: Path, extra_keys: Sequence[str] = ()) -> Points:
        ids: list[str] = []
        texts: list[str] = []
        anchor: list[str | None] = []
        cluster: list[int] = []
        score: list[float] = []
        xs: list[float] = []
        ys: list[float] = []
        nearest: list[str | None] = []
        extra: dict[str, list[Any]] = {k: [] for k in extra_keys}
        for i, r in enumerate(read_jsonl(path), 1):
            try:
                cid, sc = int(r.get("cluster_id", -1)), float(r.get("score", 0.0) or 0.0)
                x, y = float(r.get("x", 0.0) or 0.0), float(r.get("y", 0.0) or 0.0)
            except (TypeError, ValueError, OverflowError):
                raise InputError(f"{path}: record {i} is damaged (cluster_id, score, x or y is not a number)",
                                 REWRITE_FIX) from None
            if not all(np.isfinite(v) for v in (sc, x, y)):
                raise InputError(f"{path}: record {i} is damaged (a non-finite score or coordinate)", REWRITE_FIX)
            ids.append(str(r.get("id", len(ids))))
            texts.append(str(r.get("text", "")))
            a = r.get("anchor_id")
            anchor.append(None if a is None else str(a))
            cluster.append(cid)
            score.append(sc)
            xs.append(x)
            ys.append(y)
            na = r.get("nearest_anchor_id", a)
            nearest.append(None if na is None else str(na))
            for k in extra_keys:
                extra[k].append(r.get(k))
        return cls(ids, texts, anchor, np.asarray(cluster, dtype=np.int64), np.asarray(score, dtype=np.float32),
                   np.asarray(xs, dtype=np.float32), np.asarray(ys, dtype=np.float32), nearest, extra)

    def has_coords(self) -> bool:
        """False when every point sits at one place (the audit ran without discovery, so no 2-D map)."""
        return len(self) > 1 and bool(np.ptp(self.x) > 0 or np.ptp(self.y) > 0)


@dataclass
class AuditInput:
    """Everything a report reads from one audit-like folder."""

    path: Path
    report: CoverageReport
    points: Points | None
    embeddings: np.ndarray | None
    notes: list[str] = field(default_factory=list)
    run_notes: list[str] = field(default_factory=list)  # run_info.json: facts of the run that wrote the folder


def _run_notes(path: Path) -> list[str]:
    """Notes from ``run_info.json`` (e.g. "clusters read from the cluster cache"); absent or unreadable = none."""
    import json

    try:
        doc = json.loads((path / "run_info.json").read_text("utf-8"))
    except (OSError, ValueError):
        return []
    notes = doc.get("notes") if isinstance(doc, dict) else None
    return [str(n) for n in notes] if isinstance(notes, list) else []


def load_audit_dir(path: Path, *, want_embeddings: bool = False) -> AuditInput:
    """Read coverage.json (required), assignments.jsonl and, if asked, embeddings.npy (both optional).

    Files that are present must be whole: assignments.jsonl must hold one record per prompt coverage.json
    counts, and embeddings.npy one finite unit vector per record. Anything else is a damaged folder and a
    one-line :class:`InputError` naming the file, never a report drawn from part of the data.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a folder", "pass the audit/run output folder (the one with coverage.json)")
    verify_checksums(path, ("coverage.json", "assignments.jsonl", "embeddings.npy"))
    report = CoverageReport.load(path / "coverage.json")
    notes: list[str] = []
    points = None
    ap = path / "assignments.jsonl"
    if ap.exists():
        try:
            points = Points.read(ap)
        except (ValueError, TypeError) as exc:  # valid JSON of the wrong shape (e.g. a damaged number field)
            raise InputError(f"{ap} holds a record of the wrong shape ({exc})",
                             "re-run the audit (or `report` on the run) to rewrite it") from None
        expected = report.dataset.get("n_prompts") if isinstance(report.dataset, dict) else None
        if isinstance(expected, int) and expected != len(points):
            raise InputError(f"{ap} holds {len(points):,} records but {path / 'coverage.json'} counts "
                             f"{expected:,} prompts (a damaged or mixed-up folder)", REWRITE_FIX)
    else:
        notes.append("assignments.jsonl is missing, so there is no per-prompt map.")
    emb = None
    ep = path / "embeddings.npy"
    if (want_embeddings or (points is not None and not points.has_coords())) and ep.exists():
        emb = _read_embeddings(ep, None if points is None else len(points))
    return AuditInput(path, report, points, emb, notes, _run_notes(path))


def _read_embeddings(ep: Path, n_points: int | None) -> np.ndarray:
    """embeddings.npy through a memory map, checked: n_points rows of finite unit vectors (as every audit writes)."""
    fix = f"{REWRITE_FIX}, or delete {ep.name} to report without it"
    try:
        emb = np.load(ep, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        why = "its header is not a NumPy array's" if "pickle" in str(exc) else (str(exc).splitlines() or [""])[0][:120]
        raise InputError(f"{ep} is damaged ({why or type(exc).__name__})", fix) from None
    if emb.ndim != 2 or emb.dtype.kind != "f" or (n_points is not None and emb.shape[0] != n_points):
        raise InputError(f"{ep} has shape {tuple(emb.shape)} ({emb.dtype}), which does not match "
                         f"{n_points} assignments", fix)
    n_zero = 0
    for s in range(0, len(emb), 50_000):
        block = np.asarray(emb[s:s + 50_000], dtype=np.float64)
        with np.errstate(all="ignore"):
            norms = np.sqrt((block * block).sum(axis=1))
        zero = norms == 0.0  # the static embedder gives a text with no known word piece a zero vector
        n_zero += int(zero.sum())
        bad = ~(np.isfinite(norms) & ((np.abs(norms - 1.0) <= 5e-3) | zero))  # stored as float16: |error| < 3e-4
        if bad.any():
            raise InputError(f"{ep} is damaged: row {s + int(np.argmax(bad))} is not a unit vector", fix)
    if n_zero > len(emb) // 100:  # more than the rare empty text: zero-filled blocks
        raise InputError(f"{ep} is damaged: {n_zero:,} rows are all zeros", fix)
    return emb


# ------------------------------------------------------------------------------------------------ sampling
def stratified_sample(groups: Sequence[Any], max_points: int, seed: int = 0) -> np.ndarray:
    """Indices of a deterministic sample of at most ``max_points`` items, stratified by ``groups``.

    Each group keeps its share of the sample (largest-remainder rounding), but every group first gets a
    small floor so rare anchors stay visible on the map.  Members are drawn with a seeded generator, group
    by group in sorted-key order, so the same input always gives the same sample.  Returned sorted.
    """
    n = len(groups)
    if max_points <= 0:
        return np.zeros(0, dtype=np.int64)
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault("" if g is None else f"~{g}", []).append(i)
    keys = sorted(members)
    sizes = np.array([len(members[k]) for k in keys], dtype=np.int64)
    floor = np.minimum(sizes, max(1, max_points // (5 * len(keys))))
    if floor.sum() > max_points:
        floor = np.minimum(sizes, max_points // len(keys))
    budget = max_points - int(floor.sum())
    rest = sizes - floor
    quota = floor.copy()
    if budget > 0 and rest.sum() > 0:
        exact = rest * (budget / rest.sum())
        add = np.floor(exact).astype(np.int64)
        left = budget - int(add.sum())
        order = sorted(range(len(keys)), key=lambda j: (-(exact[j] - add[j]), keys[j]))
        for j in order[:left]:
            add[j] += 1
        quota += np.minimum(add, rest)
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    for k, q in zip(keys, quota, strict=True):
        idx = np.asarray(members[k], dtype=np.int64)
        chosen.append(idx if q >= len(idx) else rng.permutation(idx)[: int(q)])
    return np.sort(np.concatenate(chosen))


# --------------------------------------------------------------------------------------------- projection
def pca_2d(vectors: np.ndarray, *, fit_max: int = 50_000, seed: int = 0) -> tuple[np.ndarray, str]:
    """Project vectors to 2-D with PCA (deterministic: seeded fit sample, fixed component signs).

    PCA is linear, fast at any size and reproducible without extra dependencies; distances along the two
    main directions of variation are comparable across inputs projected together.  It is fitted on at
    most ``fit_max`` rows (a seeded sample) and applied to all of them in float32 chunks to bound memory.
    """
    x = np.asarray(vectors)
    n = len(x)
    fit_idx = np.arange(n) if n <= fit_max else np.sort(np.random.default_rng(seed).choice(n, fit_max, replace=False))
    fit = np.asarray(x[fit_idx], dtype=np.float64)
    mean = fit.mean(axis=0) if len(fit) else np.zeros(x.shape[1])
    centred = fit - mean
    cov = centred.T @ centred / max(1, len(fit) - 1)
    vals, vecs = np.linalg.eigh(cov)
    top = np.argsort(-vals, kind="stable")[:2]
    comps = vecs[:, top]
    for j in range(comps.shape[1]):  # sign convention: the largest loading of each component is positive
        if comps[np.argmax(np.abs(comps[:, j])), j] < 0:
            comps[:, j] = -comps[:, j]
    explained = float(vals[top].sum() / (vals.sum() or 1.0))
    mean32, comps32 = mean.astype(np.float32), comps.astype(np.float32)
    coords = np.zeros((n, 2), dtype=np.float32)
    for s in range(0, n, 50_000):
        coords[s:s + 50_000, : comps.shape[1]] = (np.asarray(x[s:s + 50_000], dtype=np.float32) - mean32) @ comps32
    return coords, f"PCA (2 components, {100 * explained:.1f}% of the variance)"


def umap_2d(vectors: np.ndarray, *, seed: int = 0) -> tuple[np.ndarray, str]:
    """Project vectors to 2-D with UMAP (cosine metric, ``random_state`` fixed → reproducible, slower)."""
    from data_advisor import _env

    with _env.library_defaults():  # NUMBA_CACHE_DIR while numba loads
        import umap

    reducer = umap.UMAP(n_components=2, metric="cosine", random_state=seed, n_neighbors=15, min_dist=0.1)
    coords = reducer.fit_transform(np.asarray(vectors, dtype=np.float32)).astype(np.float32)
    return coords, f"UMAP (cosine, n_neighbors=15, random_state={seed})"


PROJECTIONS: dict[str, Callable[..., tuple[np.ndarray, str]]] = {"pca": pca_2d, "umap": umap_2d}
