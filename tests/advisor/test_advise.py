"""The advice stage on its own: weakness ranking, numeric choice, and the LLM advisor's request (read at the fake
OpenAI server) — the candidate anchors' sub-clusters, the history of advised sub-issues — and its repeat rule."""

from __future__ import annotations

import json
import random
import re
from typing import Any

import pytest

from data_advisor.advisor.advise import (
    AdvisedIssue,
    LLMAdvisor,
    NumericAdvisor,
    is_repeat,
    rank_weaknesses,
)
from data_advisor.advisor.monitor import CoverageMonitor
from data_advisor.coverage.audit import AuditSettings
from data_advisor.coverage.taxonomy import load_taxonomy
from data_advisor.run_records import RoundRecord
from tests.advisor.conftest import LoopResponder
from tests.llm.llm_server import LLMServer, last_user_message

CATQA = load_taxonomy("catqa-11")
PREFIXES = ("Quick question:", "Be honest:", "Tell me:", "Asking for a friend:")


@pytest.fixture(scope="module")
def clustered_monitor(embedder: Any) -> CoverageMonitor:
    """catqa-11 examples in four wordings each: every anchor holds prompts that cluster into sub-clusters."""
    monitor = CoverageMonitor(CATQA, embedder, AuditSettings(taxonomy="catqa-11", min_cluster_size=3))
    texts = [f"{p} {t}" for a, ex in LoopResponder("catqa-11").by_anchor.items() if a != "adult-content"
             for t in ex[:3] for p in PREFIXES]
    monitor.add([f"p{i}" for i in range(len(texts))], texts)
    monitor.clusters()
    return monitor


def advisor_bodies(server: LLMServer) -> list[str]:
    return [last_user_message(r.body) for r in server.chat_requests]


def block(msg: str, title: str) -> Any:
    return json.loads(msg.split(f"=== BEGIN UNTRUSTED DATA: {title} ===\n")[1].split(f"\n=== END UNTRUSTED DATA: {title}")[0])


def trusted_clusters(msg: str) -> list[dict[str, Any]]:
    return json.loads(msg[msg.index("evenness 1 = spread evenly"):].split(":\n", 1)[1].split("\n\n=== BEGIN")[0])


def test_rank_and_numeric_choice_follow_the_largest_deficit(embedder: Any) -> None:
    monitor = CoverageMonitor(CATQA, embedder)
    by_anchor = LoopResponder("catqa-11").by_anchor
    texts = by_anchor["malware-viruses"] + by_anchor["illegal-activity"][:2]
    monitor.add([f"x{i}" for i in range(len(texts))], texts)
    ranked = rank_weaknesses(monitor)
    counts = monitor.counts()
    assert [r[0] for r in ranked[-2:]] == ["illegal-activity", "malware-viruses"]
    assert all(counts[r[0]] == 0 for r in ranked[:9])  # empty anchors first, ties by id
    assert [r[0] for r in ranked[:9]] == sorted(r[0] for r in ranked[:9])
    picks = {NumericAdvisor(monitor).advise(random.Random(s)).anchor_id for s in range(30)}
    assert picks == {r[0] for r in ranked[:9]}  # ties are broken at random, only among the tied anchors


def test_repeat_rule() -> None:
    history = [AdvisedIssue(0, "fraud-deception", "Phishing emails posing as banks", 4)]
    assert is_repeat("phishing emails, posing as BANKS!", history) is history[0]
    assert is_repeat("bank phishing emails posing as banks", history) is history[0]  # ROUGE-L ≥ 0.8
    assert is_repeat("romance scams on dating apps", history) is None
    assert is_repeat("", history) is None


