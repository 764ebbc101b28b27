"""The audit orchestrator: prompts → embeddings → assignments + clusters → :class:`CoverageReport`.

Thin on purpose: each stage is its own module with a typed contract and can be swapped (any
:class:`~data_advisor.coverage.embedding.base.Embedder`, an assigner with ``fit/assign``, a discovery object with
``fit``).  :func:`build_report` is the pure part the advisor loop reuses after each round.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from data_advisor.coverage import metrics as M
from data_advisor.coverage.assign import (
    AnchorAssigner,
    AnchorSet,
    Assignments,
    build_anchors,
)
from data_advisor.coverage.audit_settings import (
    DEFAULT_EMERGENT_THRESHOLD,
    AuditOptions,
    AuditSettings,
    settings_from_keywords,
)
from data_advisor.coverage.cluster import ClusterDiscovery, ClusterResult, KnnGraph, keyword_labels
from data_advisor.coverage.cluster_cache import ClusterCache, shared_knn_graph, vectors_digest
from data_advisor.coverage.embedding.base import Embedder, as_embedder
from data_advisor.coverage.embedding.registry import make_embedder
from data_advisor.coverage.estimates import adapt_base_rate, label_step, read_labels
from data_advisor.coverage.labels import ReviewLabels
from data_advisor.coverage.report import MAX_SUBCLUSTERS, AnchorCoverage, ClusterInfo, CoverageReport, SubCluster
from data_advisor.coverage.taxonomy import Taxonomy, load_background, load_taxonomy
from data_advisor.coverage.warnings import audit_warnings
from data_advisor.data import PromptSet, as_prompt_set
from data_advisor.errors import OutputError
from data_advisor.io import (
    ensure_writable_dir,
    make_temp_dir,
    move_outputs,
    save_npy_atomic,
    write_checksums,
    write_json_atomic,
    write_jsonl_atomic,
)

#: Above this many prompts, embeddings.npy is not written next to the report (the cache still has them).
SAVE_EMBEDDINGS_MAX = 300_000
#: Per-run facts beside coverage.json (cache hits, recoveries); report.html shows them with the discovery notes.
RUN_INFO = "run_info.json"

__all__ = ["DEFAULT_EMERGENT_THRESHOLD", "AuditOptions", "AuditResult", "AuditSettings", "anchor_subclusters",
           "apply_refinement", "audit_full", "build_report", "run_audit", "settings_from_keywords"]


@dataclass
class AuditResult:
    """The report plus the per-prompt arrays behind it (kept for incremental updates and rendering)."""

    report: CoverageReport
    prompts: PromptSet
    vectors: np.ndarray
    assignments: Assignments
    clusters: ClusterResult
    taxonomy: Taxonomy
    anchors: AnchorSet
    settings: AuditSettings = field(default_factory=AuditSettings)
    knn: KnnGraph | None = None
    run_notes: list[str] = field(default_factory=list)
    """What this run did that is not part of the numbers (e.g. clusters read from the cluster cache): printed by the
    CLI and shown in report.html through ``run_info.json``, never in coverage.json, which stays byte-identical."""
    embedder_info: dict[str, Any] = field(default_factory=dict)
    """The embedder's own account of this run (backend, which loader ran, cache hits), for ``run_info.json``."""

    def rows(self) -> Iterator[dict[str, Any]]:
        """One ``assignments.jsonl`` record per prompt, in input order."""
        a = self.assignments
        for i, (pid, text) in enumerate(zip(self.prompts.ids, self.prompts.texts, strict=True)):
            yield {
                "id": pid, "text": text, "anchor_id": a.anchor_id(i), "score": round(float(a.score[i]), 6),
                "margin": round(float(a.margin[i]), 6), "cluster_id": int(self.clusters.labels[i]),
                "nearest_anchor_id": a.nearest_id(i),
                "background_score": round(float(a.background_score[i]), 6),
                "harm_score": None if a.harm_score is None else round(float(a.harm_score[i]), 6),
                "x": round(float(self.clusters.coords[i, 0]), 5), "y": round(float(self.clusters.coords[i, 1]), 5),
                "reviewed": bool(a.reviewed is not None and a.reviewed[i]),
            }

    def write(self, out_dir: Path, *, save_embeddings: bool = True,
              extra_outputs: Sequence[Callable[[Path], None]] = ()) -> Path:
        """Write coverage.json, assignments.jsonl and embeddings.npy (plus ``extra_outputs``) into ``out_dir``.

        ``extra_outputs`` are callables given the temporary folder that already holds the JSON outputs; they add
        files beside them (the caller renders ``report.html`` this way, so this layer never imports the reports
        layer).  Every file is first written to a temporary folder next to ``out_dir`` and moved into place only
        once all of them are complete, so a failure leaves the previous outputs (or nothing) behind.
        """
        out_dir = ensure_writable_dir(Path(out_dir))
        tmp = make_temp_dir(out_dir, ".audit-")  # pid in the name: a killed writer's folder is removed next time
        try:
            self.report.save(tmp / "coverage.json")
            write_json_atomic(tmp / RUN_INFO, {"clusters_from_cache": self.clusters.from_cache,
                                               "notes": list(self.run_notes), "embedder": self.embedder_info})
            write_jsonl_atomic(tmp / "assignments.jsonl", self.rows())
            if save_embeddings and len(self.vectors) <= SAVE_EMBEDDINGS_MAX:
                save_npy_atomic(tmp / "embeddings.npy", self.vectors.astype(np.float16))
            write_checksums(tmp, ("coverage.json", "assignments.jsonl", "embeddings.npy"))
            for add_output in extra_outputs:
                add_output(tmp)
            move_outputs(tmp, out_dir, replaced=("embeddings.npy", "report.html"))  # an earlier audit's go too
        except OSError as exc:
            raise OutputError(f"cannot write audit outputs to {out_dir}: {exc.strerror or exc}",
                              "check free disk space and permissions of --out") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out_dir


