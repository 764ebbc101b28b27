"""The labelled safety sets and benign contrasts of ``../shared/datasets``, as used by accuracy.py and fit_harm.py.

Every set names the built-in taxonomy whose examples were written beside it (``beside``): honest evaluations leave
that taxonomy out of the harm pool when they score the set (leave-one-dataset-out).  ``group`` is the unit left
out in leave-one-dataset-out (two label views of the same prompts share a group).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as C

BENCH = Path(__file__).resolve().parent
USER_TAXONOMIES = BENCH / "taxonomies"
STRONGREJECT_LABELS = ("Non-violent crimes", "Violence", "Disinformation and deception",
                       "Hate, harassment and discrimination", "Illegal goods and services", "Sexual content")


@dataclass
class LabelledSet:
    key: str
    dataset: str
    group: str
    texts: list[str]
    labels: list[str]
    builtin: str | None  # built-in taxonomy written beside this set (None: none was)
    level: str = "leaf"  # "root": predictions of the built-in taxonomy are rolled up to root principles
    beside: tuple[str, ...] = field(default_factory=tuple)

    @property
    def user_taxonomy(self) -> Path:
        return USER_TAXONOMIES / f"user-{self.key}.yaml"


@dataclass
class BinarySet:
    """Harmful (1) vs benign (0) prompts of one source."""

    key: str
    group: str
    texts: list[str]
    y: list[int]
    beside: tuple[str, ...] = ()


def labelled_sets(ds: Path) -> list[LabelledSet]:
    hb = [r for r in C.read_csv(ds / "harmbench" / "harmbench_behaviors_text_all.csv")
          if r["SemanticCategory"] != "copyright"]
    dna = C.read_csv(ds / "do-not-answer" / "do_not_answer_en.csv")
    jbb = C.read_csv(ds / "jailbreakbench" / "jbb_harmful_behaviors.csv")
    sst = C.read_csv(ds / "simplesafetytests" / "SimpleSafetyTests - test cases.csv")
    rd = json.loads((ds / "refusal-direction-splits" / "harmful_test.json").read_text("utf-8"))
    sr = [r for r in rd if r.get("category") in STRONGREJECT_LABELS]
    return [
        LabelledSet("harmbench-6", "HarmBench (SemanticCategory, copyright excluded)", "harmbench",
                    [r["Behavior"] for r in hb], [r["SemanticCategory"] for r in hb], "harmbench",
                    beside=("harmbench",)),
        LabelledSet("do-not-answer-12", "Do-Not-Answer (types_of_harm)", "do-not-answer",
                    [r["question"] for r in dna], [r["types_of_harm"] for r in dna], "do-not-answer",
                    beside=("do-not-answer",)),
        LabelledSet("do-not-answer-5", "Do-Not-Answer (risk_area)", "do-not-answer",
                    [r["question"] for r in dna], [r["risk_area"] for r in dna], "do-not-answer", level="root",
                    beside=("do-not-answer",)),
        LabelledSet("jailbreakbench-10", "JailbreakBench harmful (Category)", "jailbreakbench",
                    [r["Goal"] for r in jbb], [r["Category"] for r in jbb], "jailbreakbench-10",
                    beside=("jailbreakbench-10",)),
        LabelledSet("simplesafetytests-5", "SimpleSafetyTests (harm_area)", "simplesafetytests",
                    [r["prompts_final"] for r in sst], [r["harm_area"] for r in sst], "simplesafetytests-5",
                    beside=("simplesafetytests-5",)),
        LabelledSet("strongreject-6", "StrongREJECT rows of refusal-direction harmful_test (category)", "strongreject",
                    [r["instruction"] for r in sr], [r["category"] for r in sr], None),
    ]


def alpaca(ds: Path, split: str, n: int, seed: int) -> list[str]:
    """``n`` Alpaca instructions of a refusal-direction harmless split, sampled deterministically."""
    rows = json.loads((ds / "refusal-direction-splits" / f"harmless_{split}.json").read_text("utf-8"))
    texts = [r["instruction"] for r in rows]
    random.Random(seed).shuffle(texts)
    return texts[:n]


def binary_sets(ds: Path, *, alpaca_split: str = "test", n_alpaca: int = 2000, seed: int = 0) -> list[BinarySet]:
    """Harm-vs-benign contrasts: XSTest, JailbreakBench twins, and each harmful set against Alpaca instructions."""
    xs = C.read_csv(ds / "xstest" / "xstest_prompts.csv")
    jh = C.read_csv(ds / "jailbreakbench" / "jbb_harmful_behaviors.csv")
    jb = C.read_csv(ds / "jailbreakbench" / "jbb_benign_behaviors.csv")
    alp = alpaca(ds, alpaca_split, n_alpaca, seed)
    out = [
        BinarySet("xstest", "xstest", [r["prompt"] for r in xs], [1 if r["label"] == "unsafe" else 0 for r in xs]),
        BinarySet("jailbreakbench-twins", "jailbreakbench", [r["Goal"] for r in jh] + [r["goal"] for r in jb],
                  [1] * len(jh) + [0] * len(jb), beside=("jailbreakbench-10",)),
    ]
    for s in labelled_sets(ds):
        if s.level == "root":
            continue
        out.append(BinarySet(f"{s.key}+alpaca", s.group, s.texts + alp, [1] * len(s.texts) + [0] * len(alp),
                             beside=s.beside))
    return out


def taxonomy_runs(spec: LabelledSet) -> Iterator[tuple[str, Any, list[str]]]:
    """(kind, taxonomy, gold anchor ids) for each taxonomy a labelled set is scored with: its one-sentence user
    taxonomy, and the built-in one written beside it (``builtin-dev``: a dev figure).  A taxonomy its labels do not
    map onto is skipped with a log line."""
    from data_advisor.coverage.taxonomy import load_taxonomy

    runs = [("user", load_taxonomy(spec.user_taxonomy))]
    if spec.builtin and spec.level == "leaf":
        runs.append(("builtin-dev", load_taxonomy(spec.builtin)))
    for kind, tax in runs:
        amap = tax.alias_map()
        gold = [amap.get(lab.strip().lower()) for lab in spec.labels]
        if any(g is None for g in gold):
            C.log(f"{spec.key} {kind}: labels do not map onto {tax.id}, skipped")
            continue
        yield kind, tax, gold  # type: ignore[misc]
