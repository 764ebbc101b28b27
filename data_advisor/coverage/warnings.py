"""Guard rails a user sees: typed warnings about a taxonomy or an audit whose numbers should not be trusted as is.

Every number of a coverage report rests on the prompt → principle assignment.  Three situations make that
assignment (or the data) suspect, and a user reading only shares and gaps would not notice them:

* ``unanchored_high`` — a large share of prompts matched no principle.  Either the taxonomy's principles are
  described too thinly to be recognised (one sentence, no examples) or the data is off-taxonomy (benign
  prompts, or harms the taxonomy does not name).
* ``empty_principles`` — a principle with a target received no prompt at all in a set large enough that it
  should have (a real gap to fill, or a principle phrased far from how prompts are written).
* ``dominant_principle`` — one principle took most of the anchored prompts, far above its target (skewed data,
  or a principle so broad that it swallows its neighbours).

And one about the taxonomy itself, printed by ``taxonomy validate``:

* ``few_examples`` — principles with fewer than :data:`MIN_EXAMPLES` written examples are matched by their
  one-line description only, which measurably costs accuracy (:data:`EXAMPLES_COST`).

The functions here are pure (numbers in, :class:`CoverageWarning` out): the audit stores them in
``coverage.json`` under ``warnings``, the CLI prints each as one line and the HTML report shows them as a banner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from data_advisor.coverage.taxonomy import Taxonomy

# ------------------------------------------------------------------------------------------------ thresholds
#: Warn when at least this share of the prompts is unanchored.  On the shared labelled harmful sets (all harmful) the
#: built-in taxonomies leave 0–14% unanchored and the one-sentence user taxonomies 1–26% (harm-pool rule;
#: benchmarks/results/enrich.json, ``dev`` and ``held_out[].user``), while the earlier rule left 51–71% of clearly
#: harmful prompts unanchored under user taxonomies (issue 10).  40% sits above what a working taxonomy on harmful
#: data produces; a mixed harmful/benign set can also cross it, which the message names as the first likely cause.
UNANCHORED_SHARE = 0.40
#: Warn when one leaf takes more than this share of the anchored prompts ...
DOMINANT_SHARE = 0.50
#: ... and more than this multiple of its own target share (a taxonomy that targets one principle heavily is
#: not warned about for getting what it asked for).
DOMINANT_OVER_TARGET = 2.0
#: Empty-principle and dominance warnings need at least this many anchored prompts per leaf on average: below
#: it, an empty principle is expected by chance (with 3 per leaf and even shares, P(a given leaf is empty) ≈ 5%).
MIN_ANCHORED_PER_LEAF = 3
#: ... and never fewer than this many anchored prompts in all.
MIN_ANCHORED = 20
#: Principles with fewer written examples than this are matched (mostly) by their one-line description.
MIN_EXAMPLES = 3
#: How many principle names a message lists before "and N more".
MAX_NAMES = 5

#: What missing examples cost, as measured by ``benchmarks/enrich.py`` (``benchmarks/results/enrich.json``,
#: key ``examples_cost``; a test checks this text against that file).  ``dev`` is the built-in taxonomies with
#: their written examples vs. their descriptions alone, on the shared sets those examples were written beside —
#: an upper bound; ``held_out`` is user taxonomies with examples mined from *other* sets (leave-one-dataset-out).
EXAMPLES_COST: dict[str, float | int] = {
    "dev_macro_f1_points": 13.0,
    "dev_sets": 4,
    "held_out_macro_f1_points": -2.2,
    "held_out_forced_macro_f1_points": -3.2,
    "held_out_sets": 6,
}


@dataclass(frozen=True)
class CoverageWarning:
    """One guard-rail finding: what was seen, why it probably happened and what to do about it."""

    code: str  # "unanchored_high" | "empty_principles" | "dominant_principle" | "few_examples"
    problem: str  # what was seen, with the number
    cause: str  # the likely cause(s)
    fix: str  # what to do, with the command when there is one
    value: float  # the measured quantity (share, count)
    threshold: float  # the documented threshold it crossed
    principles: tuple[str, ...] = field(default=())  # principle ids concerned, if any

    def one_line(self) -> str:
        """The CLI's line: problem, likely cause, fix (no newlines, whatever the principle names hold)."""
        return " ".join(f"{self.problem} — likely cause: {self.cause} — fix: {self.fix}".split())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["principles"] = list(self.principles)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CoverageWarning:
        return cls(code=str(d.get("code", "")), problem=str(d.get("problem", "")), cause=str(d.get("cause", "")),
                   fix=str(d.get("fix", "")), value=float(d.get("value", 0.0)),
                   threshold=float(d.get("threshold", 0.0)),
                   principles=tuple(str(p) for p in d.get("principles", []) or []))