def apply_refinement(assignments: Assignments, vectors: np.ndarray, anchors: AnchorSet, settings: AuditSettings,
                     knn: KnnGraph | None) -> Assignments:
    """The transductive refinement step exactly as the audit runs it (the advisor's monitor reuses it for a base set,
    so a run's "before" counts are the audit's).  Label spreading uses the first k columns of the audit's one kNN
    graph (self + k neighbours): the same neighbours an exact k-NN search would give, without a second search."""
    if not settings.refine:
        assignments.settings["refine"] = {"ran": False, "n_moved": 0,  # type: ignore[assignment]
                                          "reason": "turned off (--no-refine / refine=False)"}
        return assignments
    from data_advisor.coverage.refine import RefineSettings, refine_assignments

    k_refine = RefineSettings().k + 1
    graph = (knn.idx[:, :k_refine], knn.dists[:, :k_refine]) if knn is not None and knn.k >= k_refine else None
    refined, _ = refine_assignments(assignments, vectors, anchors, graph=graph, seed=settings.seed)
    return refined


# ------------------------------------------------------------------------------------------------ pipeline
def run_audit(
    prompts: PromptSet,
    taxonomy: Taxonomy,
    embedder: Embedder,
    *,
    settings: AuditSettings | None = None,
    assigner: AnchorAssigner | None = None,
    discovery: ClusterDiscovery | None = None,
    anchors: AnchorSet | None = None,
    vectors: np.ndarray | None = None,
    show_progress: bool = False,
    cluster_cache: ClusterCache | None = None,
    labels: ReviewLabels | None = None,
) -> AuditResult:
    """Run every stage on an in-memory prompt set. Pass ``vectors`` to skip embedding.

    One exact k-NN graph is built per audit (exact search up to :data:`metrics.IVF_ABOVE` prompts) and shared by
    discovery and the near-duplicate metric; it is returned as ``AuditResult.knn`` for stages that smooth over
    neighbours.  With ``cluster_cache`` the graph and the discovery result are read from it when these exact vectors
    were audited with the same discovery settings before (the taxonomy plays no part), and stored otherwise.
    ``labels`` (or ``settings.labels``, a path) are reviewer labels: coverage/estimates.py applies them.
    """
    settings = settings or AuditSettings(taxonomy=taxonomy.id)
    embedder = as_embedder(embedder)
    labels = labels if labels is not None else read_labels(settings.labels, taxonomy)
    if anchors is None:
        background = load_background() if settings.background else None
        anchors = build_anchors(taxonomy, embedder, background)
    # An anchor-aware embedder (the cascade) needs the anchors before it embeds the prompts; others ignore this.
    embedder.set_anchors(anchors, margin_threshold=settings.margin_threshold, min_score=settings.min_score,
                         use_background=settings.background)
    if vectors is None:
        vectors = embedder.encode(prompts.texts, show_progress=show_progress)
    assigner = assigner or AnchorAssigner(margin_threshold=settings.margin_threshold, min_score=settings.min_score,
                                          use_background=settings.background)
    assignments = assigner.fit(anchors).assign(vectors)
    if settings.base_rate:
        assignments = adapt_base_rate(assignments)
    n = len(vectors)
    digest = vectors_digest(vectors) if cluster_cache is not None else None
    knn = (shared_knn_graph(vectors, min(settings.n_neighbors, n), cache=cluster_cache, digest=digest)
           if 2 <= n <= M.IVF_ABOVE else None)
    assignments = apply_refinement(assignments, vectors, anchors, settings, knn)
    assignments, estimates = label_step(assignments, vectors, anchors, prompts.ids, labels, settings.seed,
                                        (knn.idx, knn.dists) if knn is not None else None)
    if settings.cluster:
        discovery = discovery or ClusterDiscovery(seed=settings.seed, n_neighbors=settings.n_neighbors,
                                                  min_cluster_size=settings.min_cluster_size, max_fit=settings.max_fit)
        if cluster_cache is not None and digest is not None:
            clusters = cluster_cache.fit(discovery, vectors, digest=digest, model_id=embedder.model_id, graph=knn)
        else:
            clusters = discovery.fit(vectors, graph=knn)
    else:
        clusters = ClusterResult(np.full(n, -1, dtype=np.int64), np.zeros((n, 2), np.float32),
                                 "disabled", ["discovery disabled (--no-cluster)"], {})
    report = build_report(prompts, vectors, taxonomy, anchors, assignments, clusters, settings,
                          model_id=embedder.model_id, knn=knn, estimates=estimates)
    run_notes = list(cluster_cache.events) if cluster_cache is not None else []
    return AuditResult(report, prompts, vectors, assignments, clusters, taxonomy, anchors, settings, knn, run_notes,
                       {"model_id": embedder.model_id, **embedder.info()})


