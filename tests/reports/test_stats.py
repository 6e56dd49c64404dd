"""The verdict's statistics against scipy, and its sentence for each kind of outcome."""

from __future__ import annotations

import statistics

import pytest
from scipy import stats

from reports import mean_ci, paired
from reports.stats import sentence

NOISE = [0.3, -0.2, 0.1, -0.4, 0.25, 0.0, -0.1, 0.35, -0.3, 0.05]


def test_mean_ci_matches_student_t():
    values = [81.0, 83.5, 82.0, 84.1, 80.9]
    got = mean_ci(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values),
                                 scale=stats.sem(values))  # fmt: skip
    assert got.mean == pytest.approx(statistics.fmean(values))
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    assert got.n == 5


def test_mean_ci_of_one_value_has_no_interval():
    assert mean_ci([3.0]).half_width is None
    with pytest.raises(ValueError, match="at least one"):
        mean_ci([])


def test_paired_uses_only_shared_seeds_and_matches_ttest_rel():
    a = {0: 90.0, 1: 91.5, 2: 89.0, 3: 92.0, 7: 50.0}  # seed 7 has no partner
    b = {0: 89.0, 1: 90.0, 2: 89.5, 3: 90.0, 9: 99.0}
    got = paired("dynamic", "fixed", a, b, higher_is_better=True)
    diffs = [1.0, 1.5, -0.5, 2.0]
    assert got.n_pairs == 4
    assert got.diff is not None and got.diff.mean == pytest.approx(statistics.fmean(diffs))
    assert got.p_value == pytest.approx(
        stats.ttest_rel([90, 91.5, 89, 92], [89, 90, 89.5, 90]).pvalue
    )
    assert got.cohen_dz == pytest.approx(statistics.fmean(diffs) / statistics.stdev(diffs))


def _seeds(offset: float, noise: list[float]) -> dict[int, float]:
    return {i: 90.0 + offset + n for i, n in enumerate(noise)}


@pytest.mark.parametrize(
    ("dyn_offset", "higher", "accuracy", "expected"),
    [
        (1.2, True, True, "dynamic beat fixed by 1.20 ± "),
        (-1.2, True, True, "fixed beat dynamic by 1.20 ± "),
        (0.0, True, True, "no significant difference at 10 seeds; the CI of the difference"),
        # a loss: lower is better, so a lower dynamic loss is a win for dynamic
        (-0.5, False, False, "dynamic beat fixed with a test loss lower by 0."),
        (0.5, False, False, "fixed beat dynamic with a test loss lower by 0."),
    ],
)
def test_sentence_names_the_winner(dyn_offset, higher, accuracy, expected):
    fixed = _seeds(0.0, NOISE)
    dynamic = _seeds(dyn_offset, [n * 0.5 for n in reversed(NOISE)])
    c = paired("dynamic", "fixed", dynamic, fixed, higher_is_better=higher)
    text = sentence(c, accuracy=accuracy, digits=2 if accuracy else 4)
    assert text.startswith(expected), text
    assert "10 seeds" in text
    assert c.significant == (dyn_offset != 0)
    if c.significant:
        assert c.diff is not None and c.diff.low is not None and c.diff.high is not None
        assert c.diff.low > 0 or c.diff.high < 0


def test_no_shared_seed_is_no_comparison():
    c = paired("dynamic", "fixed", {0: 1.0}, {1: 1.0}, higher_is_better=True)
    assert c.n_pairs == 0 and c.diff is None and not c.significant
    assert "no comparison" in sentence(c, accuracy=True, digits=2)
