"""The advisor loop: monitor → weakness → advise → generate → filter → update, round after round.

One orchestrator serves every method, so they differ only where they really differ:

=====================  ==========================  ============================  ==================
method                 advice                      candidates from               pool admission
=====================  ==========================  ============================  ==================
advisor                llm / numeric / summary     generator LLM                 first kept / round
self-instruct          none                        LLM, 6 seed + 2 generated     every kept prompt
self-instruct-paper    none                        LLM, 5 examples               first kept / round
curate                 numeric (or llm)            unused prompts of a pool      —
curate-random          none                        random unused pool prompts    —
=====================  ==========================  ============================  ==================

Every random choice draws from ``random.Random((seed, round))``, so a resumed run continues exactly as an
uninterrupted one would (LLM answers aside), and each kept prompt is appended and fsync'd before the next
round starts: a SIGKILL at any moment loses at most the round in flight and never duplicates a prompt.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from data_advisor.advisor.advise import Advice, LLMAdvisor, NumericAdvisor, SummaryAdvisor, rank_weaknesses
from data_advisor.advisor.filters import FilterConfig, filter_candidates
from data_advisor.advisor.generate import (
    AdvisedGenerator,
    Candidates,
    PoolRetriever,
    SelfInstructGenerator,
    SelfInstructPaperGenerator,
)
from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.advisor.store import RunStore, discard_new_run_on_failure
from data_advisor.coverage.audit import AuditSettings
from data_advisor.coverage.embedders import make_embedder
from data_advisor.coverage.taxonomy import Taxonomy, load_taxonomy
from data_advisor.data import load_prompts
from data_advisor.errors import DataAdvisorError, InputError, LLMError

METHODS = ("advisor", "self-instruct", "self-instruct-paper", "curate", "curate-random")
ADVICE_MODES = ("llm", "numeric", "summary")
SEEDS_DIR = Path(__file__).parent / "seeds"


def _file_fingerprint(path: str | None) -> str | None:
    if not path:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


@dataclass
class RunConfig:
    """Everything that defines a run; stored as config.json and compared on resume."""

    method: str = "advisor"
    taxonomy: str = "catqa-11"
    n: int = 100
    model: str | None = None
    advisor_model: str | None = None
    api_base: str | None = None
    advice: str = "llm"
    per_round: int = 12
    per_call: int = 4
    n_examples: int = 3
    seed: int = 0
    recluster_every: int = 10
    pool_admission: str = "first"
    on_target: str = "keep"
    near_dup_cosine: float | None = None
    rouge_l_max: float | None = None
    seed_prompts: str | None = None
    pool: str | None = None
    pool_text_field: str | None = None
    embedding_model: str = "default"
    temperature: float | None = None
    max_rounds: int | None = None
    max_idle_rounds: int = 5
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 5

    def validate(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}", f"use one of: {', '.join(METHODS)}")
        if self.advice not in ADVICE_MODES:
            raise InputError(f"unknown advice mode {self.advice!r}", f"use one of: {', '.join(ADVICE_MODES)}")
        if self.n < 1 or self.per_round < 1:
            raise InputError("--n and --per-round must be at least 1", "pass positive numbers")
        needs_llm = self.method in ("advisor", "self-instruct", "self-instruct-paper") or (
            self.method == "curate" and self.advice != "numeric")
        if needs_llm and not (self.model or self.advisor_model):
            raise InputError(f"method {self.method!r} with advice {self.advice!r} needs an LLM",
                             "pass --model (any litellm model, e.g. openai/gpt-4o-mini), "
                             "or use `data-advisor curate` / --advice numeric to run offline")
        if self.method.startswith("curate") and not self.pool:
            raise InputError("curation needs a candidate pool", "pass the pool file as the first argument")
        for what, path in (("pool", self.pool), ("seed prompts", self.seed_prompts)):
            if path and not Path(path).exists():
                raise InputError(f"{what} file not found: {path}", "check the path (relative paths start from the "
                                                                   "current folder)")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["seed_prompts_sha256"] = _file_fingerprint(self.seed_prompts)
        d["pool_sha256"] = _file_fingerprint(self.pool)
        return d


@dataclass
class RunSummary:
    """What a finished (or stopped) run did."""

    out: Path
    n_prompts: int
    rounds: int
    kept: int
    rejected: int
    cost_usd: float
    metrics: dict[str, float] = field(default_factory=dict)
    resumed: bool = False
    stopped_early: str | None = None

    def line(self) -> str:
        m = self.metrics
        extra = f"; stopped: {self.stopped_early}" if self.stopped_early else ""
        return (f"{self.n_prompts} prompts in {self.out} after {self.rounds} rounds "
                f"(kept {self.kept}, rejected {self.rejected}, spent ${self.cost_usd:.4f}); "
                f"entropy {m.get('normalized_entropy', 0):.3f}, coverage {m.get('coverage_ratio', 0):.2f}, "
                f"Vendi {m.get('vendi_score', 0):.1f}{extra}")


def load_seed_prompts(config: RunConfig, taxonomy: Taxonomy) -> list[str]:
    """The user's --seed-prompts, else the shipped seeds (safety seeds for harm taxonomies)."""
    if config.seed_prompts:
        return load_prompts(config.seed_prompts).texts
    name = "instruction_seeds.jsonl" if config.method == "self-instruct" and taxonomy.id == "background" \
        else "safety_seeds.jsonl"
    return load_prompts(SEEDS_DIR / name).texts