def _examples(ids: Sequence[str], texts: Sequence[str], order: Sequence[int], k: int) -> list[dict[str, str]]:
    return [{"id": ids[i], "text": texts[i]} for i in list(order)[:k]]


def build_report(
    prompts: PromptSet,
    vectors: np.ndarray,
    taxonomy: Taxonomy,
    anchors: AnchorSet,
    assignments: Assignments,
    clusters: ClusterResult,
    settings: AuditSettings,
    *,
    model_id: str = "",
    knn: KnnGraph | None = None,
    estimates: dict[str, Any] | str = "unverified",
) -> CoverageReport:
    """Compute every number of the report from the stage outputs (no model calls; cheap to repeat).

    ``knn`` is the audit's exact k-NN graph of ``vectors`` (self first); near-duplicates are read from it instead of
    searching again.
    """
    n = len(prompts)
    ids, texts = prompts.ids, prompts.texts
    leaf_ids = assignments.principle_ids
    anchor_of: list[str | None] = [assignments.anchor_id(i) for i in range(n)]
    counts = Counter(a for a in anchor_of if a is not None)
    targets = taxonomy.target_shares()
    est = estimates.get("anchors") if isinstance(estimates, dict) else None  # gaps read corrected shares
    gaps = M.anchor_gaps({k: (est[k]["share"] * n if est else counts.get(k, 0)) for k in leaf_ids}, targets)
    per_anchor_clusters = M.clusters_per_anchor(anchor_of, clusters.labels.tolist(), min_members=2)

    members: dict[str, list[int]] = {k: [] for k in leaf_ids}
    for i, a in enumerate(anchor_of):
        if a is not None:
            members[a].append(i)
    vendi = M.GroupVendi(vectors)
    grams: dict[str, np.ndarray] = {}  # per leaf Σuuᵀ: parents and the whole set are sums of these, never recomputed
    keywords = keyword_labels(texts, clusters.labels) if clusters.n_clusters else {}
    leaf_rows: dict[str, AnchorCoverage] = {}
    for pid in leaf_ids:
        p = taxonomy.by_id(pid)
        g = gaps[pid]
        idx = members[pid]
        by_score = sorted(idx, key=lambda i: -float(assignments.score[i]))
        leaf_rows[pid] = AnchorCoverage(
            id=pid, name=p.name, count=counts.get(pid, 0), share=g.share, target_share=g.target_share, gap=g.gap,
            deficit=g.deficit, parent=p.parent, is_leaf=True,
            mean_score=float(np.mean(assignments.score[idx])) if idx else 0.0,
            n_clusters=per_anchor_clusters.get(pid, 0),
            vendi=vendi.of(idx, grams, pid),
            examples=_examples(ids, texts, by_score, settings.n_examples),
        )
        subs = anchor_subclusters(idx, clusters.labels, vectors, ids, texts, keywords, settings.n_examples)
        row = leaf_rows[pid]
        row.subclusters = subs[:MAX_SUBCLUSTERS]
        row.subcluster_evenness = M.subcluster_evenness([sc.size for sc in subs])
        row.clustered_share = sum(sc.size for sc in subs) / len(idx) if idx else 0.0
    anchor_rows: list[AnchorCoverage] = []
    total_anchored = sum(counts.values())
    for p in taxonomy.principles:  # file order; parents roll up their leaves
        if p.id in leaf_rows:
            anchor_rows.append(leaf_rows[p.id])
            continue
        below = [leaf_rows[l.id] for l in taxonomy.leaves() if p.id in taxonomy.ancestors(l.id)]
        cnt = sum(r.count for r in below)
        share = sum(r.share for r in below)
        tshare = sum(r.target_share for r in below)
        idx = [i for r in below for i in members[r.id]]
        anchor_rows.append(AnchorCoverage(
            id=p.id, name=p.name, count=cnt, share=share, target_share=tshare, gap=tshare - share,
            deficit=sum(r.deficit for r in below), parent=p.parent, is_leaf=False,
            mean_score=float(np.mean(assignments.score[idx])) if idx else 0.0,
            n_clusters=len({int(clusters.labels[i]) for i in idx} - {-1}),
            vendi=M.vendi_from_gram(sum((grams[r.id] for r in below), np.zeros_like(grams[leaf_ids[0]])), len(idx)),
            examples=[ex for r in below for ex in r.examples[:1]][: settings.n_examples],
        ))

    leaf_counts = [counts.get(k, 0) for k in leaf_ids]
    n_un = int((~assignments.anchored).sum())
    un_idx = np.where(~assignments.anchored)[0]
    un_order = un_idx[np.argsort(-(assignments.background_score[un_idx]), kind="stable")]

    cluster_rows = _cluster_rows(prompts, vectors, anchors, assignments, clusters, anchor_of, settings, keywords)

    nn_sim, nn_idx = M.nearest_neighbor_similarity(vectors, seed=settings.seed, graph=knn)
    exact_groups = M.exact_duplicate_groups(texts)
    near_pairs: list[dict[str, Any]] = []
    seen_pairs: set[tuple[int, int]] = set()
    for i in np.argsort(-nn_sim, kind="stable"):
        if nn_sim[i] < settings.near_duplicate_threshold or len(near_pairs) >= 25:
            break
        j = int(nn_idx[i])
        pair = (min(int(i), j), max(int(i), j))
        if pair in seen_pairs or M.normalize_for_dedup(texts[i]) == M.normalize_for_dedup(texts[j]):
            continue
        seen_pairs.add(pair)
        near_pairs.append({"a": {"id": ids[pair[0]], "text": texts[pair[0]]},
                           "b": {"id": ids[pair[1]], "text": texts[pair[1]]}, "similarity": float(nn_sim[i])})

    metrics = {
        "n_prompts": n,
        "n_unique": n - sum(len(g) - 1 for g in exact_groups),
        "n_anchored": total_anchored,
        "anchored_share": total_anchored / n if n else 0.0,
        "n_leaf_anchors": len(leaf_ids),
        "anchors_covered": int(sum(1 for c in leaf_counts if c > 0)),
        "coverage_ratio": M.coverage_ratio(leaf_counts, settings.coverage_min_count),
        "coverage_min_count": settings.coverage_min_count,
        "normalized_entropy": M.normalized_entropy(leaf_counts),
        "gini": M.gini(leaf_counts),
        "kl_target_actual": M.kl_divergence([targets[k] for k in leaf_ids], leaf_counts),
        "effective_anchors": M.effective_number(leaf_counts),
        "vendi_score": vendi.whole(grams, np.where(~assignments.anchored)[0]),
        "vendi_method": "exact: cosine kernel through the d×d Gram matrix (no sampling at any size)",
        "distinct_1": M.distinct_n(texts, 1),
        "distinct_2": M.distinct_n(texts, 2),
        "exact_duplicate_rate": M.exact_duplicate_rate(texts),
        "near_duplicate_rate": M.near_duplicate_rate(nn_sim, settings.near_duplicate_threshold),
        "near_duplicate_threshold": settings.near_duplicate_threshold,
        "near_duplicate_method": M.near_duplicate_method(n),
        "mean_score": float(assignments.score.mean()) if n else 0.0,
        "mean_margin": float(assignments.margin.mean()) if n else 0.0,
        "n_clusters": clusters.n_clusters,
        "noise_share": clusters.noise_share,
        "n_emergent_clusters": sum(1 for c in cluster_rows if c.kind == "emergent"),
        "unanchored_share": n_un / n if n else 0.0,
        "refine_moved": int(refine.get("n_moved", 0)) if isinstance(refine := assignments.settings.get("refine"), dict) else 0,
    }
    from data_advisor._version import __version__

    report_settings = {
        # coverage.json's schema keeps the key "model" for the embedding model
        **{("model" if k == "embedding_model" else k): v for k, v in asdict(settings).items()},
        "model_id": model_id,
        "taxonomy_id": taxonomy.id,
        "taxonomy_version": taxonomy.version,
        "taxonomy_fingerprint": taxonomy.fingerprint(),
        "assignment": dict(assignments.settings),
        "discovery": clusters.params,
        "data_advisor_version": __version__,
    }
    return CoverageReport(
        dataset={"source": prompts.source, "n_prompts": n, "text_field": prompts.text_field,
                 "n_skipped": prompts.n_skipped, "n_truncated": prompts.n_truncated,
                 "fingerprint": prompts.fingerprint()},
        taxonomy={"id": taxonomy.id, "name": taxonomy.name, "version": taxonomy.version,
                  "source": taxonomy.source, "hierarchical": taxonomy.is_hierarchical},
        anchors=anchor_rows,
        unanchored={"count": n_un, "share": n_un / n if n else 0.0,
                    "examples": _examples(ids, texts, un_order.tolist(), 10)},
        metrics=metrics,
        clusters=cluster_rows,
        duplicates={
            "exact_groups": [{"size": len(g), "ids": [ids[i] for i in g[:10]], "text": texts[g[0]]}
                             for g in exact_groups[:25]],
            "n_exact_groups": len(exact_groups),
            "near_pairs": near_pairs,
        },
        discovery={"method": clusters.method, "notes": list(clusters.notes), "n_clusters": clusters.n_clusters,
                   "noise_share": clusters.noise_share},
        settings=report_settings,
        estimates=estimates,
        warnings=[w.to_dict() for w in audit_warnings(
            taxonomy=taxonomy, leaf_counts=counts, n_prompts=n, n_unanchored=n_un, source=str(prompts.source or ""),
            harm_calibrated=bool(assignments.settings.get("harm_calibrated", True)), model_id=model_id,
            labelled=isinstance(estimates, dict))],
    )


