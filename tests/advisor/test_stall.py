"""Off-target stall and the run's health warnings, against the local OpenAI-compatible server (real litellm).

The issue's scenario: ``generate --base A --advice llm`` for 12 rounds against a generator that ignores the advice
and writes about what it likes (here: the two anchors the base is already heavy on).  Before the back-off the loop
re-advised the same anchor back to back while almost nothing landed on it, made the set less like its target and
said nothing.  Now: no anchor is advised again within ``stall_backoff`` rounds of its second round under 25% on
target, the run's coverage.json names the stalled anchors (``generator_off_target``), and a run that made coverage
worse says so (``coverage_worse``), in coverage.json, on the CLI and in the report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from data_advisor.advisor.stall import StallTracker, round_on_target_share
from data_advisor.run_records import RoundRecord
from tests.advisor.conftest import LoopResponder, read_jsonl
from tests.advisor.test_base import skewed_base

LIKED = ("malware-viruses", "illegal-activity")  # what the drifting generator writes about, whatever it is asked


def stall_violations(rounds: list[dict[str, Any]], threshold: float = 0.25, backoff: int = 3) -> list[str]:
    """Every time an anchor was advised within ``backoff`` rounds after one of its rounds under ``threshold`` that
    was its second (or later) such round — what the issue counted six of in 14 rounds."""
    low: dict[str, int] = {}
    hold_until: dict[str, int] = {}
    out = []
    for r in sorted((RoundRecord.from_json(x) for x in rounds), key=lambda r: r.round):
        a = r.anchor_id
        if a is None:
            continue
        if r.round < hold_until.get(a, -1):
            out.append(f"{a} advised in round {r.round}, held until {hold_until[a]}")
        if round_on_target_share(r) < threshold:
            low[a] = low.get(a, 0) + 1
            if low[a] >= 2:
                hold_until[a] = r.round + backoff + 1
    return out


def drifting(responder: LoopResponder, loop: Any) -> None:
    """The generator writes only what it likes: every human-written example (of any taxonomy) that the run's own
    monitor places on the LIKED anchors, whatever it is asked.  The advisor is sticky, as the issue's LLM advisor
    was: it keeps the anchor it chose last while that anchor is allowed (its gap stays the largest when nothing
    lands on it), each time with a new sub-issue."""
    texts = [t for a in LIKED for t in responder.by_anchor[a]] + responder.generic
    a = loop.monitor.assign(loop.monitor.embed(texts))
    responder.follow = False
    responder.theme = [t for i, t in enumerate(texts) if a.anchored[i] and a.nearest_id(i) in LIKED]
    responder.generic = []
    topics = ["forged documents", "crypto wallets", "fake charities", "doxxing a neighbour", "insurance claims",
              "stalking apps", "counterfeit medicine", "loan sharks", "deepfake voices", "rigged raffles",
              "ticket scalping bots", "payday scams", "pyramid schemes", "burner phones", "smuggling routes"]

    def sticky(cands: list[str], req: dict[str, Any]) -> dict[str, Any]:
        last = responder.advised[-1] if responder.advised else None
        anchor = last if last in cands else cands[0]
        return {"issue": f"{topics[len(responder.advised) % len(topics)]} ({anchor})", "anchor_id": anchor,
                "rationale": "largest gap"}

    responder.choose = sticky


@pytest.mark.slow  # the 12-round acceptance scenario; the refusal test below covers the back-off by default
def test_generator_that_ignores_advice_is_backed_off_and_named(make_loop: Any, loop_responder: LoopResponder,
                                                                tmp_path: Path) -> None:
    base = skewed_base(tmp_path / "base.jsonl", light=1)
    loop = make_loop(tmp_path / "run", base=str(base), n=500, per_round=12, max_rounds=12)
    drifting(loop_responder, loop)
    summary = loop.run()
    rounds = read_jsonl(tmp_path / "run" / "rounds.jsonl")
    assert len(rounds) == 12
    assert stall_violations(rounds) == []
    held_rounds = [r for r in rounds if r.get("stalled")]
    assert held_rounds, "no anchor was ever held back although the generator never followed the advice"
    for r in held_rounds:  # the record says why the advisor moved on: the held anchor was not advised
        assert r["anchor_id"] not in r["stalled"]
        assert all(v["on_target_share"] < 0.25 for v in r["stalled"].values())
    advised_prompts = [RoundRecord.from_json(r) for r in rounds]
    cov = json.loads((tmp_path / "run" / "coverage.json").read_text("utf-8"))
    codes = {w["code"]: w for w in cov["warnings"]}
    off = codes["generator_off_target"]
    assert off["principles"] and all(p in off["problem"] for p in off["principles"])
    assert "% on target" in off["problem"] and "--model" in off["fix"]
    # the generator wrote about already over-covered anchors: the set moved away from its target, and says so
    before = json.loads((tmp_path / "run" / "base.json").read_text("utf-8"))["metrics"]
    after = advised_prompts[-1].metrics
    assert after["kl_target_actual"] > before["kl_target_actual"]
    worse = codes["coverage_worse"]
    assert f"{before['kl_target_actual']:.3f}" in worse["problem"] and "did not follow the advice" in worse["cause"]
    assert any("less like its target" in w for w in summary.warnings)
    assert 'data-code="coverage_worse"' in (tmp_path / "run" / "report.html").read_text("utf-8")


def test_refused_category_is_counted_per_anchor_and_held_back(make_loop: Any, loop_responder: LoopResponder,
                                                              tmp_path: Path, llm_server: Any) -> None:
    refused = "physical-harm"
    loop_responder.refuse = {refused}
    loop_responder.choose = lambda cands, req: {"issue": f"issue {len(loop_responder.advised)} of {refused}",
                                                "anchor_id": refused if refused in cands else cands[0],
                                                "rationale": "r"}
    loop = make_loop(tmp_path / "run", n=500, per_round=8, max_rounds=7)
    loop.run()
    rounds = [RoundRecord.from_json(r) for r in read_jsonl(tmp_path / "run" / "rounds.jsonl")]
    on_refused = [r for r in rounds if r.anchor_id == refused]
    assert [r.refusals for r in on_refused[:2]] == [{refused: 8}, {refused: 8}]
    assert all(r.rejected_reasons.get("refusal") == 8 for r in on_refused)
    # advised twice, both refused → held for the next 3 rounds: the advisor was not even offered it
    second = on_refused[1].round
    later = [r for r in rounds if second < r.round <= second + 3]
    assert later and all(r.anchor_id != refused and refused in r.stalled for r in later)
    assert all(r.stalled[refused]["refusals"] >= 16 for r in later)
    advisor_asks = [q for q in llm_server.chat_requests if "anchor_id MUST be one of" in json.dumps(q.body)]
    assert any("Held back this round" in json.dumps(q.body) and refused in json.dumps(q.body) for q in advisor_asks)
    html = (tmp_path / "run" / "report.html").read_text("utf-8")
    assert "Refusals" in html and refused in html
    cov = json.loads((tmp_path / "run" / "coverage.json").read_text("utf-8"))
    (w,) = [w for w in cov["warnings"] if w["code"] == "generator_off_target"]
    assert w["principles"] == [refused] and "refusals" in w["problem"]


def test_every_candidate_stalled_stops_cleanly_and_the_rerun_lifts_the_hold(
        make_loop: Any, loop_responder: LoopResponder, tmp_path: Path) -> None:
    """A generator that refuses everything: after each under-covered anchor was held back the run stops (exit 0 for
    what was kept, the stop named); the same command resumes, lifting the hold, with a note in the round record."""
    loop_responder.refuse = set(loop_responder.by_anchor)
    settings = {"n": 4, "per_round": 4, "max_rounds": 60, "max_idle_rounds": 100, "stall_backoff": 50,
                "stall_rounds": 1}
    loop = make_loop(tmp_path / "run", **settings)
    summary = loop.run()
    assert summary.stopped_early and "every under-covered anchor is held back" in summary.stopped_early
    n_rounds = len(read_jsonl(tmp_path / "run" / "rounds.jsonl"))
    assert n_rounds == len(loop_responder.by_anchor)  # each anchor tried once, then held
    loop_responder.refuse = set()
    make_loop(tmp_path / "run", **settings).run()
    rounds = read_jsonl(tmp_path / "run" / "rounds.jsonl")
    assert len(rounds) == n_rounds + 1 and "back-off lifted" in rounds[-1]["note"] and rounds[-1]["kept"] == 4


@pytest.mark.parametrize(("shares", "held_after"), [
    ([0.0, 0.5, 0.1], [2]),  # low, fine, low: the second low round holds it
    ([0.1, 0.2], [1]),
    ([0.3, 0.9, 0.25], []),  # 25% is not under 25%
    ([0.0, 0.0, 0.0], [1, 2]),  # each further low round holds it again
])
def test_tracker_holds_from_the_second_low_round(shares: list[float], held_after: list[int]) -> None:
    t = StallTracker(0.25, 2, 3)
    held = []
    for i, s in enumerate(shares):
        rec = RoundRecord(round=i * 10, anchor_id="a", advice_mode="llm", kept=20, on_target=round(s * 20))
        if t.observe(rec):
            held.append(i)
            assert t.held(i * 10 + 3) and not t.held(i * 10 + 4)
    assert held == held_after