def _names(ids: Sequence[str], names: Mapping[str, str]) -> str:
    shown = [f"{names.get(i, i)!s}" for i in ids[:MAX_NAMES]]
    more = f" and {len(ids) - MAX_NAMES} more" if len(ids) > MAX_NAMES else ""
    return ", ".join(shown) + more


def enrich_command(taxonomy_ref: str, source: str) -> str:
    """The ``taxonomy enrich`` command line a warning suggests."""
    import shlex

    stem = taxonomy_ref.rsplit("/", 1)[-1].removesuffix(".yaml").removesuffix(".yml") or "taxonomy"
    src = shlex.quote(source) if source and not source.startswith("<") else "PROMPTS"
    return (f"data-advisor taxonomy enrich {shlex.quote(taxonomy_ref)} --from {src} "
            f"--out {shlex.quote(stem + '-enriched.yaml')}")


def thin_leaves(taxonomy: Taxonomy) -> list[str]:
    """Leaf ids with fewer than :data:`MIN_EXAMPLES` written examples."""
    return [p.id for p in taxonomy.leaves() if len(p.examples) < MIN_EXAMPLES]


def examples_cost_text() -> str:
    """The measured cost of missing examples, labelled by how it was measured."""
    c = EXAMPLES_COST
    return (f"on the shared labelled sets the built-in taxonomies score {float(c['dev_macro_f1_points']):.0f} points "
            "more macro-F1 (unanchored counted wrong) with their written examples than with descriptions alone (mean "
            f"of {c['dev_sets']} sets; a dev figure: the examples were written beside those sets); examples mined from "
            f"other sets by `taxonomy enrich` changed a one-sentence taxonomy's macro-F1 by "
            f"{float(c['held_out_macro_f1_points']):+.1f} points, and its forced-nearest macro-F1 by "
            f"{float(c['held_out_forced_macro_f1_points']):+.1f} (leave-one-dataset-out, mean of {c['held_out_sets']} "
            "sets; benchmarks/results/enrich.json)")


# ------------------------------------------------------------------------------------------------ taxonomy
def taxonomy_warnings(taxonomy: Taxonomy, *, pool_hint: str = "PROMPTS") -> list[CoverageWarning]:
    """Warnings about a taxonomy before any data is seen (``taxonomy validate``)."""
    leaves = taxonomy.leaves()
    thin = thin_leaves(taxonomy)
    if not thin:
        return []
    names = {p.id: p.name for p in leaves}
    ref = taxonomy.path if taxonomy.path and not _is_builtin_path(taxonomy.path) else taxonomy.id
    none = sum(1 for pid in thin if not taxonomy.by_id(pid).examples)
    return [CoverageWarning(
        code="few_examples",
        problem=(f"{len(thin)} of {len(leaves)} principles have fewer than {MIN_EXAMPLES} examples "
                 f"({none} have none): {_names(thin, names)}"),
        cause=("principles without examples are matched by their one-line description only; "
               + examples_cost_text()),
        fix=(f"add {MIN_EXAMPLES}+ example prompts per principle (`examples:`) that you wrote or checked; "
             f"`{enrich_command(ref or taxonomy.id, pool_hint)}` proposes candidates from a prompt pool, to review "
             "one by one (unreviewed, they did not help)"),
        value=float(len(thin)), threshold=float(MIN_EXAMPLES), principles=tuple(thin),
    )]


def _is_builtin_path(path: str) -> bool:
    return "data_advisor/coverage/taxonomies" in path.replace("\\", "/")