#: Fewest of an anchor's prompts in one cluster for it to count as a sub-cluster (as ``n_clusters`` counts them).
SUBCLUSTER_MIN_MEMBERS = 2


def anchor_subclusters(members: Sequence[int], labels: np.ndarray, vectors: np.ndarray, ids: Sequence[str],
                       texts: Sequence[str], keywords: dict[int, list[str]], n_examples: int = 3) -> list[SubCluster]:
    """The fine-grained groups inside one anchor: its prompts (``members``) split by discovery cluster.

    A cluster holding at least ``SUBCLUSTER_MIN_MEMBERS`` of the anchor's prompts is one of its sub-clusters (noise
    and singletons are left out, so evenness is not inflated by stragglers).  Largest first, ties by cluster id;
    examples are the anchor's prompts in the cluster closest to their own centroid.  Shared by the audit report
    and the advisor loop's monitor, so the advisor sees exactly what coverage.json states.
    """
    idx = np.asarray(members, dtype=np.int64)
    if not len(idx):
        return []
    lab = labels[idx]
    sizes = Counter(int(c) for c in lab.tolist() if c != -1)
    full = Counter(labels.tolist())
    rows: list[SubCluster] = []
    for c, size in sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0])):
        if size < SUBCLUSTER_MIN_MEMBERS:
            continue
        sub = idx[lab == c]
        cent = vectors[sub].astype(np.float32).mean(axis=0)
        order = sub[np.argsort(-(vectors[sub] @ cent), kind="stable")]
        kw = keywords.get(c, [])
        rows.append(SubCluster(cluster_id=c, size=size, share=size / len(idx), cluster_size=int(full[c]),
                               label=", ".join(kw[:3]) or f"cluster {c}", keywords=kw[:5],
                               examples=_examples(ids, texts, order.tolist(), min(3, n_examples))))
    return rows


