"""The Student-t quantiles :mod:`reports.t_quantile` writes out are SciPy's own, entry by entry:
a report's intervals are what they were when SciPy computed every one of them. Exactly so with
the SciPy the table was written from; older releases (the low end of the requirement ranges,
.ci/ranges) compute some quantiles differently past the tenth significant digit, so the table is
held to SciPy's to within ``REL`` of each value, far below any digit a report shows."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from reports.stats import CONFIDENCE, mean_ci
from reports.t_quantile import TABLED, t975

REL = 1e-9  # relative: SciPy 1.17 and older releases differ by up to about 1e-11


def test_the_table_is_scipy_s() -> None:
    q = 0.5 + CONFIDENCE / 2
    wrong = [
        d
        for d in range(1, TABLED + 1)
        if not math.isclose(t975(d), float(stats.t.ppf(q, d)), rel_tol=REL)
    ]
    assert wrong == [], "regenerate reports/t_quantile.py's table with this SciPy"


@pytest.mark.parametrize("dof", [TABLED + 1, 250, 999])
def test_past_the_table_scipy_answers(dof: int) -> None:
    assert t975(dof) == float(stats.t.ppf(0.975, dof))


@pytest.mark.parametrize("dof", [0, -1])
def test_no_quantile_without_a_degree_of_freedom(dof: int) -> None:
    with pytest.raises(ValueError, match="dof"):
        t975(dof)


@pytest.mark.parametrize("n", [3, 6, 40, 101, 102, 300])
def test_an_interval_is_the_one_scipy_gave(n: int) -> None:
    values = [70.0 + (i * 37 % 11) / 3 for i in range(n)]
    sem = statistics.stdev(values) / math.sqrt(n)
    expected = float(stats.t.ppf(0.975, n - 1)) * sem  # mean_ci as it was, with SciPy
    assert math.isclose(mean_ci(values).half_width, expected, rel_tol=REL)
