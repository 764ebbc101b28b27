"""The advisor loop: monitor → weakness → advise → generate → filter → update, round after round.

One orchestrator serves every method; the method table (:mod:`data_advisor.advisor.config`) says where they
differ (advice, candidate source, example-pool admission, filters), so this module never asks which method runs.
Stages are typed: an :class:`~data_advisor.advisor.advise.IssueAdvisor` gives :class:`Advice`, a
:class:`~data_advisor.advisor.generate.CandidateSource` gives :class:`Candidates`, the filters give a
:class:`FilterResult`, and each round is written as :class:`~data_advisor.run_records.KeptPrompt` lines and one
:class:`~data_advisor.run_records.RoundRecord` — the same types the run report, ``respond`` and resume read.

With a base set (``--base``), the monitor starts from the user's prompts: every gap, target and advice is
measured on base + additions, ``--n`` counts the additions, and the run folder holds only the additions
(prompts.jsonl) plus a record of the base in config.json (``base_set``: path, kind, count, sha256) and its
coverage before the run in base.json.

Every random choice draws from ``random.Random((seed, round))``, so a resumed run continues exactly as an
uninterrupted one would (LLM answers aside), and each kept prompt is appended and fsync'd before the next
round starts: a SIGKILL at any moment loses at most the round in flight and never duplicates a prompt.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from data_advisor._env import log
from data_advisor.advisor.advise import (
    IssueAdvisor,
    LLMAdvisor,
    NumericAdvisor,
    SummaryAdvisor,
    rank_weaknesses,
)
from data_advisor.advisor.base import BaseSet, check_base_unchanged, load_base
from data_advisor.advisor.budget import Budget, Spend, check_priced, ledger_spend
from data_advisor.advisor.config import ADVICE_MODES, METHODS, Admission, CandidateSourceKind, RunConfig
from data_advisor.advisor.filters import filter_candidates
from data_advisor.advisor.generate import (
    AdvisedGenerator,
    CandidateSource,
    PoolRetriever,
    RoundContext,
    SelfInstructGenerator,
    SelfInstructPaperGenerator,
)
from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.advisor.stall import StallTracker, coverage_worse_warning
from data_advisor.advisor.summary import RunSummary
from data_advisor.coverage import metrics as M
from data_advisor.coverage.audit import AuditSettings
from data_advisor.coverage.embedding.registry import make_embedder
from data_advisor.coverage.taxonomy import Taxonomy, load_taxonomy
from data_advisor.coverage.warnings import CoverageWarning
from data_advisor.data import PromptSet, load_prompts
from data_advisor.errors import DataAdvisorError, InputError, LLMError
from data_advisor.io import write_json_atomic
from data_advisor.run_records import BaseSnapshot, KeptPrompt, RoundRecord
from data_advisor.runs import RunStore, discard_new_run_on_failure

if TYPE_CHECKING:
    from data_advisor.llm.client import LLMClient

__all__ = ["ADVICE_MODES", "METHODS", "AdvisorLoop", "RunConfig", "RunSummary", "run_method"]

SEEDS_DIR = Path(__file__).parent / "seeds"


def load_seed_prompts(config: RunConfig, taxonomy: Taxonomy) -> list[str]:
    """The user's --seed-prompts, else the shipped seeds (safety seeds for harm taxonomies)."""
    if config.seed_prompts:
        return load_prompts(config.seed_prompts).texts
    name = "instruction_seeds.jsonl" if config.spec.benign_seeds and taxonomy.id == "background" \
        else "safety_seeds.jsonl"
    return load_prompts(SEEDS_DIR / name).texts


def _make_client(model: str, config: RunConfig, run_dir: Path) -> LLMClient:
    from data_advisor import _env
    from data_advisor.llm.client import LLMClient, LLMSettings

    settings = LLMSettings(model=model, api_base=config.api_base, timeout_s=config.timeout_s,
                           max_retries=config.max_retries, concurrency=config.concurrency,
                           cache_dir=_env.cache_root() / "llm", max_tokens=1024,
                           temperature=config.temperature if config.temperature is not None else 0.9)
    return LLMClient(settings, ledger_path=run_dir / "llm_calls.jsonl", jitter_seed=config.seed)