def _cluster_rows(prompts: PromptSet, vectors: np.ndarray, anchors: AnchorSet, assignments: Assignments,
                  clusters: ClusterResult, anchor_of: list[str | None], settings: AuditSettings,
                  keywords: dict[int, list[str]] | None = None) -> list[ClusterInfo]:
    labels = clusters.labels
    ids_ = sorted(set(labels.tolist()) - {-1})
    if not ids_:
        return []
    if keywords is None:
        keywords = keyword_labels(prompts.texts, labels)
    rows: list[ClusterInfo] = []
    for c in ids_:
        idx = np.where(labels == c)[0]
        cent = vectors[idx].mean(axis=0)
        cent = cent / max(float(np.linalg.norm(cent)), 1e-12)
        # Score the centroid exactly as prompts are scored (max over each principle's anchor vectors).
        sims = anchors.vectors @ cent
        per_p = np.full(anchors.n_principles, -1.0)
        np.maximum.at(per_p, anchors.owner, sims)
        nearest = int(per_p.argmax())
        bg = float((anchors.background_vectors @ cent).max()) if anchors.background_vectors is not None else -1.0
        assigned = Counter(anchor_of[i] for i in idx if anchor_of[i] is not None)
        top, top_n = (assigned.most_common(1)[0] if assigned else (None, 0))
        un_share = 1.0 - sum(assigned.values()) / len(idx)
        cscore = float(per_p[nearest])
        if un_share <= 0.5 and cscore >= settings.emergent_threshold:
            kind = "anchored"
        elif bg > cscore and un_share > 0.5:
            kind = "background"
        else:
            kind = "emergent"
        order = idx[np.argsort(-(vectors[idx] @ cent), kind="stable")]
        kw = keywords.get(c, [])
        rows.append(ClusterInfo(
            id=int(c), size=len(idx), label=", ".join(kw[:3]) or f"cluster {c}", keywords=kw, kind=kind,
            top_anchor=top, top_anchor_share=top_n / len(idx), nearest_anchor=anchors.principle_ids[nearest],
            centroid_score=cscore, background_score=bg, unanchored_share=un_share,
            examples=_examples(prompts.ids, prompts.texts, order.tolist(), settings.n_examples),
        ))
    rows.sort(key=lambda r: (-r.size, r.id))
    return rows


