"""Off-target stall: an anchor the generator will not write about is held back instead of advised again and again.

Why: a generator that ignores the advice (an aligned model half-refusing a harmful category, a small model that
drifts) made the loop re-advise the same anchor back to back while 0–2 of 12 kept prompts landed on it — the
budget went to prompts about whatever the model liked, and coverage got *worse*.

The rule (settings in :class:`~data_advisor.advisor.config.RunConfig`): per anchor, every round it was advised is
scored by its on-target share (prompts on the advised anchor / prompts kept, plus those rejected as off target;
a round that kept nothing scores 0 — refusals are the commonest cause).  From the ``stall_rounds``-th round under
``stall_on_target`` on, each such round holds the anchor back for the next ``stall_backoff`` rounds: the advisor
moves to the next candidate, the round record names the anchors held back, and the run's coverage.json gets a
``generator_off_target`` warning.  The tracker is rebuilt from the round records on resume, so a killed run holds
the same anchors back; a run that stopped because *every* candidate was held back lifts the back-off when it is
re-run (the user fixed something), with a note in the next round record.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from data_advisor.coverage.warnings import CoverageWarning
from data_advisor.run_records import RoundRecord


@dataclass
class AnchorAdherence:
    """What the rounds that advised one anchor produced."""

    rounds: list[int] = field(default_factory=list)
    kept: int = 0
    on_target: int = 0
    refusals: int = 0
    low_rounds: int = 0  # rounds under the threshold
    held_until: int = -1  # the anchor is not advised in rounds < held_until
    times_held: int = 0

    @property
    def share(self) -> float:
        """On-target share over every round the anchor was advised."""
        return self.on_target / self.kept if self.kept else 0.0


def round_on_target_share(record: RoundRecord) -> float:
    """On-target share of one advised round: kept on target / (kept + rejected as off target); 0 when nothing was
    kept (every candidate refused or rejected)."""
    judged = record.kept + record.rejected_reasons.get("off_target", 0)
    return (record.on_target or 0) / judged if judged else 0.0


@dataclass
class StallTracker:
    """Per-anchor adherence over the advised rounds, and which anchors are held back (see the module docstring)."""

    threshold: float = 0.25
    rounds_under: int = 2
    backoff: int = 3
    anchors: dict[str, AnchorAdherence] = field(default_factory=dict)

    def observe(self, record: RoundRecord) -> bool:
        """Account one advised round; True when it put its anchor on hold."""
        a = record.anchor_id
        if a is None or record.recovered or record.advice_mode is None:
            return False
        st = self.anchors.setdefault(a, AnchorAdherence())
        st.rounds.append(record.round)
        st.kept += record.kept
        st.on_target += record.on_target or 0
        st.refusals += record.rejected_reasons.get("refusal", 0)
        if round_on_target_share(record) >= self.threshold:
            return False
        st.low_rounds += 1
        if st.low_rounds < self.rounds_under or self.backoff <= 0:
            return False
        st.held_until = record.round + self.backoff + 1
        st.times_held += 1
        return True

    def restore(self, rounds: Sequence[RoundRecord]) -> None:
        self.anchors = {}
        for r in sorted(rounds, key=lambda r: r.round):
            self.observe(r)

    def held(self, round_no: int) -> dict[str, AnchorAdherence]:
        """Anchors not to advise in ``round_no``."""
        return {a: st for a, st in self.anchors.items() if round_no < st.held_until}

    def release(self) -> list[str]:
        """Lift every hold (a re-run after every candidate stalled); the anchors released."""
        freed = [a for a, st in self.anchors.items() if st.held_until >= 0]
        for a in freed:
            self.anchors[a].held_until = -1
        return freed

    def stalled_out(self, round_no: int, ranked: Sequence[tuple[str, int, float, int]]) -> list[str]:
        """The under-covered anchors of ``ranked`` (advise.rank_weaknesses rows; every anchor when none is under its
        target) when every one of them is held back in ``round_no``; else []."""
        held = self.held(round_no)
        wanted = [r[0] for r in ranked if r[1] > 0] or [r[0] for r in ranked]
        return wanted if held and all(a in held for a in wanted) else []

    def stop_line(self, anchors: Sequence[str]) -> str:
        return ("every under-covered anchor is held back because the generator stays off target on it: "
                + "; ".join(self.describe(a) for a in anchors)
                + " — fix the generator (another --model, seed prompts) and re-run the same command to resume")

    def describe(self, anchor_id: str) -> str:
        st = self.anchors[anchor_id]
        refused = f", {st.refusals} refusals" if st.refusals else ""
        return (f"{anchor_id} ({st.on_target}/{st.kept} = {st.share:.0%} on target over {len(st.rounds)} advised "
                f"rounds{refused})")

    def held_summary(self, round_no: int) -> dict[str, dict[str, float | int]]:
        """The round record's ``stalled`` field: per anchor held back, its figures and the first round it may
        be advised again."""
        return {a: {"on_target_share": round(st.share, 4), "kept": st.kept, "on_target": st.on_target,
                    "refusals": st.refusals, "until_round": st.held_until}
                for a, st in sorted(self.held(round_no).items())}

    def warning(self, *, offline: bool) -> CoverageWarning | None:
        """The ``generator_off_target`` warning naming each anchor that was ever held back, or None."""
        stalled = sorted(a for a, st in self.anchors.items() if st.times_held)
        if not stalled:
            return None
        figures = "; ".join(self.describe(a) for a in stalled)
        worst = min(self.anchors[a].share for a in stalled)
        source = "the candidate pool" if offline else "the generator"
        fix = ("add prompts of these anchors to the pool, or pass another pool" if offline else
               "try another --model, give seed prompts of these anchors (--seed-prompts), or fill them offline with "
               "`data-advisor curate POOL --base ...` from a pool")
        return CoverageWarning(
            code="generator_off_target",
            problem=f"{source} stayed off target for {len(stalled)} advised anchor(s): {figures}",
            cause=(f"{source} does not write about these anchors when asked (refusals, or it drifts to what it "
                   "likes); each was held back for a few rounds after its advised rounds stayed under "
                   f"{self.threshold:.0%} on target"),
            fix=fix, value=round(worst, 4), threshold=self.threshold, principles=tuple(stalled))


def coverage_worse_warning(before: dict[str, float], after: dict[str, float], rounds: Sequence[RoundRecord],
                           threshold: float) -> CoverageWarning | None:
    """A warning when the run left the set further from its target (KL up) or less even (normalised entropy down)
    than its base, with the likely cause read from the round records; None when it did not."""
    kl0, kl1 = before.get("kl_target_actual"), after.get("kl_target_actual")
    h0, h1 = before.get("normalized_entropy"), after.get("normalized_entropy")
    if kl0 is None or kl1 is None or h0 is None or h1 is None:
        return None
    worse = [f"KL to target {kl0:.3f} → {kl1:.3f}"] if kl1 > kl0 + 1e-6 else []
    if h1 < h0 - 1e-6:
        worse.append(f"normalised entropy {h0:.3f} → {h1:.3f}")
    if not worse:
        return None
    advised = [r for r in rounds if r.anchor_id and not r.recovered and r.advice_mode]
    kept = sum(r.kept for r in advised)
    on = sum(r.on_target or 0 for r in advised)
    low = sum(1 for r in advised if round_on_target_share(r) < threshold)
    refused = sum(r.rejected_reasons.get("refusal", 0) for r in rounds)
    if advised and kept and on / kept < 0.5:
        cause = (f"the generator did not follow the advice: {on} of {kept} kept prompts ({on / kept:.0%}) landed on "
                 f"the advised anchor, {low} of {len(advised)} advised rounds under {threshold:.0%} on target"
                 + (f", {refused} refusals" if refused else ""))
    else:
        cause = ("the additions went mostly to anchors that were already at or above their target share"
                 + (f" ({refused} generator refusals)" if refused else ""))
    return CoverageWarning(
        code="coverage_worse",
        problem=f"the run made the set less like its target than the base was: {'; '.join(worse)}",
        cause=cause,
        fix="see the run report's rounds table; try another --model or seed prompts of the under-covered anchors, "
            "or fill the gaps offline with `data-advisor curate POOL --base ...`",
        value=round(kl1 - kl0, 6), threshold=0.0)
