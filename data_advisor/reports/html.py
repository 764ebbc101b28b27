"""Interactive, self-contained HTML reports: one audit, one advisor run, or several audits compared.

Every report is a single ``.html`` file that opens offline (plotly.js inlined once; ``plotlyjs="cdn"``
trades that for one CDN ``<script>`` and a ~4.5 MB smaller file) and is rendered only from what the audit
or run already stored — the embedding model is never loaded, so a report can never disagree with the
numbers in ``coverage.json``.

Guarantees, each covered by ``tests/reports``:

* **Safe with hostile data.** Prompt text is escaped for HTML and for plotly's label/hover markup, and
  plotly's JSON escapes ``<``/``>``/``/``, so a prompt like ``</script><script>alert(1)</script>`` is shown
  literally and runs nothing.  Tables are static markup; the page's only script sorts rows by moving them.
* **Deterministic.** The same inputs give byte-identical files except the one "generated at" line (fix it
  with ``generated_at=``): div ids are fixed, samples are seeded, projections are sign-normalised.
* **Bounded size.** Maps draw at most ``max_points`` prompts (a stratified, seeded sample by anchor; the page
  says so), with coordinates rounded and hover text cut to ~300 characters — 100k prompts stay well under
  25 MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from data_advisor.errors import InputError
from data_advisor.io import write_text_atomic
from data_advisor.reports import _compare as C
from data_advisor.reports import _run as R
from data_advisor.reports._audit import Labeler, add_audit_sections, subtitle
from data_advisor.reports._data import PROJECTIONS, AuditInput, load_audit_dir
from data_advisor.reports._map import anchor_colors
from data_advisor.reports._page import PLOTLYJS_MODES, Page, details, figure_html, join, note, para

__all__ = ["Labeler", "render_audit_report", "render_comparison", "render_run_report"]


def _check_mode(plotlyjs: str) -> None:
    """Fail on a bad ``plotlyjs`` before reading anything (the page is rendered last)."""
    if plotlyjs not in PLOTLYJS_MODES:
        raise InputError(f"unknown plotlyjs mode {plotlyjs!r}",
                         "use 'inline' (self-contained, default) or 'cdn' (smaller file, needs network to view)")


def _write(page: Page, out_path: Path, plotlyjs: str) -> Path:
    out_path = Path(out_path)
    write_text_atomic(out_path, page.render(plotlyjs))
    return out_path


# ------------------------------------------------------------------------------------------------- audit
def render_audit_report(
    audit_dir: Path,
    out_path: Path,
    *,
    plotlyjs: str = "inline",
    title: str | None = None,
    max_points: int = 20_000,
    labeler: Labeler | None = None,
    generated_at: str | None = None,
) -> Path:
    """Render ``report.html`` for an audit folder (coverage.json + assignments.jsonl [+ embeddings.npy]).

    Sections: key numbers; coverage vs target per principle (sorted by gap); the taxonomy tree when it is
    hierarchical; a 2-D map of prompts coloured by anchor with emergent clusters marked; gap table;
    clusters; duplicates; unanchored examples; discovery notes; settings.

    Args:
        audit_dir: the folder ``audit`` wrote.  Only read; nothing is re-embedded.
        out_path: the HTML file to write (atomically).
        plotlyjs: ``"inline"`` (self-contained, default) or ``"cdn"`` (smaller, needs network to view).
        title: page title; defaults to one naming the dataset.
        max_points: the map draws at most this many prompts (deterministic stratified sample above it).
        labeler: optional ``labeler(example_texts) -> label`` for clusters (e.g. LLM-backed); keyword labels
            from coverage.json are used when absent or when it fails for a cluster.
        generated_at: the timestamp line; ``None`` = now (UTC).  Fix it for byte-identical output.

    Returns:
        ``out_path``.
    """
    _check_mode(plotlyjs)
    data = load_audit_dir(Path(audit_dir))
    report = data.report
    name = Path(str(report.dataset.get("source") or Path(audit_dir).name)).name
    page = Page(title or f"Coverage audit — {name}", subtitle(report), generated_at)
    add_audit_sections(page, data, max_points=max_points, labeler=labeler)
    return _write(page, out_path, plotlyjs)


# --------------------------------------------------------------------------------------------------- run
def render_run_report(
    run_dir: Path,
    out_path: Path,
    *,
    plotlyjs: str = "inline",
    title: str | None = None,
    max_points: int = 20_000,
    labeler: Labeler | None = None,
    generated_at: str | None = None,
) -> Path:
    """Render the report of an advisor run folder (config.json, rounds.jsonl, prompts.jsonl, coverage.json).

    Shows the run's key numbers, coverage metrics against the number of prompts round by round, the issue
    chosen each round (table), kept / rejected (by reason) / on-target per round, cumulative tokens and
    cost, per-anchor growth (stacked area), each anchor's gap before each round, sample prompts, the
    (credential-redacted) config, and then the full coverage sections for the final state.
    """
    _check_mode(plotlyjs)
    run_dir = Path(run_dir)
    run = R.load_run_dir(run_dir)
    final: AuditInput | None = load_audit_dir(run_dir) if (run_dir / "coverage.json").exists() else None
    names: dict[str, str] = {}
    colors: dict[str, str] = {}
    if final is not None:
        names = {a.id: a.name for a in final.report.leaf_anchors()}
        colors = anchor_colors(final.report)
    sub = subtitle(final.report) if final is not None else str(run_dir)
    page = Page(title or f"Advisor run — {run_dir.name}", sub, generated_at)
    page.add("run-summary", "Run summary", R.run_cards(run),
             f"{len(run.rounds)} rounds. Each round picks the biggest coverage issue, generates prompts for it, "
             "filters them and re-measures coverage.")
    base_anchors = R.base_anchor_table(run, final, names)
    if base_anchors is not None:
        page.add("run-base-anchors", "Base → after, per anchor", base_anchors,
                 f"The run extended a base set of {run.n_base:,} prompts "
                 f"({run.base.base_set.path if run.base and run.base.base_set else ''}): each principle's prompts, share "
                 "and gap before the run and after it, largest gap before first.")
    base_clusters = R.base_cluster_table(run, final, names)
    if base_clusters is not None:
        page.add("run-base-clusters", "Base → after, per fine-grained cluster", base_clusters,
                 "Clusters of the final clustering (base + additions): members that were in the base, and members the "
                 "run added; 'new' marks clusters only the additions reach.")
    if run.rounds:
        fig, h = R.metrics_figure(run)
        page.add("run-metrics", "Coverage metrics by round", figure_html(fig, "fig-run-metrics", h),
                 "Each point is the state after a round, placed at the number of prompts at that moment.")
    page.add("run-issues", "Issue chosen each round", R.rounds_table(run, names),
             "What the advisor decided to fix, why, and what came of it.")
    adherence = R.adherence_table(run, names)
    if adherence is not None:
        page.add("run-adherence", "On target, refusals and back-off by anchor", adherence,
                 "Per advised anchor: how many kept prompts landed on it, how many candidates the generator refused, "
                 "and the rounds it was held back because the generator stayed off target (by default: under 25% on "
                 "target in two of its advised rounds).")
    if run.rounds:
        fig, h = R.yield_figure(run)
        page.add("run-yield", "Kept, rejected and on-target", figure_html(fig, "fig-run-yield", h),
                 "Bar height = prompts generated in the round. Green = kept (dark: landed on the intended anchor); "
                 "red/orange = rejected, split by reason.")
        fig, h = R.cost_figure(run)
        page.add("run-cost", "Tokens and cost (cumulative)", figure_html(fig, "fig-run-cost", h),
                 "Running totals over the rounds, as reported by the LLM provider.")
    growth = R.growth_figure(run, names, colors)
    if growth is not None:
        fig, h = growth
        page.add("run-growth", "Per-anchor growth", figure_html(fig, "fig-run-growth", h),
                 "Anchored prompts per principle after each round (stacked).")
    gaps = R.gaps_figure(run, names)
    if gaps is not None:
        fig, h = gaps
        page.add("run-gaps", "Gap before each round", figure_html(fig, "fig-run-gaps", h),
                 "Orange cells are under-covered principles; a working advisor turns them pale round by round.")
    page.add("run-prompts", "Sample prompts", R.prompts_table(run, names),
             "A few kept prompts from each round, to judge quality at a glance.")
    page.add("run-config", "Run configuration", details("show config.json", R.config_body(run)),
             "As stored in config.json; values of credential-like keys are redacted.")
    if final is not None:
        page.part("final", "Final coverage", "The coverage sections of the data set as it stands after the last round.")
        add_audit_sections(page, final, prefix="final-", title_prefix="Final: ", max_points=max_points,
                           labeler=labeler)
    else:
        page.add("final", "Final coverage", note("This run folder has no coverage.json yet."))
    return _write(page, out_path, plotlyjs)


# ------------------------------------------------------------------------------------------- comparison
def render_comparison(
    inputs: Sequence[tuple[str, Path]],
    out_path: Path,
    *,
    plotlyjs: str = "inline",
    title: str | None = None,
    max_points: int = 20_000,
    projection: str = "pca",
    generated_at: str | None = None,
) -> Path:
    """Compare audits side by side: per-anchor shares, metric deltas against the first, one shared map.

    Args:
        inputs: ``(label, folder)`` pairs; each folder holds coverage.json + assignments.jsonl and, for the
            shared map, embeddings.npy.  The first input is the baseline for every delta.
        projection: ``"pca"`` (default: fast, deterministic) or ``"umap"`` (seeded, slower) — the method used
            for the shared map when every input has embeddings.npy; the page states which.
        max_points: total points on the shared map, split evenly across inputs.
    """
    _check_mode(plotlyjs)
    if not inputs:
        raise InputError("nothing to compare", "pass at least one (label, audit folder) pair, ideally two or more")
    if projection not in PROJECTIONS:
        raise InputError(f"unknown projection {projection!r}", f"use one of {', '.join(sorted(PROJECTIONS))}")
    labels = C.unique_labels([str(lab) for lab, _ in inputs])
    data = [load_audit_dir(Path(p), want_embeddings=True) for _, p in inputs]
    page = Page(title or f"Coverage comparison — {' vs '.join(labels)}",
                f"{len(data)} inputs · baseline: {labels[0]}", generated_at)
    notes = C.taxonomy_notes(labels, data)
    for lab, d in zip(labels, data, strict=True):
        notes += [f"{lab}: {n}" for n in d.notes]
    page.add("cmp-inputs", "Inputs", join(C.overview_table(labels, data), *[note(n) for n in notes]),
             "The first input is the baseline every delta is measured against.")
    fig, h = C.shares_figure(labels, data)
    page.add("cmp-shares", "Per-anchor shares", join(figure_html(fig, "fig-cmp-shares", h),
                                                        details("show as a table", C.shares_table(labels, data))),
             "Each principle's share of anchored prompts in every input; black ticks are the baseline's targets.")
    page.add("cmp-deltas", "Metric deltas", C.delta_table(labels, data),
             "Headline metrics with the change against the baseline: green = better, red = worse (where a "
             "direction is meaningful). Vendi grows with size, so compare it between inputs of similar size.")
    all_emb = all(d.embeddings is not None and d.points is not None for d in data)
    dims = {int(d.embeddings.shape[1]) for d in data if d.embeddings is not None}
    if all_emb and len(dims) == 1:
        fig, h, how, sample_note = C.pooled_map(labels, data, max_points, projection)
        body = join(note(sample_note) if sample_note else None, para(f"Projection: {how}.", "muted"),
                    figure_html(fig, "fig-cmp-map", h))
        why = ("All inputs in one embedding space, coloured by input: regions only one colour reaches are what "
               "that input adds (or lacks).")
    else:
        missing = [lab for lab, d in zip(labels, data, strict=True) if d.embeddings is None]
        reason = (f"embeddings.npy is missing for {', '.join(missing)}" if missing
                  else "the inputs' embeddings have different dimensions (different models)")
        sep = C.separate_maps(labels, data, max_points)
        body = note(f"No shared map: {reason}. Below, each input is drawn in its own audit map; positions are not "
                    "comparable between panels.")
        if sep is not None:
            fig, h = sep
            body = join(body, figure_html(fig, "fig-cmp-maps", h))
        why = "Where each input's prompts sit."
    page.add("cmp-map", "Map (shared embedding space)", body, why)
    return _write(page, out_path, plotlyjs)
