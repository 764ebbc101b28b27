"""What a run is: the method table (one row per method) and :class:`RunConfig` (stored as config.json).

Why a table: the five methods differ in four things only — whether an advisor picks each round's issue, where
candidates come from, which kept prompts join the in-context example pool, and how candidates are filtered.  Each
row states those once; the loop, the filters and validation read the row instead of asking ``method == …``.

=====================  ==========  ==========================  =====================  =====================
method                 advised     candidate source            example-pool admission filters
=====================  ==========  ==========================  =====================  =====================
advisor                yes         generator LLM (advised)     first kept / round     generated
self-instruct          no          LLM, 6 seed + 2 generated   every kept prompt      Self-Instruct's
self-instruct-paper    no          LLM, 5 examples             first kept / round     length only
curate                 yes         unused pool prompts (MMR)   none                   pool
curate-random          no          random unused pool prompts  none                   pool
=====================  ==========  ==========================  =====================  =====================
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from data_advisor.advisor.filters import SI_BLACKLIST, FilterConfig
from data_advisor.errors import InputError
from data_advisor.io import check_link
from data_advisor.llm.settings import LLMSettings

ADVICE_MODES = ("llm", "numeric", "summary")


class CandidateSourceKind(StrEnum):
    """Where a method's candidates come from (a key of the loop's source builders)."""

    ADVISED = "advised"  # the generator LLM writes prompts for the advised issue
    SELF_INSTRUCT = "self-instruct"  # canonical Self-Instruct: a numbered continuation of sampled tasks
    SELF_INSTRUCT_PAPER = "self-instruct-paper"  # as the Data Advisor authors ran it: one new question per call
    POOL_MMR = "pool-mmr"  # the user's pool, relevant to the advice and not redundant (MMR)
    POOL_RANDOM = "pool-random"  # the user's pool, at random (the baseline)

    @property
    def uses_pool_file(self) -> bool:
        return self in (CandidateSourceKind.POOL_MMR, CandidateSourceKind.POOL_RANDOM)


class Admission(StrEnum):
    """Which kept prompts join the in-context example pool."""

    FIRST = "first"  # the first of each round (--pool-admission all: every one)
    ALL = "all"  # every kept prompt
    NONE = "none"  # no example pool (the pool methods)


@dataclass(frozen=True)
class MethodSpec:
    """One row of the method table."""

    name: str
    advised: bool  # an advisor (mode from --advice) picks each round's issue
    source: CandidateSourceKind
    admission: Admission
    filters: FilterConfig
    llm_source: bool  # candidates are written by the generator LLM (needs --model)
    seed_references: bool = False  # candidates must also be novel against the seed tasks (they are in SI's pool)
    temperature: float = 0.9  # generator temperature unless --temperature is given
    benign_seeds: bool = False  # with the benign ``background`` taxonomy, start from the instruction seeds

    @property
    def uses_pool_file(self) -> bool:
        return self.source.uses_pool_file

    def filter_config(self, **overrides: Any) -> FilterConfig:
        """This method's filters with the non-None ``overrides`` applied (CLI flags)."""
        return replace(self.filters, **{k: v for k, v in overrides.items() if v is not None})


METHOD_TABLE: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("advisor", advised=True, source=CandidateSourceKind.ADVISED, admission=Admission.FIRST, filters=FilterConfig(),
               llm_source=True),
    # canonical Self-Instruct: >3 and ≤150 words, blacklist, ROUGE-L ≥ 0.7 rejected, no cosine near-dup check
    MethodSpec("self-instruct", advised=False, source=CandidateSourceKind.SELF_INSTRUCT, admission=Admission.ALL,
               filters=FilterConfig(min_chars=1, min_words=4, max_words=150, near_dup_cosine=None, blacklist=SI_BLACKLIST),
               llm_source=True, seed_references=True, temperature=0.7, benign_seeds=True),
    # as the Data Advisor authors ran it: length ≥ 20 characters only
    MethodSpec("self-instruct-paper", advised=False, source=CandidateSourceKind.SELF_INSTRUCT_PAPER, admission=Admission.FIRST,
               filters=FilterConfig(exact_dedup=False, near_dup_cosine=None, rouge_l_max=None), llm_source=True),
    MethodSpec("curate", advised=True, source=CandidateSourceKind.POOL_MMR, admission=Admission.NONE,
               filters=FilterConfig(min_chars=1, rouge_l_max=None, reject_refusals=False), llm_source=False),
    MethodSpec("curate-random", advised=False, source=CandidateSourceKind.POOL_RANDOM, admission=Admission.NONE,
               filters=FilterConfig(min_chars=1, rouge_l_max=None, reject_refusals=False), llm_source=False),
)}
METHODS = tuple(METHOD_TABLE)


