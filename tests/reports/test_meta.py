"""The suite's pooled estimate (reports.meta): DerSimonian–Laird random effects checked against
statsmodels' own implementation, plus the edge cases a suite meets."""

from __future__ import annotations

import math
import random
import warnings
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.meta_analysis import combine_effects

from reports.meta import Pooled, pool, standard_error
from reports.stats import ACCURACY_DIFFERENCE, LOSS, UNBOUNDED, MeanCI, mean_ci


def _oracle(estimates: list[float], errors: list[float]) -> dict[str, float]:
    """statsmodels' numbers. Its "dl" leaves a negative moment estimate of τ² as it is; the
    estimator truncates it at 0, where the random-effects estimate is the fixed-effect one.
    The interval: its Hartung–Knapp ("wls", Student t) row where that is the wider, else the
    DerSimonian–Laird standard error with the same t quantile (the modified form)."""
    with warnings.catch_warnings():  # the root of its negative τ² variance, in its own rows;
        warnings.simplefilter("ignore")  # and use_t's note on the single samples' intervals
        result = combine_effects(
            np.array(estimates), np.array(errors) ** 2, method_re="dl", use_t=True
        )
        frame = result.summary_frame()
    truncated = result.tau2 < 0
    name = "fixed effect" if truncated else "random effect"
    row, hk = frame.loc[name], frame.loc[f"{name} wls"]
    k = len(estimates)
    se = max(float(row["sd_eff"]), float(hk["sd_eff"]))
    t = float(scipy_stats.t.ppf(0.975, k - 1))
    mean = float(row["eff"])
    if float(hk["sd_eff"]) >= float(row["sd_eff"]):
        assert (float(hk["ci_low"]), float(hk["ci_upp"])) == pytest.approx(
            (mean - t * se, mean + t * se)
        )
    return {
        "mean": mean, "se": se, "low": mean - t * se, "high": mean + t * se,
        "tau2": 0.0 if truncated else float(result.tau2),
        "i2": max(0.0, float(result.i2)), "q": float(result.q),
    }  # fmt: skip


@pytest.mark.parametrize("seed", range(12))
def test_pooling_matches_statsmodels_dersimonian_laird(seed: int) -> None:
    rng = random.Random(seed)
    k = rng.randint(2, 12)
    spread = rng.choice([0.0, 0.5, 2.0])  # no heterogeneity (τ² clipped to 0), some, a lot
    truth = rng.uniform(-1, 2)
    errors = [rng.uniform(0.2, 1.5) for _ in range(k)]
    estimates = [truth + rng.gauss(0, spread) + rng.gauss(0, s) for s in errors]
    got = pool(estimates, errors)
    want = _oracle(estimates, errors)
    for name, value in want.items():
        assert getattr(got, name) == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert got.k == k and got.df == k - 1
    assert got.p_value == pytest.approx(2 * scipy_stats.t.sf(abs(got.mean / got.se), k - 1))


def test_the_interval_is_never_narrower_than_the_normal_one() -> None:
    # Estimates closer together than their errors say: q_HK < 1, so the modified form keeps
    # the DerSimonian–Laird standard error (and Student t), where plain Hartung–Knapp would
    # shrink it below the normal interval.
    estimates, errors = [1.0, 1.01, 0.99, 1.0], [0.5, 0.5, 0.5, 0.5]
    got = pool(estimates, errors)
    normal = 1.959964 * 0.25  # se = 0.5 / √4
    assert got.se == pytest.approx(0.25)
    assert got.high - got.mean == pytest.approx(scipy_stats.t.ppf(0.975, 3) * 0.25)
    assert got.high - got.mean > normal


def test_identical_estimates_have_no_heterogeneity() -> None:
    got = pool([1.0, 1.0, 1.0], [0.5, 0.3, 0.4])
    assert (got.tau2, got.i2, got.q) == (0.0, 0.0, 0.0)
    assert got.mean == pytest.approx(1.0)
    # with τ² = 0 the pooled variance is the inverse of the summed precisions
    assert got.se == pytest.approx(1 / math.sqrt(1 / 0.25 + 1 / 0.09 + 1 / 0.16))


def test_one_experiment_is_its_own_estimate() -> None:
    got = pool([0.8], [0.4])
    assert (got.mean, got.se) == pytest.approx((0.8, 0.4))
    assert (got.tau2, got.i2, got.k) == (0.0, 0.0, 1)
    assert (got.low, got.high) == pytest.approx((0.8 - 1.959964 * 0.4, 0.8 + 1.959964 * 0.4))
    # with the degrees of freedom behind its error: its own Student-t interval, exactly
    values = [0.5, 1.5, 0.7]
    ci = mean_ci(values)
    alone = pool([ci.mean], [standard_error(ci)], [len(values) - 1])
    assert (alone.low, alone.high) == pytest.approx((ci.low, ci.high))
    assert alone.df == 2