# ------------------------------------------------------------------------------------------------ public API
def audit_full(
    data: str | Path | PromptSet | Sequence[str] | Any,
    *,
    taxonomy: str | Path | Taxonomy = "catqa-11",
    settings: AuditSettings | None = None,
    options: AuditOptions | None = None,
    embedder: Embedder | None = None,
    out: str | Path | None = None,
    labels: ReviewLabels | str | Path | None = None,
    **deprecated: Any,
) -> AuditResult:
    """Audit ``data`` (a path, an in-memory table, a PromptSet or strings: :func:`~data_advisor.data.as_prompt_set`)
    and return the report with its per-prompt arrays (writes nothing).

    :func:`data_advisor.audit` (in :mod:`data_advisor.api`) wraps this and writes the outputs and the HTML report.
    ``out`` is only checked to be writable before the expensive part.  The old flat keywords (``seed=``,
    ``model=``, ``text_field=``, ``min_cluster_size=`` ...) still work, with a DeprecationWarning.
    """
    settings, options = settings_from_keywords(settings, options, deprecated, where="audit_full")
    tax = taxonomy if isinstance(taxonomy, Taxonomy) else load_taxonomy(taxonomy)
    if out is not None:
        ensure_writable_dir(Path(out))  # fail before the expensive part
    prompts = as_prompt_set(data, text_field=options.text_field, id_field=options.id_field)
    review = read_labels(labels if labels is not None else settings.labels, tax)  # a bad file fails before embedding
    emb = embedder or make_embedder(settings.embedding_model, cache=options.cache, embedder_name=options.embedder_name)
    settings = replace(settings, taxonomy=tax.id, labels=review.source if review is not None else None)
    return run_audit(prompts, tax, emb, settings=settings, show_progress=options.show_progress,
                     cluster_cache=ClusterCache.default() if options.cache else None, labels=review)
