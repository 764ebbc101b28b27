"""The ``data-advisor`` command.

Heavy libraries (torch, sentence-transformers, umap, litellm) are imported inside each command, so
``data-advisor --help`` and ``taxonomy list`` answer instantly.  Every :class:`DataAdvisorError` becomes one
line on stderr (``error: <problem> — fix: <fix>``) and a non-zero exit code; nothing half-written is left.
"""

from __future__ import annotations

import argparse
import contextlib
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
    from data_advisor.coverage.gate import GateCondition
    from data_advisor.coverage.taxonomy import Taxonomy

Handler = Callable[[argparse.Namespace], int]
#: What `audit` writes into --out (an input of the same name there would be overwritten).
AUDIT_OUTPUTS = ("coverage.json", "assignments.jsonl", "embeddings.npy", "report.html", "anchor_counts.json", "assignments",
                 "outputs.sha256.json", "run_info.json")


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


class _DeprecatedEmbeddingModel(argparse.Action):
    """``--model`` on audit: the old spelling of ``--embedding-model`` (``--model`` names LLMs everywhere else)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        _env.log.warning("warning: --model is deprecated for the embedding model; use --embedding-model")
        namespace.embedding_model = values


def _add_model_args(p: argparse.ArgumentParser) -> None:
    from data_advisor.coverage.embedding.backends import LOADERS

    p.add_argument("--embedding-model", default="default",
                   help="embedding model: `default` (bundled all-MiniLM-L6-v2, offline), a sentence-transformers "
                        "name, or a local path (--model: deprecated alias)")
    p.add_argument("--model", dest="embedding_model", action=_DeprecatedEmbeddingModel, help=argparse.SUPPRESS)
    p.add_argument("--st-loader", choices=LOADERS, default="auto",
                   help="how the exact transformer loads: light (tokenizers + transformers, plain mean-pooling "
                        "models only), sentence-transformers, or auto (light exactly when the model folder is a plain "
                        "mean-pooling layout; default). run_info.json records which ran")
    p.add_argument("--no-cache", action="store_true",
                   help="do not read or write the embedding and cluster caches (everything is recomputed)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="kept for compatibility: the exact embedders run fixed canonical batches, so that no "
                        "vector depends on the batch it was embedded in")


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
        taxonomy=taxonomy.id, embedding_model=args.embedding_model, seed=args.seed, background=not args.no_background,
        coverage_min_count=args.min_count, cluster=not args.no_cluster, min_cluster_size=args.min_cluster_size,
        max_fit=args.max_fit, refine=not args.no_refine, base_rate=not args.no_base_rate,
        **({"margin_threshold": args.margin_threshold} if args.margin_threshold is not None else {}),
    )
    if args.assign_only and args.engine != "ray":
        raise DataAdvisorError("--assign-only runs on Ray workers", "add --engine ray (and --ray-address for a cluster)")
    from data_advisor.coverage.gate import parse_conditions

    gate = parse_conditions(args.fail_under, [p.id for p in taxonomy.principles])  # a typo is exit 2 before any work
    if gate and args.assign_only:
        raise DataAdvisorError("--fail-under needs the full audit's metrics", "drop --assign-only, or --fail-under")
    if args.labels:
        if args.assign_only:
            raise DataAdvisorError("--labels needs the whole set in one process", "drop --assign-only")
        from data_advisor.coverage.labels import load_labels

        args.review = load_labels(args.labels, [p.id for p in taxonomy.leaves()])  # fails before any work
        settings.labels = args.review.source
    from data_advisor.io import check_disjoint, removed_on_failure

    out = Path(args.out)
    check_disjoint([Path(args.input), *([Path(args.labels)] if args.labels else [])], out, AUDIT_OUTPUTS)
    with removed_on_failure(out):  # leave no folder behind (nor its new parents) when the audit never wrote anything
        return _run_audit(args, taxonomy, settings, t0, gate)


def _run_audit(args: argparse.Namespace, taxonomy: Taxonomy, settings: AuditSettings, t0: float,
               gate: Sequence[GateCondition] = ()) -> int:
    from data_advisor.io import ensure_writable_dir

    out = ensure_writable_dir(Path(args.out))
    if args.assign_only:
        return _assign_only(args, taxonomy, settings, out, t0)
    prompts = _load_input(args, args.input)
    _info(f"loaded {len(prompts):,} prompts from {args.input}"
            + (f" (skipped {prompts.n_skipped})" if prompts.n_skipped else "")
            + (f" (truncated {prompts.n_truncated})" if prompts.n_truncated else ""))

    from data_advisor.coverage.audit import run_audit
    from data_advisor.coverage.embedding.registry import make_embedder

    embedder = make_embedder(args.embedding_model, cache=not args.no_cache, batch_size=args.batch_size,
                             embedder_name=args.embedder, loader=args.st_loader, cascade_exact=args.cascade_exact)
    # --engine ray embeds on Ray workers; run_audit gives an anchor-aware embedder (the cascade) its anchors.
    vectors = None
    if args.engine == "ray":
        from data_advisor.engines.ray_engine import embed_texts

        vectors = embed_texts(prompts.texts, embedding_model=args.embedding_model, embedder_name=args.embedder,
                              batch_size=args.batch_size,
                              address=args.ray_address, workers=args.ray_workers, cache=not args.no_cache,
                              show_progress=not args.quiet)
    from data_advisor.coverage.cluster_cache import ClusterCache

    cluster_cache = None if args.no_cache else ClusterCache.default()
    result = run_audit(prompts, taxonomy, embedder, settings=settings, show_progress=not args.quiet, vectors=vectors,
                       cluster_cache=cluster_cache, labels=getattr(args, "review", None))
    line = embedder.describe() if vectors is None else None
    if line:
        _info(line)
    for note in cluster_cache.notes if cluster_cache is not None else []:  # its warnings were logged as they happened
        _info(note)
    labeler = None
    if args.label_model:  # the labeler's module imports pydantic and litellm's client: only when asked for
        from data_advisor.llm.labels import make_labeler

        labeler = make_labeler(args.label_model, args.api_base)
    from data_advisor.api import write_audit

    write_audit(result, out, plotlyjs=args.plotlyjs, render_html=not args.no_html, labeler=labeler)
    m = result.report.metrics
    _eprint(
        f"audit done in {time.perf_counter() - t0:.1f}s: {m['n_prompts']:,} prompts, "
        f"{m['anchors_covered']}/{m['n_leaf_anchors']} anchors covered, "
        f"entropy {m['normalized_entropy']:.3f}, unanchored {m['unanchored_share']:.1%}, "
        f"{m['n_clusters']} clusters ({m['n_emergent_clusters']} emergent) → {out}"
    )
    from data_advisor.coverage.estimates import accuracy_line

    _eprint(accuracy_line(result.report.estimates))
    weakest = result.report.gap_table()[:3]
    _eprint("largest gaps: " + "; ".join(f"{a.name} ({a.count}, gap {a.gap:+.3f})" for a in weakest))
    _print_warnings(result.report.warnings)
    failures = result.report.check(list(gate)) if gate else []
    for line in failures:  # the outputs are written: the gate judges the data, not the run
        _eprint(f"fail-under: {line}")
    if gate and not failures:
        _eprint(f"fail-under: passed ({len(gate)} condition{'' if len(gate) == 1 else 's'} met)")
    return 1 if failures else 0


def _print_warnings(items: list[dict]) -> None:
    """One stderr line per guard-rail warning of the report (printed with -q too: they are not progress)."""
    from data_advisor.coverage.warnings import warnings_from_dicts

    for w in warnings_from_dicts(items):
        _eprint(f"warning: {w.one_line()}")


def _assign_only(args: argparse.Namespace, taxonomy: Taxonomy, settings: AuditSettings, out: Path, t0: float) -> int:
    """``audit --engine ray --assign-only``: shards are read, embedded and assigned on Ray workers; only the anchor
    counts come back, so the input may exceed this machine's memory.  Writes ``assignments/*.parquet`` (one row per
    prompt) and ``anchor_counts.json`` (counts, shares, targets and gaps), each moved into place only when complete."""
    import shutil

    from data_advisor.coverage import metrics as M
    from data_advisor.engines.ray_engine import ShardSettings, assign_shards
    from data_advisor.io import make_temp_dir, write_json_atomic

    work = make_temp_dir(out, ".assign-")
    try:
        shard_settings = ShardSettings(
            taxonomy=args.taxonomy, embedding_model=args.embedding_model, embedder_name=args.embedder, text_field=args.text_field,
            id_field=None if args.id_field == "none" else (args.id_field or "id"), batch_size=args.batch_size,
            background=settings.background, margin_threshold=settings.margin_threshold, min_score=settings.min_score,
            cache=not args.no_cache)
        summary = assign_shards(args.input, work / "assignments", shard_settings, address=args.ray_address,
                                workers=args.ray_workers, show_progress=not args.quiet)
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
            "refine": {"ran": False, "reason": "assign-only assigns shard by shard; refinement needs the whole set"},
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
    if args.action == "enrich":
        return _enrich(args)
    t = load_taxonomy(args.name)
    if args.action == "validate":
        from data_advisor.coverage.warnings import taxonomy_warnings

        n_ex = sum(len(p.examples) for p in t.principles)
        print(f"ok: {t.id} — {len(t.principles)} principles ({len(t.leaves())} leaves), {n_ex} examples")
        found = taxonomy_warnings(t)
        for w in found:
            _eprint(f"warning: {w.one_line()}")
        return 1 if found and args.strict else 0
    if args.json:
        print(json.dumps(t.to_dict(), indent=2, ensure_ascii=False))
        return 0
    _show_taxonomy(t)
    return 0


def _enrich(args: argparse.Namespace) -> int:
    """``taxonomy enrich TAXONOMY --from POOL --out NEW.yaml``: propose examples per principle, review, then use."""
    from data_advisor.coverage.enrich import EnrichSettings, enrich_taxonomy, write_enriched
    from data_advisor.coverage.taxonomy import load_taxonomy

    t0 = time.perf_counter()
    if not args.out:
        raise DataAdvisorError("`taxonomy enrich` needs --out NEW.yaml", "e.g. --out my-taxonomy-enriched.yaml")
    if not args.pool and not args.llm_model:
        raise DataAdvisorError("`taxonomy enrich` needs examples to come from somewhere",
                               "pass --from POOL (a prompts file to mine) and/or --model (an LLM that writes them)")
    out = Path(args.out).expanduser()
    if out.exists() and not args.force:
        raise DataAdvisorError(f"{out} already exists", "choose another --out, or pass --force to replace it")
    if out.exists() and out.is_dir():
        raise DataAdvisorError(f"--out {out} is a folder", "pass a file path such as enriched.yaml")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise DataAdvisorError(f"cannot write {out}: folder {out.parent} does not exist or is not writable",
                               "create the folder or choose another --out")
    if args.batch_size < 1 or args.max_chars < 1:
        raise DataAdvisorError("--batch-size and --max-chars must be at least 1", "pass positive numbers")
    settings = EnrichSettings(per_principle=args.per_principle)
    taxonomy = load_taxonomy(args.name)
    pool = _load_input(args, args.pool) if args.pool else None
    if pool is not None:
        _eprint(f"loaded {len(pool):,} pool prompts from {args.pool}")
    from data_advisor.coverage.embedding.registry import make_embedder

    embedder = make_embedder(cache=not args.no_cache, batch_size=args.batch_size)
    writer = client = None
    if args.llm_model:
        from data_advisor.coverage.enrich_llm import make_writer

        writer, client = make_writer(args.llm_model, args.api_base)
    try:
        result = enrich_taxonomy(taxonomy, embedder, pool=pool, settings=settings, writer=writer, seed=args.seed)
    finally:
        if client is not None:
            client.close()
    origin = f"written by {args.llm_model}" if args.llm_model else f"mined from {args.pool}"
    header = [f"Enriched by `data-advisor taxonomy enrich` from {taxonomy.path or taxonomy.id}.",
              f"Examples under a '# proposed' comment were {origin}: NOT reviewed. Read, edit or delete them "
              "before using this taxonomy."]
    write_enriched(result, taxonomy, out, header=header)
    n_new = sum(len(v) for v in result.proposed.values())
    _eprint(f"proposed {n_new} examples for {len(result.proposed)} principles ({origin}) in "
            f"{time.perf_counter() - t0:.1f}s → {out}; review them before use")
    for line in result.notes:
        _eprint(f"note: {_one(line)}")
    return 0


def _one(text: str) -> str:
    """A taxonomy string on one terminal line (YAML text may hold newlines or control characters)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _show_taxonomy(t: Taxonomy) -> None:
    """Every principle with its target, description and examples, indented by depth."""
    print(f"{_one(t.name)}  (id {_one(t.id)}, version {_one(t.version)})")
    if t.source:
        print(f"source: {_one(t.source)}")
    if t.description:
        print(f"description: {_one(t.description)}")
    shares = t.target_shares()
    for p in t.principles:
        pad = "  " * len(t.ancestors(p.id))
        target = f"  target {shares[p.id]:.1%}" if p.id in shares else ""
        print(f"{pad}- {_one(p.id)}: {_one(p.name)}{target}  [{len(p.examples)} examples]")
        if p.description:
            print(f"{pad}    {_one(p.description)}")
        for ex in p.examples:
            print(f"{pad}    · {_one(ex)}")


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
                   help="HDBSCAN min cluster size in prompts of the whole set (default max(10, √n/4); √n/2 below "
                        "200 prompts)")
    p.add_argument("--max-fit", type=int, default=50_000,
                   help="above this many prompts UMAP + HDBSCAN fit a seeded sample of this size and place the rest "
                        "by their nearest fitted prompts (bounds time and memory)")
    p.add_argument("--margin-threshold", type=float, default=None,
                   help="shift of the calibrated harm boundary a prompt must reach to count as anchored "
                        "(default 0; positive anchors fewer prompts)")
    p.add_argument("--no-background", action="store_true", help="do not use the benign background anchors")
    p.add_argument("--labels", default=None,
                   help="reviewer labels (the JSONL `data-advisor review` wrote, `label` filled in): reviewed prompts "
                        "take their label, the rest are re-assigned with what the labels teach, and coverage.json "
                        "gets accuracy and share estimates with 95%% intervals")
    p.add_argument("--no-base-rate", action="store_true",
                   help="keep the shipped harm boundary instead of moving it for the set's estimated harmful share")
    p.add_argument("--no-refine", action="store_true",
                   help="skip the transductive refinement of principle assignments (k-means step + label spreading "
                        "over the prompts' 10-NN graph)")
    p.add_argument("--no-cluster", action="store_true", help="skip UMAP + HDBSCAN discovery")
    p.add_argument("--no-html", action="store_true", help="write JSON outputs only")
    p.add_argument("--plotlyjs", choices=["inline", "cdn"], default="inline",
                   help="inline plotly.js (default, works offline) or load it from a CDN (smaller file)")
    p.add_argument("--label-model", help="LLM (any litellm model) that names clusters in report.html; "
                                         "default: keyword (c-TF-IDF) labels")
    p.add_argument("--api-base", help="OpenAI-compatible endpoint for --label-model")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print only the final summary and warnings (no progress bars)")
    p.add_argument("--fail-under", action="append", default=[], metavar="METRIC=VALUE",
                   help="dataset-CI gate (repeatable): exit 1, outputs written, when METRIC is under VALUE; METRIC is "
                        "any number in coverage.json `metrics` (coverage_ratio, normalized_entropy, ...), "
                        "min_anchor_count, or anchor:ID (that principle's count)")
    # embedding backends and engines
    from data_advisor.coverage.embedding import backends

    p.add_argument("--embedder", choices=backends.EMBEDDERS, default="st",
                   help=backends.help_text().replace("%", "%%"))
    p.add_argument("--cascade-exact", choices=backends.CASCADE_EXACT, default=backends.DEFAULT_CASCADE_EXACT,
                   help="the exact stage of --embedder cascade: onnx (default; needs the `fast` extra) or st")
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
    p.add_argument("action", choices=["list", "show", "validate", "enrich"])
    p.add_argument("name", nargs="?", help="built-in name or path to a taxonomy YAML")
    g = p.add_argument_group("enrich", "propose example prompts per principle (review them before use)")
    g.add_argument("--from", dest="pool", help="prompt pool to mine examples from (any file or folder audit reads)")
    g.add_argument("--out", help="the enriched taxonomy YAML to write (never replaced without --force)")
    g.add_argument("--per-principle", type=int, default=5, help="examples proposed per principle (default 5)")
    g.add_argument("--force", action="store_true", help="replace --out if it exists (even the input taxonomy)")
    g.add_argument("--model", dest="llm_model", help="LLM (any litellm model) that writes the examples, with the "
                                                      "pool's confident prompts as reference")
    g.add_argument("--api-base", help="OpenAI-compatible endpoint for --model")
    g.add_argument("--seed", type=int, default=0, help="seed (enrich)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the embedding cache")
    g.add_argument("--batch-size", type=int, default=64, help="kept for compatibility (canonical batches are used)")
    _add_input_args(g)
    p.add_argument("--json", action="store_true", help="print the taxonomy as JSON (show)")
    p.add_argument("--strict", action="store_true", help="validate: exit 1 when there are warnings")
    p.set_defaults(func=cmd_taxonomy)

    for extra in _EXTRA_COMMANDS:
        extra(sub.add_parser)
    for sp in sub.choices.values():  # every command takes -q, whoever registered it
        with contextlib.suppress(argparse.ArgumentError):  # the command already has its own -q
            sp.add_argument("-q", "--quiet", action="store_true", help="print only the final summary and warnings")
    return parser


