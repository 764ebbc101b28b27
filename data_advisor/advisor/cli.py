"""``generate``, ``curate`` and ``respond`` subcommands (registered by :mod:`data_advisor.cli`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_advisor.errors import InputError


def _eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _add_llm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-base", help="OpenAI-compatible endpoint (vLLM, Ollama, a proxy); keys come from the "
                                      "provider's usual environment variable")
    p.add_argument("--concurrency", type=int, default=4, help="LLM calls in flight at once")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per LLM call before it is retried")
    p.add_argument("--max-retries", type=int, default=5, help="retries on timeouts, 429 and 5xx")


def _add_loop_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--taxonomy", default="catqa-11", help="built-in name or YAML path")
    p.add_argument("--n", type=int, required=True, help="number of prompts the run adds (the whole set without --base)")
    p.add_argument("--out", required=True, help="run folder (re-running the same command resumes it)")
    p.add_argument("--seed", type=int, default=0, help="seed for every random choice")
    p.add_argument("--per-round", type=int, default=12, help="candidates per round")
    p.add_argument("--recluster-every", type=int, default=10, help="re-run UMAP + HDBSCAN every R rounds")
    p.add_argument("--on-target", choices=["keep", "reject"], default="keep",
                   help="keep prompts whose nearest anchor is not the advised one (recorded as adherence) or reject")
    p.add_argument("--near-dup", type=float, default=None, help="cosine at or above which a candidate is a near duplicate")
    p.add_argument("--rouge-l", type=float, default=None, help="ROUGE-L F at or above which a candidate is a duplicate")
    p.add_argument("--embedding-model", default="default", help="embedding model for the coverage monitor")
    p.add_argument("--max-rounds", type=int, default=None, help="stop after this many rounds")
    p.add_argument("--max-cost", type=float, default=None, metavar="USD",
                   help="stop before the round that would take the run's LLM spend (generator + advisor, every retry, "
                        "from llm_calls.jsonl; litellm's prices) over USD; re-run with a higher cap to continue")
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="the same cap on tokens (prompt + completion), for models litellm has no price for")
    p.add_argument("--base", metavar="DATA",
                   help="your existing data, to extend instead of starting empty: a prompts file (any input format) or "
                        "an audit --out folder; gaps are measured on base + new, --n counts the additions, and the run "
                        "folder holds only the additions plus a record of the base (path, count, sha256)")
    p.add_argument("--base-text-field", help="field holding the prompt in the --base prompts file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _config_from(args: argparse.Namespace, **fixed: Any):
    from data_advisor.advisor.loop import RunConfig

    return RunConfig(
        taxonomy=args.taxonomy, n=args.n, seed=args.seed, per_round=args.per_round,
        recluster_every=args.recluster_every, on_target=args.on_target, near_dup_cosine=args.near_dup,
        rouge_l_max=args.rouge_l, embedding_model=args.embedding_model, max_rounds=args.max_rounds,
        concurrency=getattr(args, "concurrency", 4), timeout_s=getattr(args, "timeout", 60.0),
        max_retries=getattr(args, "max_retries", 5), api_base=getattr(args, "api_base", None),
        base=args.base, base_text_field=args.base_text_field, max_cost_usd=args.max_cost, max_tokens=args.max_tokens,
        **fixed,
    )


#: Option → (test, what it must be): checked before a run folder is created or an LLM client is built.
_NUMBER_RULES: dict[str, tuple[Any, str]] = {
    "n": (lambda v: v >= 1, "at least 1"),
    "per_round": (lambda v: v >= 1, "at least 1"),
    "per_call": (lambda v: v >= 1, "at least 1"),
    "recluster_every": (lambda v: v >= 1, "at least 1"),
    "max_rounds": (lambda v: v >= 1, "at least 1"),
    "concurrency": (lambda v: v >= 1, "at least 1"),
    "max_retries": (lambda v: v >= 0, "0 or more"),
    "max_tokens": (lambda v: v >= 1, "at least 1"),
    "timeout": (lambda v: v > 0, "more than 0 seconds"),
    "max_cost": (lambda v: v > 0, "more than 0 USD"),
    "temperature": (lambda v: 0 <= v <= 2, "from 0 to 2"),
    "near_dup": (lambda v: 0 < v <= 1, "a cosine in (0, 1]"),
    "rouge_l": (lambda v: 0 < v <= 1, "a ROUGE-L F in (0, 1]"),
}


def _check_numbers(args: argparse.Namespace) -> None:
    for name, (ok, what) in _NUMBER_RULES.items():
        value = getattr(args, name, None)
        if value is not None and not ok(value):
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} must be {what} (got {value})", f"pass {flag} as {what}")


def _check_inputs_outside(out: str, source: str | None) -> None:
    """The run folder must not overlap the pool / seed file (a run file of the same name would overwrite it)."""
    from data_advisor.io import check_disjoint
    from data_advisor.runs import RUN_FILES

    if source:
        check_disjoint([Path(source)], Path(out), RUN_FILES)


def _report(summary: Any) -> None:
    """The summary line, then one line per run warning (off-target stall, coverage made worse)."""
    _eprint(("resumed: " if summary.resumed else "") + summary.line())
    for w in summary.warnings:
        _eprint(f"warning: {w}")


def cmd_generate(args: argparse.Namespace) -> int:
    from data_advisor.advisor.loop import run_method

    config = _config_from(args, method=args.method, model=args.model, advisor_model=args.advisor_model,
                          advice=args.advice, per_call=args.per_call, seed_prompts=args.seed_prompts,
                          pool_admission=args.pool_admission, temperature=args.temperature)
    _check_numbers(args)
    _check_inputs_outside(args.out, args.seed_prompts)
    summary = run_method(config, Path(args.out), progress=not args.quiet)
    _report(summary)
    return 0


#: ``curate --strategy`` takes the method's own name; the first spellings stay accepted.
_CURATE_STRATEGY_ALIASES = {"advisor": "curate", "random": "curate-random"}


def cmd_curate(args: argparse.Namespace) -> int:
    from data_advisor.advisor.loop import run_method

    method = _CURATE_STRATEGY_ALIASES.get(args.strategy, args.strategy)
    config = _config_from(args, method=method, pool=args.pool, pool_text_field=args.text_field,
                          advice=args.advice, model=args.model, advisor_model=args.advisor_model)
    _check_numbers(args)
    _check_inputs_outside(args.out, args.pool)
    summary = run_method(config, Path(args.out), progress=not args.quiet)
    _report(summary)
    return 0


def cmd_respond(args: argparse.Namespace) -> int:
    from data_advisor import _env
    from data_advisor.advisor.responses import respond
    from data_advisor.io import ensure_writable_dir, removed_on_failure
    from data_advisor.llm.client import LLMClient, LLMSettings
    from data_advisor.runs import read_run

    _check_numbers(args)
    run_dir = Path(args.run)
    read_run(run_dir)  # a missing or damaged run folder is refused before the LLM client writes its ledger there
    if args.output and Path(args.output).resolve().parent == run_dir.resolve() and Path(args.output).name in (
            "config.json", "prompts.jsonl", "rounds.jsonl", "coverage.json", "assignments.jsonl", "llm_calls.jsonl"):
        raise InputError(f"--output {args.output} would write into the run's own {Path(args.output).name}",
                         "pass another file, e.g. RUN/responses.jsonl (the default)")
    output = Path(args.output) if args.output else run_dir / "responses.jsonl"
    if output.is_dir():
        raise InputError(f"--output {output} is a folder", f"pass the JSONL file to write, e.g. {output / 'responses.jsonl'}")
    settings = LLMSettings(model=args.model, api_base=args.api_base, timeout_s=args.timeout,
                           max_retries=args.max_retries, concurrency=args.concurrency,
                           cache_dir=_env.cache_root() / "llm", max_tokens=args.max_tokens)
    with removed_on_failure(output.parent):  # --output new/dir/x.jsonl: the folders go again if nothing was written
        ensure_writable_dir(output.parent)
        client = LLMClient(settings, ledger_path=run_dir / "llm_calls_respond.jsonl")
        summary = respond(run_dir, client, out=output, max_tokens=args.max_tokens, progress=not args.quiet)
    _eprint(summary.line())
    return 0


def register(add_parser: Callable[..., argparse.ArgumentParser]) -> None:
    """Add this module's subcommands (``add_parser`` is the main parser's ``subparsers.add_parser``)."""
    p = add_parser("generate", help="advisor-driven (or Self-Instruct) prompt generation through an LLM")
    _add_loop_args(p)
    p.add_argument("--model", required=True, help="generator model, any litellm name (openai/gpt-4o-mini, "
                                                   "anthropic/..., ollama/..., hosted_vllm/...)")
    p.add_argument("--advisor-model", help="advisor model (default: the generator model)")
    p.add_argument("--method", choices=["advisor", "self-instruct", "self-instruct-paper"], default="advisor")
    p.add_argument("--advice", choices=["llm", "numeric", "summary"], default="llm",
                   help="how the next issue is chosen: advisor LLM over the gap table, largest numeric gap, "
                        "or the paper's text summary (ablation)")
    p.add_argument("--per-call", type=int, default=4, help="prompts asked of the generator per call")
    p.add_argument("--seed-prompts", help="seed prompts file (default: the shipped safety seeds)")
    p.add_argument("--pool-admission", choices=["first", "all"], default="first",
                   help="kept prompts that join the in-context example pool: the first of each round (paper) or all")
    p.add_argument("--temperature", type=float, default=None, help="generator temperature (method default)")
    _add_llm_args(p)
    p.set_defaults(func=cmd_generate)

    p = add_parser("curate", help="offline: choose N prompts from a candidate pool to fill coverage gaps")
    p.add_argument("pool", help="candidate pool file (any input format)")
    p.add_argument("--text-field", help="field holding the prompt in the pool file")
    _add_loop_args(p)
    p.add_argument("--strategy", choices=["curate", "curate-random", *_CURATE_STRATEGY_ALIASES], default="curate",
                   metavar="{curate,curate-random}",
                   help="curate: fill the largest gaps with relevant, non-redundant prompts; curate-random: baseline "
                        "(the run's method; 'advisor' and 'random' are the old spellings)")
    p.add_argument("--advice", choices=["numeric", "llm", "summary"], default="numeric",
                   help="numeric (default, no LLM) or an advisor LLM given with --model")
    p.add_argument("--model", help="advisor model for --advice llm/summary")
    p.add_argument("--advisor-model", help=argparse.SUPPRESS)
    _add_llm_args(p)
    p.set_defaults(func=cmd_curate)

    p = add_parser("respond", help="write safe, helpful responses for a run's prompts (chat JSONL for SFT)")
    p.add_argument("run", help="run folder")
    p.add_argument("--model", required=True, help="responder model, any litellm name")
    p.add_argument("--output", help="output file (default RUN/responses.jsonl)")
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("-q", "--quiet", action="store_true")
    _add_llm_args(p)
    p.set_defaults(func=cmd_respond)
