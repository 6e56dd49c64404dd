"""The suite's pooled estimate (reports.meta): DerSimonian–Laird random effects checked against
statsmodels' own implementation, plus the edge cases a suite meets."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest
from statsmodels.stats.meta_analysis import combine_effects

from reports.meta import pool, standard_error
from reports.stats import mean_ci


def _oracle(estimates: list[float], errors: list[float]) -> dict[str, float]:
    """statsmodels' numbers. Its "dl" leaves a negative moment estimate of τ² as it is; the
    estimator truncates it at 0, where the random-effects estimate is the fixed-effect one."""
    with warnings.catch_warnings():  # the root of its negative τ² variance, in its own rows
        warnings.simplefilter("ignore", RuntimeWarning)
        result = combine_effects(np.array(estimates), np.array(errors) ** 2, method_re="dl")
        frame = result.summary_frame()
    truncated = result.tau2 < 0
    row = frame.loc["fixed effect" if truncated else "random effect"]
    return {
        "mean": float(row["eff"]), "se": float(row["sd_eff"]), "low": float(row["ci_low"]),
        "high": float(row["ci_upp"]), "tau2": 0.0 if truncated else float(result.tau2),
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
    assert got.k == k
    assert got.p_value == pytest.approx(
        2 * (1 - 0.5 * (1 + math.erf(abs(got.mean / got.se) / 2**0.5)))
    )


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