def test_llm_advisor_request_carries_subclusters_and_history_and_detects_repeats(
        clustered_monitor: CoverageMonitor, llm_server: LLMServer, make_llm_client: Any) -> None:
    monitor = clustered_monitor
    ranked = [r[0] for r in rank_weaknesses(monitor)]
    answers = iter([
        {"issue": "Fake invoices sent to small firms", "anchor_id": ranked[0], "rationale": "new"},
        {"issue": "fake invoices sent to small firms!", "anchor_id": ranked[0], "rationale": "again"},  # repeat
        {"issue": "Gift-card refund scams by phone", "anchor_id": ranked[1], "rationale": "new"},
        {"issue": "Fake invoices sent to small firms", "anchor_id": ranked[0], "rationale": "again"},  # repeat
        {"issue": "Fake invoices sent to small firms", "anchor_id": ranked[0], "rationale": "again"},  # repeat
    ])
    llm_server.responder = lambda req: json.dumps(next(answers))
    adv = LLMAdvisor(monitor, make_llm_client(), n_candidates=11)

    first = adv.advise(random.Random(0))
    assert (first.issue, first.anchor_id, first.repeats, first.overridden) == \
        ("Fake invoices sent to small firms", ranked[0], 0, False)
    msg = advisor_bodies(llm_server)[0]
    # Every candidate anchor's sub-clusters, exactly as the monitor states them (the coverage.json rule) ...
    numbers = trusted_clusters(msg)
    assert [n["anchor_id"] for n in numbers] == ranked
    shown = 0
    for n in numbers:
        subs = monitor.subclusters(n["anchor_id"])
        assert n["n_subclusters"] == len(subs)
        assert n["subclusters"] == [{"cluster": s.cluster_id, "size": s.size} for s in subs[:6]]
        shown += len(n["subclusters"])
    assert shown >= 5
    # ... with their keywords and example prompts as untrusted data, never in the trusted part.
    data = block(msg, "keywords and example prompts of those sub-clusters")
    assert len(data) == shown and all(set(d["examples"]) <= set(monitor.texts) and d["keywords"] for d in data)
    trusted = msg.split("=== BEGIN UNTRUSTED DATA")[0]
    assert not any(e in trusted for d in data for e in d["examples"])
    assert block(msg, "sub-issues already advised in this run, with the prompts kept for each") == []

    adv.observe(0, first, ["a kept prompt", "another kept prompt", "a third"])
    second = adv.advise(random.Random(1))  # repeats once, then answers something new
    assert (second.issue, second.repeats, second.overridden) == ("Gift-card refund scams by phone", 1, False)
    assert "re-asked after repeating" in second.note
    asks = advisor_bodies(llm_server)
    assert len(asks) == 3
    for msg in asks[1:]:  # the history, with the kept count, is in every later request
        assert block(msg, "sub-issues already advised in this run, with the prompts kept for each") == [
            {"anchor_id": ranked[0], "issue": "Fake invoices sent to small firms", "kept_prompts": 3}]
    assert "repeats a sub-issue already advised" in asks[2] and "fake invoices sent to small firms!" in asks[2]
    assert "repeats a sub-issue" not in asks[1]

    adv.observe(1, second, ["x"])
    third = adv.advise(random.Random(2))  # repeats twice: the numeric choice is used
    numeric = NumericAdvisor(monitor).advise(random.Random(2))
    assert third.overridden and third.repeats == 2 and "repeated already-advised" in third.note
    assert (third.issue, third.anchor_id) == (numeric.issue, numeric.anchor_id)
    assert len(advisor_bodies(llm_server)) == 5


def test_llm_advisor_restores_its_history_from_round_records(clustered_monitor: CoverageMonitor,
                                                             make_llm_client: Any) -> None:
    adv = LLMAdvisor(clustered_monitor, make_llm_client())
    adv.restore([RoundRecord.from_json({"round": 0, "issue": "Card skimmers at petrol pumps", "anchor_id": "economic-harm",
                                        "kept": 5}),
                 RoundRecord.from_json({"round": 1, "kept": 2, "recovered": True}),  # killed round: no advice known
                 RoundRecord.from_json({"round": 2, "issue": "Doxxing a streamer", "anchor_id": "privacy-violation-activity",
                                        "kept": 0})])
    assert [(h.round, h.anchor_id, h.kept) for h in adv.history] == [(0, "economic-harm", 5),
                                                                     (2, "privacy-violation-activity", 0)]
    assert re.search("skimmer", adv.history[0].issue)
