"""The ``data-advisor`` command.

Heavy libraries (torch, sentence-transformers, umap, litellm) are imported inside each command, so
``data-advisor --help`` and ``taxonomy list`` answer instantly.  Every :class:`DataAdvisorError` becomes one
line on stderr (``error: <problem> — fix: <fix>``) and a non-zero exit code; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from data_advisor import __version__, _env
from data_advisor.errors import DataAdvisorError

if TYPE_CHECKING:
    from data_advisor.coverage.audit import AuditSettings
    from data_advisor.coverage.taxonomy import Taxonomy

Handler = Callable[[argparse.Namespace], int]


def _eprint(msg: str) -> None:
    """A line of the final summary (printed even with ``-q``)."""
    print(msg, file=sys.stderr, flush=True)


def _info(msg: str) -> None:
    """A progress line (hidden by ``-q``)."""
    _env.log.info(msg)


# ------------------------------------------------------------------------------------------------ audit
def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text-field", help="field holding the prompt (dotted paths allowed; default: auto-detect)")
    p.add_argument("--id-field", help="field holding a unique id (default: `id` if present; `none` = row number)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the input file (default utf-8)")
    p.add_argument("--max-chars", type=int, default=20_000, help="longest accepted prompt in characters")
    p.add_argument("--truncate", action="store_true", help="cut over-long prompts instead of failing")
    p.add_argument("--skip-invalid", action="store_true", help="drop records with no usable text instead of failing")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default",
                   help="embedding model: `default` (bundled all-MiniLM-L6-v2, offline), a sentence-transformers "
                        "name, or a local path")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the embedding and cluster caches (everything is recomputed)")
    p.add_argument("--batch-size", type=int, default=64, help="embedding batch size")


def _load_input(args: argparse.Namespace, source: str):
    from data_advisor.data import load_prompts

    return load_prompts(source, text_field=args.text_field, id_field=args.id_field, encoding=args.encoding,
                        max_chars=args.max_chars, truncate=args.truncate, skip_invalid=args.skip_invalid)


def cmd_audit(args: argparse.Namespace) -> int:
    from data_advisor.coverage.audit import AuditSettings
    from data_advisor.coverage.taxonomy import load_taxonomy

    t0 = time.perf_counter()
    if args.batch_size < 1 or args.max_chars < 1:
        raise DataAdvisorError("--batch-size and --max-chars must be at least 1", "pass positive numbers")
    taxonomy = load_taxonomy(args.taxonomy)
    settings = AuditSettings(  # validates the numbers before anything expensive happens
        taxonomy=taxonomy.id, model=args.model, seed=args.seed, background=not args.no_background,
        coverage_min_count=args.min_count, cluster=not args.no_cluster, min_cluster_size=args.min_cluster_size,
        max_fit=args.max_fit,
        **({"margin_threshold": args.margin_threshold} if args.margin_threshold is not None else {}),
    )
    if args.assign_only and args.engine != "ray":
        raise DataAdvisorError("--assign-only runs on Ray workers", "add --engine ray (and --ray-address for a cluster)")
    out = Path(args.out)
    created = not out.exists()
    try:
        return _run_audit(args, taxonomy, settings, t0)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # leave nothing behind when the audit never produced an output
        raise


def _run_audit(args: argparse.Namespace, taxonomy: Taxonomy, settings: AuditSettings, t0: float) -> int:
    from data_advisor.io import ensure_writable_dir

    out = ensure_writable_dir(Path(args.out))
    if args.assign_only:
        return _assign_only(args, taxonomy, settings, out, t0)
    prompts = _load_input(args, args.input)
    _info(f"loaded {len(prompts):,} prompts from {args.input}"
            + (f" (skipped {prompts.n_skipped})" if prompts.n_skipped else "")
            + (f" (truncated {prompts.n_truncated})" if prompts.n_truncated else ""))

    from data_advisor.coverage.audit import run_audit
    from data_advisor.coverage.embed import make_embedder

    embedder = make_embedder(args.model, cache=not args.no_cache, batch_size=args.batch_size,
                             embedder=args.embedder)
    # --engine ray embeds on Ray workers; run_audit gives an anchor-aware embedder (the cascade) its anchors.
    from data_advisor.coverage import fast_embed

    vectors = None
    if args.engine == "ray":
        from data_advisor.engines.ray_engine import embed_texts

        vectors = embed_texts(prompts.texts, model=args.model, embedder=args.embedder, batch_size=args.batch_size,
                              address=args.ray_address, workers=args.ray_workers, cache=not args.no_cache,
                              show_progress=not args.quiet)
    from data_advisor.coverage.cluster_cache import ClusterCache

    cluster_cache = None if args.no_cache else ClusterCache.default()
    result = run_audit(prompts, taxonomy, embedder, settings=settings, show_progress=not args.quiet, vectors=vectors,
                       cluster_cache=cluster_cache)
    line = fast_embed.describe(embedder)
    if line:
        _info(line)
    stats = getattr(embedder, "last", None)
    if stats is not None and vectors is None and not line:
        _info(f"embeddings: {stats.misses:,} computed, {stats.hits:,} from cache")
    for note in cluster_cache.notes if cluster_cache is not None else []:  # its warnings were logged as they happened
        _info(note)
    labeler = None
    if args.label_model:  # the labeler's module imports pydantic and the advisor: only when asked for
        from data_advisor.advisor.labels import make_labeler

        labeler = make_labeler(args.label_model, args.api_base)

    result.write(out, plotlyjs=args.plotlyjs, render_html=not args.no_html,
                 labeler=labeler)
    m = result.report.metrics
    _eprint(
        f"audit done in {time.perf_counter() - t0:.1f}s: {m['n_prompts']:,} prompts, "
        f"{m['anchors_covered']}/{m['n_leaf_anchors']} anchors covered, "
        f"entropy {m['normalized_entropy']:.3f}, unanchored {m['unanchored_share']:.1%}, "
        f"{m['n_clusters']} clusters ({m['n_emergent_clusters']} emergent) → {out}"
    )
    weakest = result.report.gap_table()[:3]
    _eprint("largest gaps: " + "; ".join(f"{a.name} ({a.count}, gap {a.gap:+.3f})" for a in weakest))
    return 0


def _assign_only(args: argparse.Namespace, taxonomy: Taxonomy, settings: AuditSettings, out: Path, t0: float) -> int:
    """``audit --engine ray --assign-only``: shards are read, embedded and assigned on Ray workers; only the anchor
    counts come back, so the input may exceed this machine's memory.  Writes ``assignments/*.parquet`` (one row per
    prompt) and ``anchor_counts.json`` (counts, shares, targets and gaps), each moved into place only when complete."""
    import shutil
    import tempfile

    from data_advisor.coverage import metrics as M
    from data_advisor.engines.ray_engine import assign_shards
    from data_advisor.io import write_json_atomic

    work = Path(tempfile.mkdtemp(prefix=".assign-", dir=out))
    try:
        summary = assign_shards(args.input, work / "assignments", taxonomy=args.taxonomy, model=args.model,
                                embedder=args.embedder, text_field=args.text_field,
                                id_field=None if args.id_field == "none" else (args.id_field or "id"),
                                batch_size=args.batch_size, address=args.ray_address, workers=args.ray_workers,
                                background=settings.background, margin_threshold=settings.margin_threshold,
                                min_score=settings.min_score, cache=not args.no_cache, show_progress=not args.quiet)
        n = summary["n_prompts"]
        if n == 0:
            raise DataAdvisorError(f"no prompts in {args.input}", "pass JSONL/Parquet shards with a text field")
        gaps = M.anchor_gaps(summary["counts"], taxonomy.target_shares())
        final = out / "assignments"
        if final.exists():
            shutil.rmtree(final)
        os.replace(work / "assignments", final)
        write_json_atomic(out / "anchor_counts.json", {
            "n_prompts": n, "n_anchored": summary["n_anchored"], "anchored_share": summary["anchored_share"],
            "taxonomy": taxonomy.id, "embedder": summary["embedder"], "text_field": summary["text_field"],
            "anchors": [{"id": pid, "count": g.count, "share": g.share, "target_share": g.target_share,
                         "gap": g.gap, "deficit": g.deficit}
                        for pid, g in sorted(gaps.items(), key=lambda kv: (-kv[1].gap, kv[0]))],
            "files": sorted(str(p.relative_to(out)) for p in final.glob("*.parquet")),
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _eprint(f"assigned {n:,} prompts on Ray in {time.perf_counter() - t0:.1f}s: "
            f"{summary['anchored_share']:.1%} anchored → {out / 'assignments'}, {out / 'anchor_counts.json'}")
    return 0


# ------------------------------------------------------------------------------------------------ taxonomy
def cmd_taxonomy(args: argparse.Namespace) -> int:
    from data_advisor.coverage.taxonomy import builtin_taxonomies, load_taxonomy

    if args.action == "list":
        for name in builtin_taxonomies():
            t = load_taxonomy(name)
            print(f"{name:24s} {len(t.leaves()):3d} principles  {t.name}")
        return 0
    if not args.name:
        raise DataAdvisorError(f"`taxonomy {args.action}` needs a name or path", "e.g. data-advisor taxonomy show catqa-11")
    t = load_taxonomy(args.name)
    if args.action == "validate":
        n_ex = sum(len(p.examples) for p in t.principles)
        print(f"ok: {t.id} — {len(t.principles)} principles ({len(t.leaves())} leaves), {n_ex} examples")
        return 0
    if args.json:
        print(json.dumps(t.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(f"{t.name}  (id {t.id}, version {t.version})")
    if t.source:
        print(f"source: {t.source}")
    shares = t.target_shares()
    for p in t.principles:
        depth = len(t.ancestors(p.id))
        target = f"  target {shares[p.id]:.1%}" if p.id in shares else ""
        print(f"{'  ' * depth}- {p.id}: {p.name}{target}  [{len(p.examples)} examples]")
    return 0


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="data-advisor",
        description="What your alignment data covers, what it misses, and what to generate next.",
    )
    parser.add_argument("--version", action="version", version=f"data-advisor {__version__}")
    parser.add_argument("-q", "--quiet", dest="quiet_global", action="store_true",
                        help="print only the final summary and warnings (no progress bars), for any command")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("audit", help="coverage report of a prompts file against a taxonomy")
    p.add_argument("input", help="prompts file (jsonl, json, csv, tsv, parquet, txt) or datasets folder")
    p.add_argument("--taxonomy", default="catqa-11", help="built-in name (see `taxonomy list`) or YAML path")
    p.add_argument("--out", required=True, help="output folder (coverage.json, assignments.jsonl, report.html)")
    p.add_argument("--seed", type=int, default=0, help="seed for everything random (UMAP, sampling)")
    p.add_argument("--min-count", type=int, default=5, help="an anchor counts as covered with at least this many")
    p.add_argument("--min-cluster-size", type=int, default=None,
                   help="HDBSCAN min cluster size in prompts of the whole set (default ~√n/2)")
    p.add_argument("--max-fit", type=int, default=50_000,
                   help="above this many prompts UMAP + HDBSCAN fit a seeded sample of this size and place the rest "
                        "by their nearest fitted prompts (bounds time and memory)")
    p.add_argument("--margin-threshold", type=float, default=None,
                   help="min (harm score − benign background score) for a prompt to count as on-taxonomy")
    p.add_argument("--no-background", action="store_true", help="do not use the benign background anchors")
    p.add_argument("--no-cluster", action="store_true", help="skip UMAP + HDBSCAN discovery")
    p.add_argument("--no-html", action="store_true", help="write JSON outputs only")
    p.add_argument("--plotlyjs", choices=["inline", "cdn"], default="inline",
                   help="inline plotly.js (default, works offline) or load it from a CDN (smaller file)")
    p.add_argument("--label-model", help="LLM (any litellm model) that names clusters in report.html; "
                                         "default: keyword (c-TF-IDF) labels")
    p.add_argument("--api-base", help="OpenAI-compatible endpoint for --label-model")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the final summary and warnings (no progress bars)")
    # embedding backends and engines
    p.add_argument("--embedder", choices=["st", "onnx", "onnx-int8", "static", "cascade"], default="st",
                   help="embedding backend: st (sentence-transformers, default); onnx (same model in ONNX Runtime, "
                        "same vectors, faster; needs the `fast` extra); onnx-int8 (quantised, faster, ~93%% same "
                        "anchors); static (distilled token table, ~46x faster, ~45%% same anchors: a quick look only); "
                        "cascade (static first, the exact model re-embeds every prompt whose anchor is in doubt; "
                        "~99.5%% same anchors)")
    p.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="where embedding runs: this process (default) or Ray Data map_batches (needs the `ray` extra)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (e.g. ray://head:10001 or auto); default: start a local Ray")
    p.add_argument("--ray-workers", type=int, default=None,
                   help="concurrent embedding workers for --engine ray (default: one per CPU of the local Ray)")
    p.add_argument("--assign-only", action="store_true",
                   help="with --engine ray: read, embed and assign the shards on the workers and write only "
                        "assignments/*.parquet + anchor_counts.json (no discovery or report; input may exceed RAM)")
    _add_input_args(p)
    _add_model_args(p)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("taxonomy", help="list, show or validate taxonomies")
    p.add_argument("action", choices=["list", "show", "validate"])
    p.add_argument("name", nargs="?", help="built-in name or path to a taxonomy YAML")
    p.add_argument("--json", action="store_true", help="print the taxonomy as JSON (show)")
    p.set_defaults(func=cmd_taxonomy)

    for extra in _EXTRA_COMMANDS:
        extra(sub)
    for sp in sub.choices.values():  # every command takes -q, whoever registered it
        if "-q" not in sp._option_string_actions:
            sp.add_argument("-q", "--quiet", action="store_true", help="print only the final summary and warnings")
    return parser


#: Other modules register their subcommands here (keeps this file a thin dispatcher).
_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _register_extras() -> None:
    from data_advisor.advisor import cli as advisor_cli
    from data_advisor.reports import cli as reports_cli

    for mod in (advisor_cli, reports_cli):
        if mod.register not in _EXTRA_COMMANDS:
            _EXTRA_COMMANDS.append(mod.register)


def main(argv: Sequence[str] | None = None) -> int:
    _register_extras()
    parser = build_parser()
    args = parser.parse_args(argv)
    # Before any command imports torch/transformers/tqdm: their progress bars read these switches at import.
    args.quiet = bool(args.quiet_global or getattr(args, "quiet", False))
    saved_env = {k: os.environ.get(k) for k in _env.QUIET_ENV}  # -q must not outlive an in-process call
    _env.configure_logging(quiet=args.quiet)
    try:
        return int(args.func(args) or 0)
    except DataAdvisorError as exc:
        _eprint(f"error: {exc.one_line()}")
        return exc.exit_code
    except KeyboardInterrupt:
        _eprint("interrupted: outputs already written are complete; re-run the same command to resume")
        return 130
    except BrokenPipeError:
        os._exit(1)
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    sys.exit(main())