def test_heterogeneity_widens_the_interval() -> None:
    errors = [0.3] * 6
    agree = pool([1.0, 1.1, 0.9, 1.0, 1.05, 0.95], errors)
    disagree = pool([3.0, -1.0, 2.5, -0.5, 1.0, 1.0], errors)
    assert agree.tau2 == 0.0 and disagree.tau2 > 1.0 and disagree.i2 > 0.8
    assert disagree.high - disagree.low > 2 * (agree.high - agree.low)


@pytest.mark.parametrize(
    ("estimates", "errors", "fragment"),
    [
        ([], [], "nothing to pool"),
        ([1.0], [0.0], "> 0"),
        ([1.0, 2.0], [0.1], "2 estimates but 1"),
        ([float("nan")], [0.1], "finite"),
        ([1.0], [float("inf")], "finite"),
        ([1.0, 2.0], [0.1, 0.1, 0.1], "2 estimates but 3"),
    ],
)
def test_bad_input_is_refused(estimates, errors, fragment) -> None:
    with pytest.raises(ValueError, match=fragment):
        pool(estimates, errors)


def test_standard_error_inverts_the_student_interval() -> None:
    values = [0.5, 1.5, 0.7, 1.9, 1.1]
    ci = mean_ci(values)
    sd = float(np.std(values, ddof=1))
    assert standard_error(ci) == pytest.approx(sd / math.sqrt(len(values)))
    with pytest.raises(ValueError, match="at least 2"):
        standard_error(mean_ci([1.0]))


# ------------------------------------------------------------------------------- bounds

# The suite that showed the defect: dynamic_as_written − fixed over two experiments, accuracy
# points. Hartung–Knapp on k − 1 = 1 degree of freedom (t = 12.71) gave [−181.12, +134.38].
REAL = ([-10.96, -35.79], [0.55, 0.81], [2, 2])


def test_a_pooled_accuracy_difference_is_cut_at_100_points_and_keeps_its_t_test() -> None:
    uncut = pool(*REAL)
    got = pool(*REAL, bounds=ACCURACY_DIFFERENCE)
    assert (uncut.low, uncut.high) == pytest.approx((-181.12, 134.38), abs=0.01)
    assert not uncut.truncated
    assert (got.low, got.high) == (-100.0, 100.0)
    assert got.truncated and got.bounds == ACCURACY_DIFFERENCE
    # the test reads the uncut t interval: p, μ̂, se and the half width are the unbounded ones
    assert replace(got, bounds=UNBOUNDED) == uncut
    t = got.mean / got.se
    assert got.p_value == 2 * scipy_stats.t.sf(abs(t), 1)
    assert got.half_width == pytest.approx(scipy_stats.t.ppf(0.975, 1) * got.se)
    assert got.p_value == pytest.approx(0.311, abs=5e-4)


def test_only_the_end_past_a_bound_is_cut() -> None:
    uncut = pool([85.0, 97.0], [0.5, 0.5], [4, 4])
    got = pool([85.0, 97.0], [0.5, 0.5], [4, 4], ACCURACY_DIFFERENCE)
    assert uncut.low > -100 and uncut.high > 100  # only the upper end reaches past +100
    assert (got.low, got.high) == (uncut.low, 100.0) and got.truncated
    loss = pool([0.2, 0.9], [0.01, 0.01], [4, 4], LOSS)  # a level at or above 0: cut at 0
    assert loss.low == 0.0 and loss.high == loss.mean + loss.half_width and loss.truncated


def test_an_interval_inside_its_bounds_is_untouched() -> None:
    estimates, errors = [1.2, 0.4, -0.3, 2.0], [0.3, 0.4, 0.25, 0.7]
    uncut = pool(estimates, errors)
    got = pool(estimates, errors, bounds=ACCURACY_DIFFERENCE)
    assert not got.truncated
    assert (got.low, got.high) == (uncut.low, uncut.high)
    assert replace(got, bounds=UNBOUNDED) == uncut


def test_the_pooled_and_the_verdicts_intervals_are_cut_alike() -> None:
    """One rule for both (reports.stats.cut): the same mean and half width, the same ends."""
    for mean, half in ((-23.37, 157.75), (95.0, 10.0), (1.0, 0.5)):
        ci = MeanCI(mean, half, 3, ACCURACY_DIFFERENCE)
        p = Pooled(mean, half, 1.0, 0.5, 0.0, 0.0, 0.0, 2, 1.0, ACCURACY_DIFFERENCE)
        assert (p.low, p.high, p.truncated) == (ci.low, ci.high, ci.truncated)