#: Other modules register their subcommands here (keeps this file a thin dispatcher).
_EXTRA_COMMANDS: list[Callable[[Callable[..., argparse.ArgumentParser]], None]] = []


def _register_extras() -> None:
    from data_advisor.advisor import cli as advisor_cli
    from data_advisor.reports import cli as reports_cli

    for mod in (advisor_cli, reports_cli):
        if mod.register not in _EXTRA_COMMANDS:
            _EXTRA_COMMANDS.append(mod.register)


def _check_finite(args: argparse.Namespace) -> None:
    """argparse's ``float`` accepts ``nan`` and ``inf``; no option of ours means anything with them (a nan threshold
    silently fails every comparison), so they are refused for every command before any work."""
    import math

    for name, value in vars(args).items():
        if isinstance(value, float) and not math.isfinite(value):
            flag = "--" + name.replace("_", "-")
            raise DataAdvisorError(f"{flag} must be a finite number (got {value})", f"pass a real number to {flag}")


def main(argv: Sequence[str] | None = None) -> int:
    _register_extras()
    parser = build_parser()
    args = parser.parse_args(argv)
    # Before any command imports torch/transformers/tqdm: their progress bars read these switches at import.
    args.quiet = bool(args.quiet_global or getattr(args, "quiet", False))
    saved_env = {k: os.environ.get(k) for k in _env.QUIET_ENV}  # -q must not outlive an in-process call
    _env.configure_logging(quiet=args.quiet)
    try:
        _check_finite(args)
        with _env.library_defaults():  # offline-safe defaults for this command and its child processes
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
