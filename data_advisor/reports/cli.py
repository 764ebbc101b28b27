"""``report`` and ``compare`` subcommands (registered by :mod:`data_advisor.cli`).

Both re-render from stored JSON and vectors; the only time ``compare`` embeds anything is when it is given a
raw prompts file, which it audits first (with the embedding cache, so a second compare is free).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

from data_advisor.errors import InputError


def _eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


#: Files a report reads: --out must never name one of them.
_REPORT_INPUTS = frozenset({"coverage.json", "assignments.jsonl", "embeddings.npy", "config.json", "prompts.jsonl",
                            "rounds.jsonl", "responses.jsonl", "llm_calls.jsonl"})


def _is_run(path: Path) -> bool:
    return (path / "config.json").exists() and (path / "rounds.jsonl").exists()


def cmd_report(args: argparse.Namespace) -> int:
    from data_advisor.reports.html import render_audit_report, render_run_report

    folder = Path(args.folder)
    if not (folder / "coverage.json").exists():
        raise InputError(f"{folder} has no coverage.json", "pass an audit --out folder or a finished run folder")
    from data_advisor.llm.labels import make_labeler

    out = Path(args.out) if args.out else folder / "report.html"
    if out.is_dir():
        raise InputError(f"--out {out} is a folder", f"pass the HTML file to write, e.g. --out {out / 'report.html'}")
    if out.exists() and out.resolve().parent == folder.resolve() and out.name in _REPORT_INPUTS:
        raise InputError(f"--out {out} would overwrite the report's own input {out.name}",
                         "pass another file name, e.g. report.html")
    labeler = make_labeler(args.label_model, args.api_base)
    from data_advisor.io import removed_on_failure

    with removed_on_failure(out.parent):
        if _is_run(folder):
            render_run_report(folder, out, plotlyjs=args.plotlyjs, labeler=labeler)
        else:
            render_audit_report(folder, out, plotlyjs=args.plotlyjs, labeler=labeler)
    _eprint(f"report → {out}")
    return 0


def _label(path: Path, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem if path.is_file() else path.name) or "input"
    label, n = base, 2
    while label in used:
        label, n = f"{base}-{n}", n + 1
    used.add(label)
    return label


def cmd_compare(args: argparse.Namespace) -> int:
    from data_advisor.io import removed_on_failure

    # Arguments first: nothing is audited or written for a command that is going to be refused.
    if len(args.inputs) < 2:
        raise InputError("compare needs at least two inputs", "pass two or more files or folders")
    for raw in args.inputs:
        if not Path(raw).exists():
            raise InputError(f"compare input not found: {raw}", "pass prompt files, audit folders or run folders")
    with removed_on_failure(Path(args.out)):
        return _compare(args)


def _compare(args: argparse.Namespace) -> int:
    from data_advisor.coverage.taxonomy import load_taxonomy
    from data_advisor.data import load_prompts
    from data_advisor.io import ensure_writable_dir
    from data_advisor.reports.html import render_comparison

    used: set[str] = set()
    order: list[str] = []
    folders: list[tuple[str, Path]] = []
    raw_sets = []
    for raw in args.inputs:  # every raw file is read and validated (and the taxonomy loaded) before any audit runs
        path = Path(raw)
        label = _label(path, used)
        order.append(label)
        if path.is_dir() and (path / "coverage.json").exists():
            folders.append((label, path))
        else:
            raw_sets.append((label, path, load_prompts(path, text_field=args.text_field)))
    taxonomy = load_taxonomy(args.taxonomy) if raw_sets else None
    out = ensure_writable_dir(Path(args.out))
    audited: dict[str, Path] = dict(folders)
    for label, path, prompts in raw_sets:
        from data_advisor.coverage.audit import AuditSettings, audit_full

        audit_dir = out / "inputs" / label
        from data_advisor import _env

        _env.log.info(f"auditing {path} → {audit_dir}")  # progress: hidden by -q
        audit_full(prompts, taxonomy=taxonomy, settings=AuditSettings(seed=args.seed), out=audit_dir).write(audit_dir)
        audited[label] = audit_dir
    inputs = [(label, audited[label]) for label in order]
    report = render_comparison(inputs, out / "compare.html", plotlyjs=args.plotlyjs)
    _eprint(f"comparison of {len(inputs)} inputs → {report}")
    return 0


def register(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's subcommands (``add_parser`` is the main parser's ``subparsers.add_parser``)."""
    p = add_parser("report", help="re-render report.html of an audit or run folder (no re-embedding)")
    p.add_argument("folder", help="audit --out folder or run folder")
    p.add_argument("--out", help="HTML file to write (default FOLDER/report.html)")
    p.add_argument("--plotlyjs", choices=["inline", "cdn"], default="inline")
    p.add_argument("--label-model", help="LLM that names clusters (default: keyword labels)")
    p.add_argument("--api-base", help="OpenAI-compatible endpoint for --label-model")
    p.set_defaults(func=cmd_report)

    p = add_parser("compare", help="compare prompt sets, audits or runs side by side")
    p.add_argument("inputs", nargs="+", help="prompt files, audit folders or run folders")
    p.add_argument("--out", required=True, help="output folder (compare.html; audits of raw files under inputs/)")
    p.add_argument("--taxonomy", default="catqa-11", help="taxonomy for auditing raw prompt files")
    p.add_argument("--text-field", help="prompt field of raw prompt files")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plotlyjs", choices=["inline", "cdn"], default="inline")
    p.set_defaults(func=cmd_compare)

    from data_advisor.reports import review

    review.register(add_parser)
