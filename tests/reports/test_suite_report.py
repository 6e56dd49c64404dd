"""The suite report (reports.suite): per-experiment differences pooled with reports.meta.pool,
the "when" tables, the paragraph for a win, a loss and a null result, its JSON, escaping of
hostile names, and the page in headless Chromium."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from reports import (
    MeanCI,
    SuiteEntry,
    SuiteInput,
    build_suite_data,
    render_suite_html,
    suite_json,
)
from reports.meta import Pooled, pool, standard_error
from reports.stats import ACCURACY_DIFFERENCE
from reports.suite import HIGH_I2, LOW_I2
from tests.reports.checks import assert_self_contained
from tests.reports.test_in_browser import ERROR_HOOK, find_browser, render_in_browser

FACTORS = ("data.dataset", "train.epochs")


def entry(
    name: str,
    dataset: str,
    epochs: int,
    dynamic: MeanCI | None,
    *,
    href: str | None = None,
    note: str | None = None,
    **others: MeanCI | None,
) -> SuiteEntry:
    return SuiteEntry(
        experiment=name,
        factors={"data.dataset": dataset, "train.epochs": epochs},
        comparisons={"dynamic": dynamic, **others},
        href=href,
        note=note,
    )


def suite(*entries: SuiteEntry) -> SuiteInput:
    return SuiteInput("when", FACTORS, entries, generated="2025-01-01 00:00")


def matrix(
    digits_30: float, digits_100: float, mnist_30: float, mnist_100: float, hw: float = 0.5
) -> SuiteInput:
    return suite(
        entry("when-digits-30", "digits", 30, MeanCI(digits_30, hw, 10)),
        entry("when-digits-100", "digits", 100, MeanCI(digits_100, hw, 10)),
        entry("when-mnist1d-30", "mnist1d", 30, MeanCI(mnist_30, hw, 10)),
        entry("when-mnist1d-100", "mnist1d", 100, MeanCI(mnist_100, hw, 10)),
    )


def expected_pool(cis: list[MeanCI], bounds: tuple[float, float] = ACCURACY_DIFFERENCE) -> Pooled:
    """What the suite pools: its unit is accuracy points unless a test says otherwise."""
    errors = [standard_error(c) for c in cis]
    return pool([c.mean for c in cis], errors, [c.n - 1 for c in cis], bounds)


# ------------------------------------------------------------------------------- numbers


def test_pooled_equals_meta_pool_on_the_same_inputs() -> None:
    cis = [MeanCI(1.2, 0.6, 10), MeanCI(0.4, 0.9, 5), MeanCI(-0.3, 0.5, 20), MeanCI(2.0, 1.5, 3)]
    inp = suite(*(entry(f"e{i}", "digits", 30, c) for i, c in enumerate(cis)))
    data = build_suite_data(inp)
    assert data.main.arm == "dynamic"
    assert data.main.pooled == expected_pool(cis)
    for row, ci in zip(data.main.rows, cis, strict=True):
        assert (row.diff, row.low, row.high, row.n) == (ci.mean, ci.low, ci.high, ci.n)
        assert row.se == standard_error(ci)
        assert row.pooled and row.reason is None


def test_every_arm_is_pooled_on_its_own_entries() -> None:
    a, b, c = MeanCI(1.0, 0.5, 10), MeanCI(0.2, 0.4, 10), MeanCI(-0.1, 0.3, 8)
    inp = suite(
        entry("x", "digits", 30, a, swd=c),
        entry("y", "digits", 100, b, schedule=MeanCI(0.5, 0.2, 4)),
    )
    data = build_suite_data(inp)
    assert [arm.arm for arm in data.arms] == ["dynamic", "swd", "schedule"]
    swd = data.arms[1]
    assert swd.pooled == expected_pool([c])
    assert [r.pooled for r in swd.rows] == [True, False]
    assert swd.rows[1].reason == "no swd − fixed comparison"


@pytest.mark.parametrize(
    ("ci", "note", "reason"),
    [
        (None, None, "no dynamic − fixed comparison"),
        (None, "not evaluated yet", "not evaluated yet"),
        (MeanCI(0.7, None, 1), None, "1 paired seed: no interval"),
        (MeanCI(0.7, 0.0, 5), None, "zero-width interval"),
        (MeanCI(math.nan, 0.5, 5), None, "not a finite number"),
        (MeanCI(0.7, math.inf, 5), None, "zero-width interval"),
        (MeanCI(0.0, 0.0, 5), None, "the arms tie exactly on every seed"),
    ],
)
def test_entries_without_an_interval_are_listed_not_pooled_with_a_reason(
    ci: MeanCI | None, note: str | None, reason: str
) -> None:
    good = [MeanCI(1.0, 0.5, 10), MeanCI(0.6, 0.4, 10)]
    inp = suite(
        entry("good-1", "digits", 30, good[0]),
        entry("odd-one", "digits", 100, ci, note=note),
        entry("good-2", "mnist1d", 30, good[1]),
    )
    data = build_suite_data(inp)
    rows = data.main.rows
    assert [r.experiment for r in rows] == ["good-1", "odd-one", "good-2"]
    assert not rows[1].pooled
    assert reason in (rows[1].reason or "")
    assert rows[1].low is None and rows[1].high is None and rows[1].se is None
    assert data.main.pooled == expected_pool(good)
    assert f"1 experiment of 3 is not pooled: odd-one ({rows[1].reason})." in data.sentence
    html = render_suite_html(data)
    assert "odd-one" in html and "not pooled" in html


def test_when_pools_the_entries_sharing_each_value() -> None:
    inp = matrix(1.5, 1.1, -0.2, 0.3)
    data = build_suite_data(inp)
    cis = {e.experiment: c for e in inp.entries if (c := e.comparisons["dynamic"]) is not None}
    by = {t.factor: t for t in data.main.when}
    assert list(by) == list(FACTORS)
    dataset = by["data.dataset"]
    assert [r.value for r in dataset.rows] == ["digits", "mnist1d"]
    assert dataset.rows[0].pooled == expected_pool([cis["when-digits-30"], cis["when-digits-100"]])
    assert dataset.rows[1].pooled == expected_pool(
        [cis["when-mnist1d-30"], cis["when-mnist1d-100"]]
    )
    epochs = by["train.epochs"]
    assert [r.value for r in epochs.rows] == [30, 100]
    assert epochs.rows[0].pooled == expected_pool([cis["when-digits-30"], cis["when-mnist1d-30"]])
    assert [r.n for r in epochs.rows] == [2, 2]


def test_when_groups_whole_sections_by_value_and_counts_unpooled_entries() -> None:
    mlp = {"kind": "mlp", "hidden": [100, 100]}
    same_mlp = {"hidden": [100, 100], "kind": "mlp"}  # another key order, the same value
    inp = SuiteInput(
        "models",
        ("model",),
        (
            SuiteEntry("a", {"model": mlp}, {"dynamic": MeanCI(1.0, 0.5, 10)}, None),
            SuiteEntry("b", {"model": same_mlp}, {"dynamic": MeanCI(0.8, 0.5, 10)}, None),
            SuiteEntry("c", {"model": {"kind": "cnn"}}, {"dynamic": None}, None),
        ),
    )
    (table,) = build_suite_data(inp).main.when
    assert [r.text for r in table.rows] == ["{kind=mlp, hidden=[100, 100]}", "{kind=cnn}"]
    assert [r.n for r in table.rows] == [2, 1]
    assert table.rows[0].pooled == expected_pool([MeanCI(1.0, 0.5, 10), MeanCI(0.8, 0.5, 10)])
    assert table.rows[1].pooled is None and table.rows[1].direction is None


# ------------------------------------------------------------------------------- paragraph


def test_a_clear_win() -> None:
    data = build_suite_data(matrix(1.2, 1.0, 0.9, 1.1))
    assert data.main.direction == "better"
    assert data.main.pooled is not None and data.main.pooled.low > 0
    s = data.sentence
    assert "The interval excludes 0" in s
    assert "dynamic did better than fixed" in s
    assert "null result" not in s and "did worse" not in s
    assert "Heterogeneity is low" in s
    assert data.headline.startswith("Better: dynamic did better than fixed: +1.05 points")
    assert 'class="answer win"' in render_suite_html(data)


def test_a_clear_loss() -> None:
    data = build_suite_data(matrix(-1.2, -1.0, -0.9, -1.1))
    assert data.main.direction == "worse"
    s = data.sentence
    assert "The interval excludes 0" in s and "dynamic did worse than fixed" in s
    assert "null result" not in s and "did better" not in s
    assert 'class="answer loss"' in render_suite_html(data)


def test_lower_is_better_turns_a_negative_difference_into_a_win() -> None:
    inp = SuiteInput(
        "loss",
        FACTORS,
        matrix(-0.05, -0.04, -0.06, -0.05, hw=0.01).entries,
        unit="in test loss",
        higher_is_better=False,
    )
    data = build_suite_data(inp)
    assert data.main.direction == "better"
    assert "dynamic did better than fixed" in data.sentence
    assert data.digits == 4


def test_a_null_result_says_so_and_claims_nothing() -> None:
    data = build_suite_data(matrix(0.3, -0.2, 0.1, -0.1))
    p = data.main.pooled
    assert p is not None and p.low < 0 < p.high
    assert data.main.direction is None
    s = data.sentence
    assert "The interval covers 0: no detectable difference" in s
    assert "a null result" in s
    assert "did better" not in s and "did worse" not in s and "excludes 0:" not in s
    assert "No single setting of data.dataset, train.epochs" in s
    assert data.headline.startswith("Inconclusive: no detectable difference")
    assert 'class="answer "' in render_suite_html(data)


def test_a_null_overall_names_the_settings_whose_interval_excludes_zero() -> None:
    data = build_suite_data(matrix(1.5, 1.3, -1.4, -1.2, hw=0.1))
    assert data.main.direction is None
    s = data.sentence
    assert "a null result" in s and "Heterogeneity is high" in s
    assert "not corrected for multiple comparisons" in s
    assert "dynamic did better than fixed with data.dataset = digits" in s
    assert "dynamic did worse than fixed with data.dataset = mnist1d" in s
    assert "train.epochs" not in s.split("comparisons):")[1]  # epochs: both values null


def test_one_experiment_with_few_seeds_claims_nothing_its_own_interval_does_not_show() -> None:
    # Two seeds: the Student-t interval (t = 12.7) covers 0; pooled alone, it keeps it.
    ci = MeanCI(1.0, 2.0, 2)
    data = build_suite_data(suite(entry("only", "digits", 30, ci)))
    p = data.main.pooled
    assert p is not None and ci.low is not None and ci.high is not None
    assert (p.low, p.high) == pytest.approx((ci.low, ci.high)) and p.low < 0
    assert data.main.direction is None
    assert "did better" not in data.sentence and "a null result" in data.sentence
    assert "no heterogeneity to measure" in data.sentence


def test_nothing_to_pool() -> None:
    data = build_suite_data(suite(entry("a", "digits", 30, MeanCI(0.5, None, 1))))
    assert data.main.pooled is None
    assert "nothing can be pooled" in data.sentence
    html = render_suite_html(data)
    assert 'id="fig-forest"' in html  # the single point, without an interval
    assert 'id="fig-when"' not in html


@pytest.mark.parametrize(
    ("estimates", "word", "band"),
    [
        ([1.0, 1.0, 1.0, 1.0], "low", (0.0, LOW_I2)),
        ([1.0, 1.6, 0.9, 1.5], "moderate", (LOW_I2, HIGH_I2)),
        ([3.0, -1.0, 0.0, 2.0], "high", (HIGH_I2, 1.0)),
    ],
)
def test_heterogeneity_in_words(
    estimates: list[float], word: str, band: tuple[float, float]
) -> None:
    data = build_suite_data(matrix(*estimates))
    p = data.main.pooled
    assert p is not None and band[0] <= p.i2 < band[1] + 1e-12
    assert f"Heterogeneity is {word} (I² = {100 * p.i2:.0f}%" in data.sentence


# ------------------------------------------------------------------------------- JSON


def test_json_has_exactly_the_promised_shape() -> None:
    inp = suite(
        entry("a", "digits", 30, MeanCI(1.0, 0.5, 10), swd=MeanCI(0.1, 0.3, 10)),
        entry("b", "mnist1d", 30, MeanCI(math.nan, 0.5, 10)),
        entry("c", "mnist1d", 100, None, note="not evaluated yet"),
    )
    data = build_suite_data(inp)
    out = suite_json(data)
    json.dumps(out, allow_nan=False)  # no NaN anywhere
    assert set(out) == {
        "suite", "main_arm", "experiments", "pooled", "arms", "when", "headline", "sentence"
    }  # fmt: skip
    assert out["headline"] == data.headline
    assert out["suite"] == "when" and out["main_arm"] == "dynamic"
    assert out["sentence"] == data.sentence
    row_keys = {"experiment", "factors", "diff", "low", "high", "truncated", "decision"}
    pooled_keys = {"mean", "low", "high", "truncated", "i2", "tau2", "p_value", "k", "decision",
                   "margin", "tost_p"}  # fmt: skip
    assert [set(r) for r in out["experiments"]] == [row_keys] * 3
    assert out["experiments"][0] == {
        "experiment": "a",
        "factors": {"data.dataset": "digits", "train.epochs": 30},
        "diff": 1.0,
        "low": 0.5,
        "high": 1.5,
        "truncated": False,
        "decision": None,
    }
    assert out["experiments"][1]["diff"] is None  # NaN becomes None
    assert out["experiments"][2]["low"] is None
    assert set(out["pooled"]) == pooled_keys
    p = data.main.pooled
    assert p is not None
    assert out["pooled"] == {
        "mean": p.mean, "low": p.low, "high": p.high, "truncated": False, "i2": p.i2, "tau2": 0,
        "p_value": p.p_value, "k": p.k, "decision": "better", "margin": None, "tost_p": None,
    }  # fmt: skip
    assert list(out["arms"]) == ["dynamic", "swd"]
    for arm in out["arms"].values():
        assert set(arm) == {"experiments", "pooled"}
        assert set(arm["pooled"]) == pooled_keys
        assert [set(r) for r in arm["experiments"]] == [row_keys] * 3
    assert out["arms"]["dynamic"]["experiments"] == out["experiments"]
    assert list(out["when"]) == list(FACTORS)
    assert out["when"]["data.dataset"] == [
        {"value": "digits", "mean": p.mean, "low": p.low, "high": p.high, "truncated": False,
         "k": 1},
        {"value": "mnist1d", "mean": None, "low": None, "high": None, "truncated": False,
         "k": 0},
    ]  # fmt: skip
    assert out["when"]["train.epochs"] == [
        {"value": 30, "mean": p.mean, "low": p.low, "high": p.high, "truncated": False, "k": 1},
        {"value": 100, "mean": None, "low": None, "high": None, "truncated": False, "k": 0},
    ]


def test_json_of_a_suite_without_the_main_arm() -> None:
    inp = suite(entry("a", "digits", 30, None, swd=MeanCI(0.1, 0.3, 10)))
    out = suite_json(build_suite_data(inp))
    assert out["pooled"] == dict.fromkeys(
        ("mean", "low", "high", "i2", "tau2", "p_value", "k", "margin", "tost_p")
    ) | {"decision": "inconclusive", "truncated": False}
    assert out["arms"]["swd"]["pooled"]["mean"] == pytest.approx(0.1)


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "href", ["javascript:alert(1)", "https://example.com/r.html", "//host/r.html", "/etc/x"]
)
def test_an_href_that_is_not_a_relative_file_name_is_refused(href: str) -> None:
    with pytest.raises(ValueError, match="`href` of experiment 'a' must be a relative file"):
        build_suite_data(suite(entry("a", "digits", 30, None, href=href)))


def test_duplicate_experiment_names_are_refused() -> None:
    with pytest.raises(ValueError, match="'a' appears twice"):
        build_suite_data(suite(entry("a", "digits", 30, None), entry("a", "digits", 100, None)))


# ------------------------------------------------------------------------------- HTML

HOSTILE = "<script>alert(1)</script>"
ATTR = "x\" onmouseover=\"alert('attr')"
PWN = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\">"


def hostile_input() -> SuiteInput:
    cis = [MeanCI(1.2, 0.5, 10), MeanCI(0.9, 0.6, 10), MeanCI(-0.1, 0.5, 10)]
    return SuiteInput(
        name=HOSTILE,
        factors=(PWN, "train.epochs"),
        entries=(
            SuiteEntry(HOSTILE, {PWN: HOSTILE, "train.epochs": 30}, {"dynamic": cis[0]}, None),
            SuiteEntry(
                PWN,
                {PWN: {"kind": ATTR}, "train.epochs": 100},
                {"dynamic": cis[1], HOSTILE: cis[2]},
                f"{ATTR}.html",
                note=PWN,
            ),
            SuiteEntry(
                "plain",
                {PWN: HOSTILE, "train.epochs": 100},
                {"dynamic": cis[2], HOSTILE: MeanCI(0.3, 0.2, 5)},
                "plain.html",
            ),
        ),
        generated=HOSTILE,
    )


def test_hostile_names_render_as_text() -> None:
    data = build_suite_data(hostile_input())
    assert PWN in data.sentence  # the data keeps names as given; the page escapes them
    html = render_suite_html(data)
    assert_self_contained(html)
    for text in (HOSTILE, PWN, ATTR, 'onmouseover="alert', "<img"):
        assert text not in html, text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=" in html
    assert 'href="x&#34; onmouseover=&#34;alert(&#39;attr&#39;).html"' in html
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == ["<script>"] * 3, scripts  # plotly.js, then one per figure: none of ours
    assert 'href="plain.html"' in html


def test_every_experiment_has_an_anchor_and_its_report_link() -> None:
    inp = matrix(1.2, 1.0, 0.9, 1.1)
    first = inp.entries[0]
    entries = (
        SuiteEntry(first.experiment, first.factors, first.comparisons, "when-digits-30.html"),
        *inp.entries[1:],
    )
    html = render_suite_html(build_suite_data(SuiteInput("when", FACTORS, entries)))
    assert re.findall(r'<tr id="(exp-\d+)">', html) == ["exp-1", "exp-2", "exp-3", "exp-4"]
    assert html.count('<a href="when-digits-30.html">report</a>') == 1
    for section in ("summary", "forest", "pooled", "when", "experiments"):
        assert html.count(f'<section id="{section}">') == 1
    assert 'id="fig-forest"' in html and 'id="fig-when"' in html


# ------------------------------------------------------------------------------- browser


@pytest.mark.slow
def test_suite_report_renders_in_chromium_without_errors(tmp_path: Path) -> None:
    browser = find_browser()
    html = render_suite_html(build_suite_data(hostile_input()))
    page = tmp_path / "suite.html"
    page.write_text(html.replace("<head>", "<head>" + ERROR_HOOK, 1), encoding="utf-8")

    dom = render_in_browser(browser, page, tmp_path / "profile")

    errors = re.search(r'data-js-errors="([^"]*)"', dom)
    assert errors is None, f"script errors in the suite report: {errors.group(1)}"
    assert not re.search(r"<html[^>]*data-pwned", dom), "a hostile name ran as markup"
    containers = re.split(r'<div[^>]*class="figure"', dom)[1:]
    assert len(containers) == 2, "the forest plot and the when figure"
    forest = dom.split('id="fig-forest"', 1)[1].split('class="figure"', 1)[0]
    assert "<svg" in forest and "js-plotly-plot" in forest, forest[:300]
    # the experiment names are tick labels of the forest plot, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in forest
    for chunk in containers:
        assert "<svg" in chunk.split('class="figure"', 1)[0]


def test_the_baseline_is_called_by_its_arm_name() -> None:
    import dataclasses

    inp = dataclasses.replace(
        suite(entry("a", "digits", 30, MeanCI(1.0, 0.5, 10)), entry("b", "digits", 100, None)),
        baseline="l2",
    )
    data = build_suite_data(inp)
    assert data.baseline == "l2"
    assert "l2" in data.headline and "fixed" not in data.headline
    assert "dynamic − l2" in data.sentence and "fixed" not in data.sentence
    assert data.main.rows[1].reason == "no dynamic − l2 comparison"
    assert "dynamic − l2" in render_suite_html(data)


# ------------------------------------------------------------------------------- decisions


def test_the_pooled_decision_is_a_tost_against_the_margin_and_each_experiment_keeps_its_own():
    """Four experiments that agree on +0.1 with narrow intervals: with a margin of 1 point the
    pooled estimate is equivalent (its 90% interval inside ±1: the TOST on the pooled t), and
    with a margin of 0.05 it is not; each experiment's own decision is kept in the JSON, the
    paragraph and the forest plot's labels."""
    from dataclasses import replace

    from scipy import stats

    from reports.decision import tost_p
    from reports.suite_figures import forest_figure

    entries = tuple(
        replace(
            entry(f"e{i}", "digits", 30, MeanCI(0.1 + 0.01 * i, 0.2, 10)),
            decisions={"dynamic": "equivalent" if i % 2 else "inconclusive"},
        )
        for i in range(4)
    )
    wide = build_suite_data(replace(suite(*entries), margin=1.0))
    p = wide.main.pooled
    assert p is not None
    t90 = float(stats.t.ppf(0.95, p.df))
    assert p.mean - t90 * p.se > -1.0 and p.mean + t90 * p.se < 1.0  # the 90% interval inside
    assert wide.main.decision == "equivalent"
    assert wide.main.tost_p == pytest.approx(tost_p(p.mean, p.se, p.df, 1.0))
    assert wide.headline.startswith("Equivalent within ±1 points")
    assert "Each experiment's own decision: 2 equivalent, 2 inconclusive." in wide.sentence
    out = suite_json(wide)
    assert [e["decision"] for e in out["experiments"]] == [
        "inconclusive", "equivalent", "inconclusive", "equivalent",
    ]  # fmt: skip
    assert out["pooled"]["decision"] == "equivalent" and out["pooled"]["margin"] == 1.0
    figure = forest_figure(wide)
    assert figure is not None  # its labels, as the page's JSON carries them
    ticks = json.loads(figure.html.split('"ticktext":', 1)[1].split("]", 1)[0] + "]")
    assert ticks[1] == "e1 · <i>equivalent</i>" and ticks[0] == "e0 · <i>inconclusive</i>"
    assert ticks[-1] == "<b>pooled (k = 4) · equivalent</b>"
    assert '"dash":"dot"' in figure.html  # the margin, drawn
    narrow = build_suite_data(replace(suite(*entries), margin=0.05))
    assert narrow.main.decision != "equivalent"
    assert narrow.main.tost_p is not None and narrow.main.tost_p >= 0.05
    none = build_suite_data(suite(*entries))  # no margin: better, worse or inconclusive only
    assert none.main.decision in ("better", "inconclusive") and none.main.tost_p is None