def _make_client(model: str, config: RunConfig, run_dir: Path) -> Any:
    from data_advisor import _env
    from data_advisor.llm.client import LLMClient, LLMSettings

    settings = LLMSettings(model=model, api_base=config.api_base, timeout_s=config.timeout_s,
                           max_retries=config.max_retries, concurrency=config.concurrency,
                           cache_dir=_env.cache_root() / "llm", max_tokens=1024,
                           temperature=config.temperature if config.temperature is not None else 0.9)
    return LLMClient(settings, ledger_path=run_dir / "llm_calls.jsonl", jitter_seed=config.seed)


class AdvisorLoop:
    """Runs one configured method into a run folder (create or resume)."""

    def __init__(self, config: RunConfig, out: Path, *, progress: bool = True, clients: dict[str, Any] | None = None):
        config.validate()
        self.config = config
        self.progress = progress
        self.taxonomy = load_taxonomy(config.taxonomy)
        self.store = RunStore(Path(out), config.to_json())
        self.out = self.store.dir
        self.embedder = make_embedder(config.embedding_model)
        self.settings = AuditSettings(taxonomy=self.taxonomy.id, model=config.embedding_model, seed=config.seed)
        self.monitor = CoverageMonitor(self.taxonomy, self.embedder, self.settings)
        self.clients = clients or {}
        self.filters = FilterConfig.for_method(config.method, on_target=config.on_target,
                                               near_dup_cosine=config.near_dup_cosine, rouge_l_max=config.rouge_l_max)
        self._build_parts()
        self._restore()

    # -- construction -------------------------------------------------------------------------------------
    def _client(self, model: str | None) -> Any:
        assert model is not None
        if model not in self.clients:
            self.clients[model] = _make_client(model, self.config, self.out)
        return self.clients[model]

    def _build_parts(self) -> None:
        c = self.config
        gen_model = c.model or c.advisor_model
        self.pool_retriever: PoolRetriever | None = None
        if c.method.startswith("curate"):
            self._load_pool()
        if c.method == "advisor" or c.method == "curate":
            if c.advice == "numeric":
                self.advisor: NumericAdvisor | None = NumericAdvisor(self.monitor)
            elif c.advice == "llm":
                self.advisor = LLMAdvisor(self.monitor, self._client(c.advisor_model or gen_model),
                                          seed=c.seed)
            else:
                self.advisor = SummaryAdvisor(self.monitor, self._client(c.advisor_model or gen_model))
        else:
            self.advisor = None
        self.seeds = load_seed_prompts(c, self.taxonomy) if not c.method.startswith("curate") else []
        if c.method == "advisor":
            self.generator: Any = AdvisedGenerator(self._client(gen_model), self.taxonomy, per_call=c.per_call,
                                                   n_examples=c.n_examples,
                                                   temperature=c.temperature if c.temperature is not None else 0.9)
        elif c.method == "self-instruct":
            self.generator = SelfInstructGenerator(self._client(gen_model), self.seeds,
                                                   temperature=c.temperature if c.temperature is not None else 0.7)
        elif c.method == "self-instruct-paper":
            self.generator = SelfInstructPaperGenerator(self._client(gen_model),
                                                        temperature=c.temperature if c.temperature is not None else 0.9)
        else:
            self.generator = None

    def _load_pool(self) -> None:
        c = self.config
        pool = load_prompts(c.pool, text_field=c.pool_text_field, skip_invalid=True, truncate=True)  # type: ignore[arg-type]
        vecs = self.embedder.encode(pool.texts, show_progress=self.progress)
        a = self.monitor.assign(vecs)
        scores = self.monitor.assigner.principle_scores(vecs)
        self.pool_retriever = PoolRetriever(
            pool.texts, pool.ids, vecs, scores, [a.nearest_id(i) for i in range(len(pool))], a.anchored,
            a.principle_ids, strategy="random" if c.method == "curate-random" else "mmr")

    def _restore(self) -> None:
        """Rebuild monitor, example pool, summary and pool usage from the run folder (resume)."""
        prompts = self.store.state.prompts
        if prompts:
            self.monitor.add([p["id"] for p in prompts], [p["text"] for p in prompts])
        self.pool_texts: list[str] = list(self.seeds)
        if self.seeds:
            seed_assign = self.monitor.assign(self.monitor.embed(self.seeds))
            self.pool_anchor: list[str | None] = [seed_assign.anchor_id(i) for i in range(len(self.seeds))]
        else:
            self.pool_anchor = []
        seen_rounds: set[int] = set()
        for p in prompts:
            admit = self.config.pool_admission == "all" or self.config.method == "self-instruct"
            if admit or p["round"] not in seen_rounds:
                self.pool_texts.append(p["text"])
                self.pool_anchor.append(p.get("anchor_id"))
            seen_rounds.add(p["round"])
        if isinstance(self.advisor, SummaryAdvisor):
            for r in reversed(self.store.state.rounds):
                if r.get("summary"):
                    self.advisor.summary = r["summary"]
                    break
        if self.pool_retriever is not None:
            self.pool_retriever.mark_used([p["source_id"] for p in prompts if p.get("source_id")])

    # -- the loop -----------------------------------------------------------------------------------------
    def _ledger_totals(self) -> dict[str, float]:
        tot = {"prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
        for client in self.clients.values():
            t = client.ledger.totals()
            for k in tot:
                tot[k] += t.get(k, 0)
        return tot

    def run(self) -> RunSummary:
        c = self.config
        n_have = len(self.monitor)
        round_no = self.store.state.next_round
        max_rounds = c.max_rounds or max(20, 10 * -(-c.n // c.per_round))
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.n, initial=min(n_have, c.n), unit="prompt", desc=c.method, file=sys.stderr)
        kept_total = len(self.store.state.prompts)
        rejected_total = sum(r.get("rejected", 0) for r in self.store.state.rounds)
        idle = 0
        stopped: str | None = None
        rounds_run = 0
        try:
            while len(self.monitor) < c.n:
                if round_no >= max_rounds:
                    stopped = f"reached the round limit ({max_rounds}) with {len(self.monitor)} of {c.n} prompts"
                    break
                try:
                    record = self._round(round_no, c.n - len(self.monitor))
                except LLMError as exc:
                    # Same error object (its kind/status/attempts stay for callers), with the resume hint added.
                    hint = "re-run the same command: the run resumes where it stopped"
                    if "resume" not in exc.fix:
                        exc.fix = f"{exc.fix.rstrip('.')}; then {hint}" if exc.fix else hint
                        exc.args = (exc.one_line(),)
                    raise
                rounds_run += 1
                kept_total += record["kept"]
                rejected_total += record["rejected"]
                idle = idle + 1 if record["kept"] == 0 else 0
                if bar is not None:
                    bar.update(record["kept"])
                    top = rank_weaknesses(self.monitor)[0]
                    bar.set_postfix_str(f"round {round_no} kept {kept_total} rej {rejected_total} "
                                        f"top gap {top[0]} {top[2]:+.3f} ${record['cost_usd_total']:.4f}")
                if self.pool_retriever is not None and self.pool_retriever.remaining == 0 and len(self.monitor) < c.n:
                    stopped = f"the pool is exhausted with {len(self.monitor)} of {c.n} prompts"
                    break
                if idle >= c.max_idle_rounds:
                    raise DataAdvisorError(
                        f"no prompt was kept in {idle} consecutive rounds (last rejections: "
                        f"{record['rejected_reasons']}, problems: {record['problems']})",
                        "check the model answers in llm_calls.jsonl or loosen the filters, then re-run the same "
                        "command to resume", exit_code=3)
                round_no += 1
        finally:
            if bar is not None:
                bar.close()
        self.finalize()
        return RunSummary(out=self.out, n_prompts=len(self.monitor), rounds=round_no, kept=kept_total,
                          rejected=rejected_total, cost_usd=self._ledger_totals()["cost_usd"],
                          metrics=self.monitor.quick_metrics(), resumed=self.store.resumed,
                          stopped_early=stopped)

    def _candidates(self, advice: Advice | None, k: int, rng: random.Random) -> Candidates:
        if self.pool_retriever is not None:
            return self.pool_retriever.propose(advice, k, rng, self.monitor)
        return self.generator.propose(advice, k, rng, self.pool_texts, self.pool_anchor)

    def _round(self, round_no: int, still_needed: int) -> dict[str, Any]:
        c = self.config
        rng = random.Random(f"{c.seed}:{round_no}")
        before = self._ledger_totals()
        gaps_before = {k: round(g.gap, 6) for k, g in self.monitor.gaps().items()}
        advice = self.advisor.advise(rng) if self.advisor is not None else None
        k = c.per_round
        cands = self._candidates(advice, k, rng)
        result = filter_candidates(cands.texts, self.monitor, self.filters,
                                   advised_anchor=advice.anchor_id if advice else None,
                                   references=self.seeds if c.method == "self-instruct" else ())
        take = min(len(result.texts), still_needed)
        ids = [f"r{round_no:05d}-{j:02d}" for j in range(take)]
        generator = ("pool:" + Path(c.pool).name) if self.pool_retriever is not None else (c.model or "")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kept_vecs = result.vectors[:take] if result.vectors is not None else None
        assignment = self.monitor.assign(kept_vecs) if take else None
        records = []
        for j in range(take):
            rec: dict[str, Any] = {
                "id": ids[j], "text": result.texts[j], "round": round_no,
                "issue": advice.issue if advice else None,
                "advised_anchor_id": advice.anchor_id if advice else None,
                "anchor_id": assignment.anchor_id(j) if assignment else None,
                "nearest_anchor_id": result.nearest_anchor[j],
                "score": round(float(assignment.score[j]), 6) if assignment else None,
                "on_target": result.on_target[j] if advice else None,
                "generator": generator, "method": c.method, "timestamp": now,
            }
            rec.update(cands.meta[result.source_index[j]])
            records.append(rec)
        # The kept prompts are appended (fsync'd) before anything else can fail — the summary advisor's observe()
        # is an LLM call — so a generated, paid-for round is never lost: a kill or an error before the round
        # record below leaves prompts without their record, which the store recovers on resume.
        self.store.append_prompts(records)
        if take:
            self.monitor.add(ids, result.texts[:take], kept_vecs)
            admit = records if (c.pool_admission == "all" or c.method == "self-instruct") else records[:1]
            for r in admit:
                self.pool_texts.append(r["text"])
                self.pool_anchor.append(r["anchor_id"])
        observed = self.advisor.observe(advice, result.texts[:take]) if (self.advisor and advice) else {}
        after = self._ledger_totals()
        if c.recluster_every and (round_no + 1) % c.recluster_every == 0 and len(self.monitor) >= 30:
            self.monitor.clusters(recluster=True)
        rejected = dict(result.rejected)
        if len(result.texts) > take:
            rejected["over_budget"] = len(result.texts) - take
        record = {
            "round": round_no,
            "issue": advice.issue if advice else None,
            "anchor_id": advice.anchor_id if advice else None,
            "rationale": advice.rationale if advice else None,
            "advice_mode": advice.mode if advice else None,
            "advice_overridden": advice.overridden if advice else False,
            "advice_note": advice.note if advice else "",
            "n_generated": len(cands.texts),
            "kept": take,
            "rejected": sum(rejected.values()) - rejected.get("over_budget", 0),
            "rejected_reasons": rejected,
            "problems": dict(cands.problems),
            "on_target": int(sum(result.on_target[:take])) if advice else None,
            "n_calls": cands.n_calls,
            "prompt_tokens": int(after["prompt_tokens"] - before["prompt_tokens"]),
            "completion_tokens": int(after["completion_tokens"] - before["completion_tokens"]),
            "cost_usd": round(after["cost_usd"] - before["cost_usd"], 8),
            "cost_usd_total": round(after["cost_usd"], 8),
            "n_prompts": len(self.monitor),
            "metrics": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.monitor.quick_metrics().items()},
            "anchor_counts": self.monitor.counts(),
            "gaps_before": gaps_before,
            **observed,
        }
        self.store.append_round(record)
        return record

    def finalize(self) -> None:
        """Write coverage.json, assignments.jsonl, embeddings.npy and report.html for the run as it stands."""
        if not len(self.monitor):
            return
        result = self.monitor.result(recluster=True, source=str(self.out / "prompts.jsonl"))
        result.write(self.out)
        from data_advisor.reports.html import render_run_report

        render_run_report(self.out, self.out / "report.html")


def run_method(config: RunConfig, out: Path, *, progress: bool = True) -> RunSummary:
    """Create or resume the run in ``out`` and run it to ``config.n`` prompts."""
    with discard_new_run_on_failure(out):  # a bad pool or seed file leaves no config.json (nor folder) behind
        loop = AdvisorLoop(config, out, progress=progress)
    return loop.run()