# ------------------------------------------------------------------------------------------------ audit
def audit_warnings(
    *,
    taxonomy: Taxonomy,
    leaf_counts: Mapping[str, int],
    n_prompts: int,
    n_unanchored: int,
    source: str = "",
    harm_calibrated: bool = True,
    model_id: str = "",
    labelled: bool = False,
) -> list[CoverageWarning]:
    """Warnings about an audit's numbers: high unanchored share, empty principles, one dominant principle.

    ``leaf_counts`` are anchored prompts per leaf id.  Pure: the same numbers give the same warnings.
    """
    out: list[CoverageWarning] = []
    if n_prompts <= 0:
        return out
    leaves = taxonomy.leaves()
    names = {p.id: p.name for p in leaves}
    targets = taxonomy.target_shares()
    ref = taxonomy.path if taxonomy.path and not _is_builtin_path(taxonomy.path) else taxonomy.id
    enrich = enrich_command(ref or taxonomy.id, source)
    thin = thin_leaves(taxonomy)

    if not harm_calibrated:
        out.append(CoverageWarning(
            code="harm_uncalibrated",
            problem=f"the harm / unanchored boundary was not fitted for the embedding model {model_id or '(custom)'}",
            cause=("its two numbers (coverage/harm_calibration.json) were fitted on the bundled model's cosines; for "
                   "this model the boundary falls back to 0 (a prompt is anchored when its harm-pool neighbours are "
                   "closer than its benign ones), which has not been measured"),
            fix=("use the default model for measured numbers, or refit the calibration for this model with "
                 "benchmarks/fit_harm.py and pass it in"),
            value=0.0, threshold=0.0,
        ))
    share_un = n_unanchored / n_prompts
    if share_un >= UNANCHORED_SHARE:
        causes = ["the data may be off-taxonomy (benign prompts, or harms the taxonomy does not name: see the "
                  "unanchored examples and emergent clusters); a mostly-benign set is rightly mostly unanchored"]
        if len(thin) * 2 >= len(leaves):  # most principles are described by one sentence
            causes.append(f"{len(thin)} of {len(leaves)} of your taxonomy's principles have fewer than "
                          f"{MIN_EXAMPLES} examples, so harms they name beyond the built-in taxonomies are recognised "
                          "from one-line descriptions only")
        out.append(CoverageWarning(
            code="unanchored_high",
            problem=f"{share_un:.0%} of prompts are unanchored (matched no principle)",
            cause="; or ".join(causes),
            fix=(("" if labelled else "first check whether the unanchored prompts are really benign: label a "
                  "sample with `data-advisor review AUDIT --out review.jsonl`, then re-run the audit with --labels "
                  "review.jsonl; if harmful ones are missed, ")
                 + f"add examples to the principles with `{enrich}` (review the proposed examples), or check that "
                 "--taxonomy is the right one for this data"),
            value=share_un, threshold=UNANCHORED_SHARE,
        ))

    n_anchored = sum(int(leaf_counts.get(p.id, 0)) for p in leaves)
    if n_anchored < max(MIN_ANCHORED, MIN_ANCHORED_PER_LEAF * len(leaves)):
        return out
    empty = [p.id for p in leaves if int(leaf_counts.get(p.id, 0)) == 0 and targets.get(p.id, 0.0) > 0]
    if empty:
        thin_empty = [pid for pid in empty if pid in thin]
        cause = "the data has no prompt on them (a real gap: generate or collect prompts for them)"
        if thin_empty:
            cause += (f"; or, for the {len(thin_empty)} with fewer than {MIN_EXAMPLES} examples, the description is "
                      "far from how prompts on it are phrased")
        out.append(CoverageWarning(
            code="empty_principles",
            problem=(f"{len(empty)} of {len(leaves)} principles got no prompt out of {n_anchored:,} anchored: "
                     f"{_names(empty, names)}"),
            cause=cause,
            fix=(f"fill the gap (`data-advisor generate` / `curate`), and if you expected such prompts add examples to "
                 f"these principles (`{enrich}`)"),
            value=float(len(empty)), threshold=0.0, principles=tuple(empty),
        ))
    if len(leaves) >= 3:
        top = max(leaves, key=lambda p: (int(leaf_counts.get(p.id, 0)), p.id))
        share = int(leaf_counts.get(top.id, 0)) / n_anchored
        if share > DOMINANT_SHARE and share > DOMINANT_OVER_TARGET * targets.get(top.id, 0.0):
            out.append(CoverageWarning(
                code="dominant_principle",
                problem=(f"one principle takes {share:.0%} of the anchored prompts: {names[top.id]} "
                         f"(target {targets.get(top.id, 0.0):.0%})"),
                cause=("the data is skewed toward it; or its description is broad enough to swallow prompts of "
                       "neighbouring principles"),
                fix=(f"read its typical prompts in the report: if they belong elsewhere, narrow its description and add "
                     f"examples to the others (`{enrich}`); if they belong, the data needs the other principles"),
                value=share, threshold=DOMINANT_SHARE, principles=(top.id,),
            ))
    return out


def warnings_from_dicts(items: Sequence[Mapping[str, Any]] | None) -> list[CoverageWarning]:
    """Warnings stored in ``coverage.json`` (reports written before they existed have none)."""
    return [CoverageWarning.from_dict(d) for d in (items or []) if isinstance(d, Mapping)]
