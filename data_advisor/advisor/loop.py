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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from data_advisor.advisor.advise import (
    IssueAdvisor,
    LLMAdvisor,
    NumericAdvisor,
    SummaryAdvisor,
    rank_weaknesses,
)
from data_advisor.advisor.base import BaseSet, check_base_unchanged, load_base
from data_advisor.advisor.config import ADVICE_MODES, METHODS, RunConfig
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
from data_advisor.advisor.store import RunStore, discard_new_run_on_failure
from data_advisor.coverage.audit import AuditSettings
from data_advisor.coverage.embedders import make_embedder
from data_advisor.coverage.taxonomy import Taxonomy, load_taxonomy
from data_advisor.data import PromptSet, load_prompts
from data_advisor.errors import DataAdvisorError, LLMError
from data_advisor.io import write_json_atomic
from data_advisor.run_records import KeptPrompt, RoundRecord

if TYPE_CHECKING:
    from data_advisor.llm.client import LLMClient

__all__ = ["ADVICE_MODES", "METHODS", "AdvisorLoop", "RunConfig", "RunSummary", "run_method"]

SEEDS_DIR = Path(__file__).parent / "seeds"


@dataclass
class RunSummary:
    """What a finished (or stopped) run did."""

    out: Path
    n_prompts: int  # prompts the run added (the base set not counted)
    rounds: int
    kept: int
    rejected: int
    cost_usd: float
    metrics: dict[str, float] = field(default_factory=dict)  # of base + additions
    resumed: bool = False
    stopped_early: str | None = None
    n_base: int = 0

    def line(self) -> str:
        m = self.metrics
        extra = f"; stopped: {self.stopped_early}" if self.stopped_early else ""
        base = f" on top of {self.n_base} base prompts" if self.n_base else ""
        return (f"{self.n_prompts} prompts in {self.out}{base} after {self.rounds} rounds "
                f"(kept {self.kept}, rejected {self.rejected}, spent ${self.cost_usd:.4f}); "
                f"entropy {m.get('normalized_entropy', 0):.3f}, coverage {m.get('coverage_ratio', 0):.2f}, "
                f"Vendi {m.get('vendi_score', 0):.1f}{extra}")


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
        self.base: BaseSet | None = load_base(config.base, text_field=config.base_text_field) if config.base else None
        self._pool: PromptSet | None = None
        if self.spec.uses_pool_file:
            self._pool = load_prompts(config.pool, text_field=config.pool_text_field, skip_invalid=True,  # type: ignore[arg-type]
                                      truncate=True)
        stored = self._json_config(Path(out))
        run_json = config.to_json()
        if self.base is not None:
            run_json["base_set"] = self.base.record.to_json()
            check_base_unchanged(stored.get("base_set"), self.base.record)
        self.store = RunStore(Path(out), run_json)
        self.out = self.store.dir
        self.embedder = make_embedder(config.embedding_model)
        self.settings = AuditSettings(taxonomy=self.taxonomy.id, model=config.embedding_model, seed=config.seed)
        self.monitor = CoverageMonitor(self.taxonomy, self.embedder, self.settings)
        self.clients = clients or {}
        self.filters = self.spec.filter_config(on_target=config.on_target, near_dup_cosine=config.near_dup_cosine,
                                               rouge_l_max=config.rouge_l_max)
        self.seeds = load_seed_prompts(config, self.taxonomy) if self.spec.llm_source else []
        self.pool_texts: list[str] = []
        self.pool_anchor: list[str | None] = []
        self._start_from_base()
        self.advisor: IssueAdvisor | None = self._make_advisor() if self.spec.advised else None
        self.pool_retriever: PoolRetriever | None = None
        self.source: CandidateSource = SOURCE_BUILDERS[self.spec.source](self)
        self._restore()

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
        if self.spec.admission != "none":  # the user's own prompts are the natural in-context examples
            self.pool_texts += b.texts
            self.pool_anchor += [a.anchor_id(i) for i in range(len(b))]
        before = {"base_set": b.record.to_json(), "anchor_counts": self.monitor.counts(),
                  "gaps": {k: round(g.gap, 6) for k, g in self.monitor.gaps().items()},
                  "shares": {k: round(g.share, 6) for k, g in self.monitor.gaps().items()},
                  "metrics": _rounded(self.monitor.quick_metrics())}
        write_json_atomic(self.out / "base.json", before)

    def _load_pool(self) -> PoolRetriever:
        pool = self._pool
        assert pool is not None  # read in __init__ for every pool method
        vecs = self.embedder.encode(pool.texts, show_progress=self.progress)
        a = self.monitor.assign(vecs)
        scores = self.monitor.assigner.principle_scores(vecs)
        self.pool_retriever = PoolRetriever(
            pool.texts, pool.ids, vecs, scores, [a.nearest_id(i) for i in range(len(pool))], a.anchored,
            a.principle_ids, strategy="random" if self.spec.source == "pool-random" else "mmr")
        return self.pool_retriever

    def _admit(self, kept: list[KeptPrompt]) -> None:
        """Kept prompts joining the in-context example pool, per the method's admission rule."""
        rule = self.spec.admission
        if rule == "none":
            return
        admitted = kept if (rule == "all" or self.config.pool_admission == "all") else kept[:1]
        for p in admitted:
            self.pool_texts.append(p.text)
            self.pool_anchor.append(p.anchor_id)

    def _restore(self) -> None:
        """Rebuild monitor, example pool, advisor memory and pool usage from the run folder (resume)."""
        prompts = [KeptPrompt.from_json(p) for p in self.store.state.prompts]
        if prompts:
            self.monitor.add([p.id for p in prompts], [p.text for p in prompts])
        by_round: dict[int, list[KeptPrompt]] = {}
        for p in prompts:
            by_round.setdefault(p.round, []).append(p)
        for rnd in sorted(by_round):
            self._admit(by_round[rnd])
        if self.advisor is not None:
            self.advisor.restore([RoundRecord.from_json(r) for r in self.store.state.rounds])
        if self.pool_retriever is not None:
            self.pool_retriever.mark_used([p.source_id for p in prompts if p.source_id])

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
        rejected_total = sum(RoundRecord.from_json(r).rejected for r in self.store.state.rounds)
        idle = 0
        stopped: str | None = None
        try:
            while m.n_added < c.n:
                if round_no >= max_rounds:
                    stopped = f"reached the round limit ({max_rounds}) with {m.n_added} of {c.n} prompts"
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
                                        f"top gap {top[0]} {top[2]:+.3f} ${record.cost_usd_total:.4f}")
                if self.pool_retriever is not None and self.pool_retriever.remaining == 0 and m.n_added < c.n:
                    stopped = f"the pool is exhausted with {m.n_added} of {c.n} prompts"
                    break
                if idle >= c.max_idle_rounds:
                    raise DataAdvisorError(
                        f"no prompt was kept in {idle} consecutive rounds (last rejections: "
                        f"{record.rejected_reasons}, problems: {record.problems})",
                        "check the model answers in llm_calls.jsonl or loosen the filters, then re-run the same "
                        "command to resume", exit_code=3)
                round_no += 1
        finally:
            if bar is not None:
                bar.close()
        self.finalize()
        return RunSummary(out=self.out, n_prompts=m.n_added, rounds=round_no, kept=kept_total,
                          rejected=rejected_total, cost_usd=self._ledger_totals()["cost_usd"],
                          metrics=m.quick_metrics(), resumed=self.store.resumed, stopped_early=stopped,
                          n_base=m.n_base)

    def _round(self, round_no: int, still_needed: int) -> RoundRecord:
        c = self.config
        m = self.monitor
        rng = random.Random(f"{c.seed}:{round_no}")
        before = self._ledger_totals()
        gaps_before = {k: round(g.gap, 6) for k, g in m.gaps().items()}
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
            meta = dict(cands.meta[result.source_index[j]])
            source_id = meta.pop("source_id", None)
            kept.append(KeptPrompt(
                id=f"r{round_no:05d}-{j:02d}", text=result.texts[j], round=round_no,
                issue=advice.issue if advice else None, advised_anchor_id=advice.anchor_id if advice else None,
                anchor_id=assignment.anchor_id(j) if assignment else None,
                nearest_anchor_id=result.nearest_anchor[j],
                score=round(float(assignment.score[j]), 6) if assignment else None,
                on_target=result.on_target[j] if advice else None, generator=generator, method=c.method,
                timestamp=now, source_id=None if source_id is None else str(source_id), extra=meta))
        # The kept prompts are appended (fsync'd) before anything else can fail — the summary advisor's observe()
        # is an LLM call — so a generated, paid-for round is never lost: a kill or an error before the round
        # record below leaves prompts without their record, which the store recovers on resume.
        self.store.append_prompts([p.to_json() for p in kept])
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
        )
        self.store.append_round(record.to_json())
        return record

    def finalize(self) -> None:
        """Write coverage.json, assignments.jsonl, embeddings.npy and report.html for the run as it stands.

        With a base set they describe base + additions (the data set after the run): assignments.jsonl lists the
        base prompts first (``base_set.count`` of them in config.json), then the additions in prompts.jsonl order.
        """
        if not self.monitor.n_added:
            return
        source = str(self.out / "prompts.jsonl")
        if self.base is not None:
            source = f"{self.base.record.path} + {source}"
        result = self.monitor.result(recluster=True, source=source)
        from data_advisor.reports.html import render_run_report

        result.write(self.out)
        render_run_report(self.out, self.out / "report.html")


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in metrics.items()}


#: Candidate source per kind (the ``source`` column of the method table).
SOURCE_BUILDERS: dict[str, Callable[[AdvisorLoop], CandidateSource]] = {
    "advised": lambda loop: AdvisedGenerator(loop._client(loop._generator_model), loop.taxonomy,
                                             per_call=loop.config.per_call, n_examples=loop.config.n_examples,
                                             temperature=loop.config.generator_temperature),
    "self-instruct": lambda loop: SelfInstructGenerator(loop._client(loop._generator_model), loop.seeds,
                                                        temperature=loop.config.generator_temperature),
    "self-instruct-paper": lambda loop: SelfInstructPaperGenerator(loop._client(loop._generator_model),
                                                                   temperature=loop.config.generator_temperature),
    "pool-mmr": lambda loop: loop._load_pool(),
    "pool-random": lambda loop: loop._load_pool(),
}


def run_method(config: RunConfig, out: Path, *, progress: bool = True) -> RunSummary:
    """Create or resume the run in ``out`` and run it to ``config.n`` prompts."""
    with discard_new_run_on_failure(out):  # a bad pool or seed file leaves no config.json (nor folder) behind
        loop = AdvisorLoop(config, out, progress=progress)
    return loop.run()