class AdvisorLoop:
    """Runs one configured method into a run folder (create or resume)."""

    def __init__(self, config: RunConfig, out: Path, *, progress: bool = True,
                 clients: dict[str, LLMClient] | None = None) -> None:
        config.validate()
        self.config = config
        self.spec = config.spec
        self.progress = progress
        self.taxonomy = load_taxonomy(config.taxonomy)
        # Inputs are read before the run folder is created, so a bad base or pool leaves no folder behind.
        if config.max_cost_usd is not None:  # a cost cap on a model without a price would never stop the run
            check_priced([self._generator_model if self.spec.llm_source else None,
                          (config.advisor_model or self._generator_model) if self.spec.advised
                          and config.advice != "numeric" else None])
        self.base: BaseSet | None = load_base(config.base, text_field=config.base_text_field) if config.base else None
        self._pool: PromptSet | None = None
        if self.spec.uses_pool_file:
            self._pool = load_prompts(config.pool, text_field=config.pool_text_field, skip_invalid=True,  # type: ignore[arg-type]
                                      truncate=True)
            self._check_pool_adds_something()
        stored = self._json_config(Path(out))
        run_json = config.to_json()
        if self.base is not None:
            run_json["base_set"] = self.base.record.to_json()
            check_base_unchanged(stored.get("base_set"), self.base.record)
        self.store = RunStore(Path(out), run_json)
        self.out = self.store.dir
        self.embedder = make_embedder(config.embedding_model)
        self.settings = AuditSettings(taxonomy=self.taxonomy.id, embedding_model=config.embedding_model, seed=config.seed)
        self.monitor = CoverageMonitor(self.taxonomy, self.embedder, self.settings)
        self.clients = clients or {}
        self.filters = self.spec.filter_config(on_target=config.on_target, near_dup_cosine=config.near_dup_cosine,
                                               rouge_l_max=config.rouge_l_max)
        self.seeds = load_seed_prompts(config, self.taxonomy) if self.spec.llm_source else []
        self.pool_texts: list[str] = []
        self.pool_anchor: list[str | None] = []
        self._base_metrics: dict[str, float] = {}  # coverage of the base set before the run (none without a base)
        self._spend_mark: Spend | None = None
        self._round_note = ""
        self._start_from_base()
        self.advisor: IssueAdvisor | None = self._make_advisor() if self.spec.advised else None
        self.pool_retriever: PoolRetriever | None = None
        self.source: CandidateSource = SOURCE_BUILDERS[self.spec.source](self)
        self.stall = StallTracker(config.stall_on_target, config.stall_rounds, config.stall_backoff)
        self.budget = Budget(config.max_cost_usd, config.max_tokens)
        self._round_spend: list[Spend] = []  # per round, for the budget's estimate of the next one
        self._restore()

    @property
    def _offline(self) -> bool:
        """No LLM is called (curation with numeric advice): an idle round costs nothing but time."""
        return not self.spec.llm_source and self.config.advice == "numeric"

    def _check_pool_adds_something(self) -> None:
        """A pool whose every prompt is already in the base set can add nothing: refused before the run folder
        exists (it used to idle five rounds per re-run, then blame the LLM of an offline run)."""
        assert self._pool is not None
        have = {M.normalize_for_dedup(t) for t in (self.base.texts if self.base is not None else ())}
        if self._pool.texts and all(M.normalize_for_dedup(t) in have for t in self._pool.texts):
            raise InputError(f"every prompt of the pool {self.config.pool} is already in the base set "
                             f"{self.config.base} ({len(self._pool)} duplicates): the run could add nothing",
                             "pass a pool of new candidate prompts (not the base set itself)")

    @staticmethod
    def _json_config(out: Path) -> dict[str, object]:
        """The stored config.json, if any and readable (the store itself reports a damaged one)."""
        try:
            d = json.loads((out / "config.json").read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return d if isinstance(d, dict) else {}

    # -- construction -------------------------------------------------------------------------------------
    def _client(self, model: str | None) -> LLMClient:
        assert model is not None
        if model not in self.clients:
            self.clients[model] = _make_client(model, self.config, self.out)
        return self.clients[model]

    @property
    def _generator_model(self) -> str | None:
        return self.config.model or self.config.advisor_model

    def _make_advisor(self) -> IssueAdvisor:
        c = self.config
        model = c.advisor_model or self._generator_model
        builders: dict[str, Callable[[], IssueAdvisor]] = {
            "numeric": lambda: NumericAdvisor(self.monitor),
            "llm": lambda: LLMAdvisor(self.monitor, self._client(model), seed=c.seed),
            "summary": lambda: SummaryAdvisor(self.monitor, self._client(model)),
        }
        return builders[c.advice]()

    def _start_from_base(self) -> None:
        """Seed prompts, then the base set (into the monitor and the example pool), before any round."""
        if self.seeds:
            seed_assign = self.monitor.assign(self.monitor.embed(self.seeds))
            self.pool_texts = list(self.seeds)
            self.pool_anchor = [seed_assign.anchor_id(i) for i in range(len(self.seeds))]
        if self.base is None:
            return
        b = self.base
        vectors = self.embedder.encode(b.texts, show_progress=self.progress)
        a = self.monitor.add_base(b.ids, b.texts, vectors, b.clusters, anchor_ids=b.anchor_ids)
        if self.spec.admission is not Admission.NONE:  # the user's own prompts are the natural in-context examples
            self.pool_texts += b.texts
            self.pool_anchor += [a.anchor_id(i) for i in range(len(b))]
        gaps = self.monitor.gaps()
        before = BaseSnapshot(b.record, anchor_counts=self.monitor.counts(),
                              gaps={k: round(g.gap, 6) for k, g in gaps.items()},
                              shares={k: round(g.share, 6) for k, g in gaps.items()},
                              metrics=_rounded(self.monitor.quick_metrics()))
        write_json_atomic(self.out / "base.json", before.to_json())
        self._base_metrics = before.metrics

    def _load_pool(self) -> PoolRetriever:
        pool = self._pool
        assert pool is not None  # read in __init__ for every pool method
        vecs = self.embedder.encode(pool.texts, show_progress=self.progress)
        a = self.monitor.assign(vecs)
        scores = self.monitor.assigner.principle_scores(vecs)
        self.pool_retriever = PoolRetriever(
            pool.texts, pool.ids, vecs, scores, [a.nearest_id(i) for i in range(len(pool))], a.anchored,
            a.principle_ids, strategy="random" if self.spec.source is CandidateSourceKind.POOL_RANDOM else "mmr")
        return self.pool_retriever

    def _admit(self, kept: list[KeptPrompt]) -> None:
        """Kept prompts joining the in-context example pool, per the method's admission rule."""
        rule = self.spec.admission
        if rule is Admission.NONE:
            return
        admitted = kept if (rule is Admission.ALL or self.config.pool_admission == "all") else kept[:1]
        for p in admitted:
            self.pool_texts.append(p.text)
            self.pool_anchor.append(p.anchor_id)

    def _restore(self) -> None:
        """Rebuild monitor, example pool, advisor memory and pool usage from the run folder (resume)."""
        prompts = self.store.state.prompts
        if prompts:
            self.monitor.add([p.id for p in prompts], [p.text for p in prompts])
        by_round: dict[int, list[KeptPrompt]] = {}
        for p in prompts:
            by_round.setdefault(p.round, []).append(p)
        for rnd in sorted(by_round):
            self._admit(by_round[rnd])
        records = list(self.store.state.rounds)
        if self.advisor is not None:
            self.advisor.restore(records)
        self.stall.restore(records)
        self._round_spend = [Spend(r.cost_usd, r.prompt_tokens + r.completion_tokens) for r in records
                             if not r.recovered]
        if self.pool_retriever is not None and self._pool is not None:
            # pool prompts already in the set (kept, or duplicates of the base or of kept ones) are never proposed:
            # a re-run does not idle through the duplicates an earlier run already rejected
            have = {M.normalize_for_dedup(t) for t in self.monitor.texts}
            self.pool_retriever.mark_used([p.source_id for p in prompts if p.source_id] + [
                i for i, t in zip(self._pool.ids, self._pool.texts, strict=True) if M.normalize_for_dedup(t) in have])

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
        m = self.monitor
        round_no = self.store.state.next_round
        max_rounds = c.max_rounds or max(20, 10 * -(-c.n // c.per_round))
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.n, initial=min(m.n_added, c.n), unit="prompt", desc=c.method, file=sys.stderr)
        kept_total = len(self.store.state.prompts)
        rejected_total = sum(r.rejected for r in self.store.state.rounds)
        idle = 0
        stopped: str | None = None
        self._round_note = ""
        if self.advisor is not None and self._stalled_out(round_no):  # re-run after every candidate stalled
            self._round_note = f"off-target back-off lifted on re-run for {', '.join(self.stall.release())}"
        try:
            while m.n_added < c.n:
                if round_no >= max_rounds:
                    stopped = f"reached the round limit ({max_rounds}) with {m.n_added} of {c.n} prompts"
                    break
                stopped = self._stop_before_round(round_no)
                if stopped:
                    break
                try:
                    record = self._round(round_no, c.n - m.n_added)
                except LLMError as exc:
                    # Same error object (its kind/status/attempts stay for callers), with the resume hint added.
                    hint = "re-run the same command: the run resumes where it stopped"
                    if "resume" not in exc.fix:
                        exc.fix = f"{exc.fix.rstrip('.')}; then {hint}" if exc.fix else hint
                        exc.args = (exc.one_line(),)
                    raise
                kept_total += record.kept
                rejected_total += record.rejected
                idle = idle + 1 if record.kept == 0 else 0
                if bar is not None:
                    bar.update(record.kept)
                    top = rank_weaknesses(m)[0]
                    bar.set_postfix_str(f"round {round_no} kept {kept_total} rej {rejected_total} "
                                        f"top gap {top.anchor_id} {top.gap:+.3f} ${record.cost_usd_total:.4f}")
                if self.pool_retriever is not None and self.pool_retriever.remaining == 0 and m.n_added < c.n:
                    stopped = f"the pool is exhausted with {m.n_added} of {c.n} prompts"
                    break
                if idle >= c.max_idle_rounds and not self._offline:  # offline, the pool running out ends it

                    raise DataAdvisorError(
                        f"no prompt was kept in {idle} consecutive rounds (last rejections: "
                        f"{record.rejected_reasons}, problems: {record.problems})",
                        "check the model answers in llm_calls.jsonl or loosen the filters, then re-run the same "
                        "command to resume", exit_code=3)
                round_no += 1
        finally:
            if bar is not None:
                bar.close()
        warnings = self.finalize() or []  # (a caller that skips the outputs may replace finalize by a no-op)
        return RunSummary(out=self.out, n_prompts=m.n_added, rounds=round_no, kept=kept_total,
                          rejected=rejected_total, cost_usd=ledger_spend(self.out / "llm_calls.jsonl").cost_usd,
                          metrics=m.quick_metrics(), resumed=self.store.resumed, stopped_early=stopped,
                          n_base=m.n_base, warnings=[w.one_line() for w in warnings])

    def _stalled_out(self, round_no: int) -> list[str]:
        return self.stall.stalled_out(round_no, rank_weaknesses(self.monitor))

    def _stop_before_round(self, round_no: int) -> str | None:
        """Why the run must stop before ``round_no``: a budget cap it would cross, or every candidate stalled."""
        if self.budget.active:
            spent = ledger_spend(self.out / "llm_calls.jsonl")
            if self._spend_mark is not None and round_no > 0:
                self._round_spend.append(spent - self._spend_mark)
            self._spend_mark = spent
            reason = self.budget.stop_reason(spent, self._round_spend)
            if reason:
                return f"{reason} — {self.monitor.n_added} of {self.config.n} prompts"
        stalled = self._stalled_out(round_no) if self.advisor is not None else []
        return self.stall.stop_line(stalled) if stalled else None

    def _round(self, round_no: int, still_needed: int) -> RoundRecord:
        c = self.config
        m = self.monitor
        rng = random.Random(f"{c.seed}:{round_no}")
        before = self._ledger_totals()
        gaps_before = {k: round(g.gap, 6) for k, g in m.gaps().items()}
        stalled = self.stall.held_summary(round_no)
        if self.advisor is not None:
            self.advisor.held = {a: float(v["on_target_share"]) for a, v in stalled.items()}
        advice = self.advisor.advise(rng) if self.advisor is not None else None
        cands = self.source.propose(advice, c.per_round, rng, RoundContext(self.pool_texts, self.pool_anchor, m))
        result = filter_candidates(cands.texts, m, self.filters, advised_anchor=advice.anchor_id if advice else None,
                                   references=self.seeds if self.spec.seed_references else ())
        take = min(len(result.texts), still_needed)
        generator = ("pool:" + Path(c.pool).name) if self.spec.uses_pool_file and c.pool else (c.model or "")
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        kept_vecs = result.vectors[:take] if result.vectors is not None else None
        assignment = m.assign(kept_vecs) if take and kept_vecs is not None else None
        kept: list[KeptPrompt] = []
        for j in range(take):
            kept.append(KeptPrompt(
                id=f"r{round_no:05d}-{j:02d}", text=result.texts[j], round=round_no,
                issue=advice.issue if advice else None, advised_anchor_id=advice.anchor_id if advice else None,
                anchor_id=assignment.anchor_id(j) if assignment else None,
                nearest_anchor_id=result.nearest_anchor[j],
                score=round(float(assignment.score[j]), 6) if assignment else None,
                on_target=result.on_target[j] if advice else None, generator=generator, method=c.method,
                timestamp=now, source_id=cands.source_ids[result.source_index[j]]))
        # The kept prompts are appended (fsync'd) before anything else can fail — the summary advisor's observe()
        # is an LLM call — so a generated, paid-for round is never lost: a kill or an error before the round
        # record below leaves prompts without their record, which the store recovers on resume.
        self.store.append_prompts(kept)
        if take:
            m.add([p.id for p in kept], result.texts[:take], kept_vecs)
            self._admit(kept)
        summary = self.advisor.observe(round_no, advice, result.texts[:take]) if (self.advisor and advice) else None
        after = self._ledger_totals()
        if c.recluster_every and (round_no + 1) % c.recluster_every == 0 and len(m) >= 30:
            m.clusters(recluster=True)
        rejected = dict(result.rejected)
        if len(result.texts) > take:
            rejected["over_budget"] = len(result.texts) - take
        record = RoundRecord(
            round=round_no,
            issue=advice.issue if advice else None,
            anchor_id=advice.anchor_id if advice else None,
            rationale=advice.rationale if advice else None,
            advice_mode=advice.mode if advice else None,
            advice_overridden=advice.overridden if advice else False,
            advice_note=advice.note if advice else "",
            advice_repeats=advice.repeats if advice else 0,
            n_generated=len(cands.texts),
            kept=take,
            rejected=sum(rejected.values()) - rejected.get("over_budget", 0),
            rejected_reasons=rejected,
            problems=dict(cands.problems),
            on_target=int(sum(result.on_target[:take])) if advice else None,
            n_calls=cands.n_calls,
            prompt_tokens=int(after["prompt_tokens"] - before["prompt_tokens"]),
            completion_tokens=int(after["completion_tokens"] - before["completion_tokens"]),
            cost_usd=round(after["cost_usd"] - before["cost_usd"], 8),
            cost_usd_total=round(after["cost_usd"], 8),
            n_prompts=m.n_added,
            metrics=_rounded(m.quick_metrics()),
            anchor_counts=m.counts(),
            gaps_before=gaps_before,
            summary=summary,
            note=self._round_note,
            refusals={advice.anchor_id: rejected["refusal"]} if advice and rejected.get("refusal") else {},
            stalled=stalled,
        )
        self._round_note = ""
        self.store.append_round(record)
        if self.stall.observe(record) and self.progress:
            log.info(f"note: {self.stall.describe(record.anchor_id or '')} held back for {c.stall_backoff} rounds: "
                     "the generator stays off target on it")
        return record

    def finalize(self) -> list[CoverageWarning]:
        """Write coverage.json, assignments.jsonl, embeddings.npy and report.html for the run as it stands.

        With a base set they describe base + additions (the data set after the run): assignments.jsonl lists the
        base prompts first (``base_set.count`` of them in config.json), then the additions in prompts.jsonl order.
        """
        if not self.monitor.n_added:
            return []
        source = str(self.out / "prompts.jsonl")
        if self.base is not None:
            source = f"{self.base.record.path} + {source}"
        result = self.monitor.result(recluster=True, source=source)
        from data_advisor.reports.html import render_run_report

        records = list(self.store.state.rounds)
        warnings = [w for w in (self.stall.warning(offline=not self.spec.llm_source),
                                coverage_worse_warning(self._base_metrics, self.monitor.quick_metrics(), records,
                                                       self.config.stall_on_target)) if w is not None]
        result.report.warnings.extend(w.to_dict() for w in warnings)  # coverage.json and the report's banner
        result.write(self.out)
        render_run_report(self.out, self.out / "report.html")
        return warnings


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}


#: Candidate source per kind (the ``source`` column of the method table).
SOURCE_BUILDERS: dict[CandidateSourceKind, Callable[[AdvisorLoop], CandidateSource]] = {
    CandidateSourceKind.ADVISED: lambda loop: AdvisedGenerator(loop._client(loop._generator_model), loop.taxonomy,
                                             per_call=loop.config.per_call, n_examples=loop.config.n_examples,
                                             temperature=loop.config.generator_temperature),
    CandidateSourceKind.SELF_INSTRUCT: lambda loop: SelfInstructGenerator(loop._client(loop._generator_model), loop.seeds,
                                                        temperature=loop.config.generator_temperature),
    CandidateSourceKind.SELF_INSTRUCT_PAPER: lambda loop: SelfInstructPaperGenerator(loop._client(loop._generator_model),
                                                                   temperature=loop.config.generator_temperature),
    CandidateSourceKind.POOL_MMR: lambda loop: loop._load_pool(),
    CandidateSourceKind.POOL_RANDOM: lambda loop: loop._load_pool(),
}


def run_method(config: RunConfig, out: Path, *, progress: bool = True) -> RunSummary:
    """Create or resume the run in ``out`` and run it to ``config.n`` prompts."""
    with discard_new_run_on_failure(out):  # a bad pool or seed file leaves no config.json (nor folder) behind
        loop = AdvisorLoop(config, out, progress=progress)
    return loop.run()