def method_spec(method: str) -> MethodSpec:
    try:
        return METHOD_TABLE[method]
    except KeyError:
        raise InputError(f"unknown method {method!r}", f"use one of: {', '.join(METHODS)}") from None


def _file_fingerprint(path: str | None) -> str | None:
    if not path:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


#: RunConfig fields added after runs were first stored: left out of config.json at their defaults (the field
#: defaults below), so older run folders resume unchanged.
_NEWER_FIELDS = ("stall_on_target", "stall_rounds", "stall_backoff", "max_cost_usd", "max_tokens")


@dataclass
class RunConfig:
    """Everything that defines a run; stored as config.json and compared on resume."""

    method: str = "advisor"
    taxonomy: str = "catqa-11"
    n: int = 100  # prompts the run adds (on top of the base set, when there is one)
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
    base: str | None = None  # the user's existing data (prompts file or audit folder) the run extends
    base_text_field: str | None = None
    embedding_model: str = "default"
    temperature: float | None = None
    max_rounds: int | None = None
    max_idle_rounds: int = 5
    #: How the LLM client is driven: the client's own defaults unless the run says otherwise.
    concurrency: int = LLMSettings.concurrency
    timeout_s: float = LLMSettings.timeout_s
    max_retries: int = LLMSettings.max_retries
    #: Off-target stall: an anchor whose advised rounds kept under ``stall_on_target`` of their prompts on target
    #: ``stall_rounds`` times is not advised for the next ``stall_backoff`` rounds (see advisor/stall.py).
    stall_on_target: float = 0.25
    stall_rounds: int = 2
    stall_backoff: int = 3
    #: Budgets (generator + advisor, from the run's ledger, every retry counted): the run stops before the round
    #: that would cross them.  They may change on resume (a higher cap continues the run).
    max_cost_usd: float | None = None
    max_tokens: int | None = None

    @property
    def spec(self) -> MethodSpec:
        return method_spec(self.method)

    @property
    def generator_temperature(self) -> float:
        return self.temperature if self.temperature is not None else self.spec.temperature

    def validate(self) -> None:
        spec = self.spec
        if self.advice not in ADVICE_MODES:
            raise InputError(f"unknown advice mode {self.advice!r}", f"use one of: {', '.join(ADVICE_MODES)}")
        if self.n < 1 or self.per_round < 1:
            raise InputError("--n and --per-round must be at least 1", "pass positive numbers")
        needs_llm = spec.llm_source or (spec.advised and self.advice != "numeric")
        if needs_llm and not (self.model or self.advisor_model):
            raise InputError(f"method {self.method!r} with advice {self.advice!r} needs an LLM",
                             "pass --model (any litellm model, e.g. openai/gpt-4o-mini), "
                             "or use `data-advisor curate` / --advice numeric to run offline")
        if spec.uses_pool_file and not self.pool:
            raise InputError("curation needs a candidate pool", "pass the pool file as the first argument")
        if not 0 <= self.stall_on_target <= 1 or self.stall_rounds < 1 or self.stall_backoff < 0:
            raise InputError("stall settings out of range", "stall_on_target in [0, 1], stall_rounds ≥ 1, "
                                                            "stall_backoff ≥ 0")
        if (self.max_cost_usd is not None and self.max_cost_usd <= 0) or (self.max_tokens is not None
                                                                          and self.max_tokens < 1):
            raise InputError("--max-cost and --max-tokens must be positive", "pass a cap above 0")
        for what, path in (("pool", self.pool), ("seed prompts", self.seed_prompts), ("base data", self.base)):
            if path:
                check_link(Path(path))  # a link loop or a dangling link: said as such, not as "not found"
            if path and not Path(path).exists():
                raise InputError(f"{what} file not found: {path}", "check the path (relative paths start from the "
                                                                   "current folder)")
            if path and not (Path(path).is_file() or Path(path).is_dir()):  # reading a pipe would wait forever
                raise InputError(f"{what} {path} is not a regular file or folder (a device, pipe or socket)",
                                 "pass a prompts file or folder")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["seed_prompts_sha256"] = _file_fingerprint(self.seed_prompts)
        d["pool_sha256"] = _file_fingerprint(self.pool)
        if not self.base:  # runs without a base keep the config.json of earlier versions, so they still resume
            d.pop("base")
            d.pop("base_text_field")
        for f in fields(self):  # likewise for the stall settings and budgets when unset
            if f.name in _NEWER_FIELDS and d[f.name] == f.default:
                d.pop(f.name)
        return d
