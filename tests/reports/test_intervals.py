"""Intervals a reader can believe (reports.stats): none below three units, and none outside
what the metric can be. The numbers are those of a two-replicate run of examples/tiny.toml
whose report once read "dynamic test_acc 70.33 ± 159.27" and a difference CI of
[−189.60, +155.48] points."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from scipy import stats

from reports.budget import budget_curve
from reports.decision import decide_comparison, decision_sentence
from reports.replicates import replicated
from reports.stats import (
    ACCURACY_DIFFERENCE,
    ACCURACY_POINTS,
    LOSS,
    MIN_UNITS,
    mean_ci,
    paired,
)
from reports.verdict import build_verdict

# Two replicates' means of the tiny run: dynamic 57.80 and 82.86 (mean 70.33, t half width
# 159.27 on one degree of freedom), and its differences dynamic − fixed by replicate.
DYNAMIC = {1: (55.0, 60.6), 2: (81.0, 84.72)}
FIXED = {1: (87.0, 90.52), 2: (84.0, 88.68)}
NONE = {1: (70.0, 70.0), 2: (73.0, 73.1)}


def _evals(arms: dict[str, dict[int, tuple[float, ...]]]) -> pd.DataFrame:
    rows = [
        {"arm": arm, "replicate": r, "seed": s, "test_acc": v / 100, "test_loss": 1.0 - v / 100}
        for arm, reps in arms.items()
        for r, values in reps.items()
        for s, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def _verdict(arms: dict[str, dict[int, tuple[float, ...]]], *, accuracy: bool = True):
    schemes = {"dynamic": "dynamic", "fixed": "fixed", "none": "none"}
    replicates = max(r for reps in arms.values() for r in reps)
    return build_verdict(
        {a: schemes[a] for a in arms},
        pd.DataFrame({"arm": [], "state": []}),
        _evals(arms),
        accuracy,
        (),
        pd.DataFrame({"arm": []}),
        replicates,
        set(arms),
    )


def test_the_threshold_is_where_the_docstring_says_the_interval_becomes_usable():
    """The reasons for three units, recomputed: the expected t half width over what a known
    sd would give is 5.2 at two units and below 2 from three on, and one degree of freedom
    puts the sd below a quarter of the truth in a fifth of draws."""

    def ratio(n: int) -> float:
        c4 = math.sqrt(2 / (n - 1)) * math.exp(math.lgamma(n / 2) - math.lgamma((n - 1) / 2))
        return float(stats.t.ppf(0.975, n - 1)) * c4 / 1.959964

    assert ratio(MIN_UNITS - 1) > 5 and ratio(MIN_UNITS) < 2
    assert stats.chi2.cdf(1 / 16, 1) > 0.19 and stats.chi2.cdf(2 / 16, 2) < 0.07


def test_no_interval_and_no_p_value_below_three_units():
    assert mean_ci([57.80, 82.86]).half_width is None
    three = mean_ci([57.80, 82.86, 70.0])
    assert three.half_width is not None and three.n == 3
    two_seeds = paired("dynamic", "fixed", {0: 1.0, 1: 3.0}, {0: 0.0, 1: 0.1},
                       higher_is_better=True)  # fmt: skip
    assert two_seeds.p_value is None and not two_seeds.significant
    assert two_seeds.diff is not None and two_seeds.diff.half_width is None


def test_two_replicates_are_inconclusive_for_lack_of_replicates_with_their_own_differences():
    arm = {(r, s): v for r, vs in DYNAMIC.items() for s, v in enumerate(vs)}
    base = {(r, s): v for r, vs in FIXED.items() for s, v in enumerate(vs)}
    c = replicated("dynamic", "fixed", arm, base, higher_is_better=True,
                   bounds=ACCURACY_DIFFERENCE)  # fmt: skip
    assert c.replicates == 2 and c.method == "replicate means"
    assert c.comparison.p_value is None and not c.comparison.significant
    assert c.comparison.diff is not None and c.comparison.diff.low is None
    d = decide_comparison(c, higher_is_better=True, margin=1.0)
    assert d.decision == "inconclusive" and d.too_few and d.ruled_out is None
    text = decision_sentence(c, d, accuracy=True, digits=2, over="2 searches × 2 seeds")
    assert text.startswith("Inconclusive for lack of replicates: 2 searches × 2 seeds")
    assert f"needs at least {MIN_UNITS} replicates" in text and "Run more replicates" in text
    # each search's own difference, in place of an interval
    assert "−30.96" in text and "−3.48" in text
    assert "beat" not in text and "p =" not in text and "p <" not in text


def test_one_search_with_two_seeds_is_inconclusive_for_lack_of_seeds():
    arm = {(1, 0): 80.0, (1, 1): 82.0}
    base = {(1, 0): 70.0, (1, 1): 71.0}
    c = replicated("dynamic", "fixed", arm, base, higher_is_better=True)
    d = decide_comparison(c, higher_is_better=True, margin=None)
    assert d.decision == "inconclusive" and d.too_few
    text = decision_sentence(c, d, accuracy=True, digits=2, over=None)
    assert text.startswith("Inconclusive for lack of seeds: one search × 2 seeds")
    assert "+10.00, +11.00" in text and "beat" not in text


def test_a_t_interval_past_a_bound_is_cut_there_and_marked():
    ci = mean_ci([99.0, 97.5, 70.0], ACCURACY_POINTS)
    assert ci.half_width is not None and ci.mean + ci.half_width > 100
    assert ci.high == 100.0 and ci.truncated
    assert ci.low == pytest.approx(ci.mean - ci.half_width)  # the other end is the t's
    inside = mean_ci([80.0, 81.0, 82.0], ACCURACY_POINTS)
    assert not inside.truncated and inside.high == pytest.approx(inside.mean + inside.half_width)
    loss = mean_ci([0.01, 0.02, 0.30], LOSS)
    assert loss.low == 0.0 and loss.truncated
    diff = mean_ci([-95.0, -60.0, -99.0], ACCURACY_DIFFERENCE)
    assert diff.low == -100.0 and diff.truncated


def test_the_tiny_runs_verdict_shows_no_interval_outside_the_metric_and_no_claim():
    v = _verdict({"dynamic": DYNAMIC, "fixed": FIXED, "none": NONE})
    assert v.replicates == 2
    for a in v.arms:
        assert a.ci is not None and a.ci.half_width is None and len(a.means) == 2
    assert [round(m, 2) for m in v.arms[0].means] == [57.8, 82.86]
    for c, d in zip(v.comparisons, v.decisions, strict=True):
        assert c.p_value is None and not c.significant and d.decision == "inconclusive"
    assert all("beat" not in s for s in v.comparison_sentences)
    assert v.sentence.startswith("Inconclusive for lack of replicates")


def test_with_a_third_replicate_every_interval_stays_inside_the_metric():
    third = {"dynamic": {3: (99.0, 99.5)}, "fixed": {3: (40.0, 42.0)}, "none": {3: (75.0, 74.0)}}
    arms = {a: DYNAMIC_ | third[a] for a, DYNAMIC_ in
            (("dynamic", DYNAMIC), ("fixed", FIXED), ("none", NONE))}  # fmt: skip
    v = _verdict(arms)
    cut = [a.ci for a in v.arms if a.ci is not None and a.ci.truncated]
    assert cut, "the tiny numbers' t interval reaches past 100: the test needs a cut one"
    for a in v.arms:
        assert a.ci is not None and a.ci.low is not None and a.ci.high is not None
        assert 0.0 <= a.ci.low <= a.ci.high <= 100.0
    for c, d in zip(v.comparisons, v.decisions, strict=True):
        assert c.diff is not None and c.diff.low is not None and c.diff.high is not None
        assert -100.0 <= c.diff.low <= c.diff.high <= 100.0
        assert d.ruled_out is not None and -100.0 <= d.ruled_out[0] <= d.ruled_out[1] <= 100.0


def test_a_loss_verdicts_arm_interval_stops_at_zero():
    arms = {"dynamic": {1: (99.9, 99.8), 2: (70.0, 71.0), 3: (99.5, 99.7)},
            "fixed": {1: (40.0, 41.0), 2: (42.0, 43.0), 3: (41.0, 42.0)}}  # fmt: skip
    v = _verdict(arms, accuracy=False)  # test_loss = 1 − value/100: small, one replicate far
    dyn = v.arms[0].ci
    assert dyn is not None and dyn.half_width is not None and dyn.mean - dyn.half_width < 0
    assert dyn.low == 0.0 and dyn.truncated and v.arms[0].text(v.digits).endswith("]†")


def test_the_budget_band_needs_three_replicates_and_stays_inside_accuracy():
    two = budget_curve({1: [0.5, 0.9], 2: [0.1, 0.2]}, higher_is_better=True, bounds=(0.0, 1.0))
    assert all(p.low is None and p.high is None for p in two)
    three = budget_curve({1: [0.5, 0.99], 2: [0.1, 0.2], 3: [0.98, 0.99]},
                         higher_is_better=True, bounds=(0.0, 1.0))  # fmt: skip
    assert all(p.low is not None and p.high is not None for p in three)
    assert all(0.0 <= p.low <= p.high <= 1.0 for p in three)  # type: ignore[operator]
    assert any(p.low == 0.0 or p.high == 1.0 for p in three)  # the band was cut


def test_too_few_replicates_say_what_dynl2_plan_would_ask_for():
    """The headline sizes the next run as ``dynl2 plan --effect`` would: the plan's cheapest
    cell for the difference seen (here −10.25 points, two searches that agree), costed at the
    stored timings."""
    from reports.plan import Costs, advice

    arms = {"dynamic": {1: (80.0, 81.0), 2: (79.0, 80.5)},
            "fixed": {1: (90.0, 91.5), 2: (90.0, 90.0)}}  # fmt: skip
    schemes = {"dynamic": "dynamic", "fixed": "fixed"}
    trials = pd.DataFrame({"arm": ["dynamic"] * 4, "state": ["COMPLETE"] * 4,
                           "duration_s": [2.0] * 4})  # fmt: skip
    evals = _evals(arms).assign(seconds=3.0)
    v = build_verdict(schemes, trials, evals, True, (), pd.DataFrame({"arm": []}), 2,
                      set(arms), n_trials=4)  # fmt: skip
    plan = advice(v.differences, Costs(2, 2, 4, 2.0, 3.0), abs(v.main.diff.mean))  # type: ignore[union-attr]
    assert plan is not None and plan.recommended is not None
    best = plan.recommended
    assert best.replicates >= MIN_UNITS
    assert (
        f"dynl2 plan would ask for {best.replicates} searches × {best.seeds} seeds to detect a "
        "difference of 10.25 points (the size seen here) with 80% power, about"
    ) in v.sentence


def test_p_better_has_no_interval_on_two_replicates():
    from reports.decision import prob_better

    two = prob_better({1: [1.0, -1.0], 2: [2.0, 3.0]}, higher_is_better=True)
    assert two is not None and two.mean == 0.75 and two.low is None and two.high is None
    three = prob_better({1: [1.0, -1.0], 2: [2.0, 3.0], 3: [1.0, 1.0]}, higher_is_better=True)
    assert three is not None and three.low is not None and 0.0 <= three.low <= three.high <= 1.0


def test_a_sequential_stage_of_two_replicates_goes_on_without_deciding():
    """``replicates = { min = 2, ... }``: the first stage cannot decide (no interval), so the
    run adds replicates; at its last stage it stays inconclusive for lack of them."""
    arm = {(r, s): 90.0 + r + s for r in (1, 2) for s in range(3)}
    base = {(r, s): 80.0 + s for r in (1, 2) for s in range(3)}
    c = replicated("dynamic", "fixed", arm, base, higher_is_better=True)
    d = decide_comparison(c, higher_is_better=True, margin=None, sequential=(2, 6, 2))
    assert (d.decision, d.too_few, d.continues, d.stage, d.stages) == (
        "inconclusive", True, True, 1, 3,
    )  # fmt: skip
    text = decision_sentence(c, d, accuracy=True, digits=2, over=None)
    assert text.startswith("Inconclusive for lack of replicates") and "adds replicates" in text
    last = decide_comparison(c, higher_is_better=True, margin=None, sequential=(2, 2, 2))
    assert last.decision == "inconclusive" and last.too_few and not last.continues
