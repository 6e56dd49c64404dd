"""The suite report's pooled interval stays inside what the difference can be: cut at ±100
accuracy points and marked † wherever it is written (the paragraph, the tables, the JSON, the
forest and "when" figures, docs/readings.py), with the t test and the decisions unchanged."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from scipy import stats

from reports import MeanCI, SuiteEntry, SuiteInput, build_suite_data, render_suite_html, suite_json
from reports.meta import pool, standard_error
from reports.stats import ACCURACY_DIFFERENCE, CUT, UNBOUNDED
from reports.suite_figures import forest_figure, when_figure

ROOT = Path(__file__).resolve().parents[2]
NOTE = "The Student-t interval reached"  # the experiment report's footnote on †


def _ci(mean: float, se: float, n: int = 3, bounds: tuple[float, float] = UNBOUNDED) -> MeanCI:
    """A difference over ``n`` replicate means whose standard error is ``se``."""
    return MeanCI(mean, se * float(stats.t.ppf(0.975, n - 1)), n, bounds)


def real(**kw: Any) -> SuiteInput:
    """The suite that showed the defect: two experiments far apart, k = 2."""
    entries = (
        SuiteEntry("adam", {"opt": "adam"}, {"dynamic": _ci(-10.96, 0.55)}, None),
        SuiteEntry("sgd", {"opt": "sgd"}, {"dynamic": _ci(-35.79, 0.81)}, None),
    )
    return SuiteInput("real", ("opt", "all"), entries, **kw)


def _with_all(inp: SuiteInput) -> SuiteInput:
    """Both experiments share one value of a factor: a "when" row pooling both."""
    entries = tuple(replace(e, factors={**e.factors, "all": 1}) for e in inp.entries)
    return replace(inp, entries=entries)


def test_the_pooled_interval_of_an_accuracy_suite_is_cut_and_its_test_kept() -> None:
    data = build_suite_data(_with_all(real()))
    p = data.main.pooled
    assert p is not None and p.k == 2
    assert (p.low, p.high, p.truncated) == (-100.0, 100.0, True)
    uncut = pool([-10.96, -35.79], [standard_error(_ci(-10.96, 0.55)),
                 standard_error(_ci(-35.79, 0.81))], [2, 2])  # fmt: skip
    assert uncut.low < -180 and uncut.high > 134  # the interval the report used to show
    assert replace(p, bounds=UNBOUNDED) == uncut  # p, se, μ̂: the t test's, unchanged
    assert data.main.decision == "inconclusive" and data.main.direction is None
    (when,) = [t for t in data.main.when if t.factor == "all"]
    pooled_when = when.rows[0].pooled
    assert pooled_when is not None and pooled_when.truncated
    assert data.any_cut


def test_a_loss_difference_is_not_bounded() -> None:
    """A difference of two losses can be anything: the verdict leaves it uncut, so does the
    suite (reports.stats.difference_bounds)."""
    data = build_suite_data(real(unit="in test loss", higher_is_better=False))
    p = data.main.pooled
    assert p is not None and not p.truncated and p.low < -180 and p.high > 134
    assert CUT not in data.sentence and CUT not in render_suite_html(data)


def test_the_sentences_show_the_cut_interval_with_a_dagger() -> None:
    data = build_suite_data(real())
    assert "95% CI [−100.00, +100.00]† (p = 0.311)" in data.sentence
    assert "anything from −100.00 to +100.00 points†" in data.sentence
    assert "[−100.00, +100.00]†" in data.headline
    assert "181" not in data.sentence + data.headline and "134" not in data.sentence


def test_the_html_marks_a_cut_interval_and_explains_it() -> None:
    inp = _with_all(real())
    near = _ci(
        99.0, 2.0, 3, ACCURACY_DIFFERENCE
    )  # an experiment's own interval, cut by its verdict
    entries = (*inp.entries, SuiteEntry("near", {"opt": "x"}, {"dynamic": near}, None))
    data = build_suite_data(replace(inp, entries=entries))
    html = render_suite_html(data)
    # the pooled table's row and the "when" row pooling every experiment; the "when" row of
    # one experiment alone; that experiment's own row
    assert html.count('<td class="num">[−100.00, +100.00]†</td>') == 2
    assert '<td class="num">[+90.39, +100.00]†</td>' in html
    assert '+99.00 [+90.39, +100.00]†\n<span class="note">n = 3' in html
    assert NOTE in html
    assert "181.1" not in html and "134.3" not in html
    assert [r["truncated"] for r in suite_json(data)["experiments"]] == [False, False, True]


def test_an_untouched_suite_shows_no_dagger() -> None:
    entries = tuple(
        SuiteEntry(f"e{i}", {"opt": str(i)}, {"dynamic": _ci(m, 0.4)}, None)
        for i, m in enumerate([1.0, 1.4, 0.8])
    )
    data = build_suite_data(SuiteInput("fine", ("opt",), entries))
    p = data.main.pooled
    assert p is not None and not p.truncated and not data.any_cut
    html = render_suite_html(data)
    assert CUT not in html and NOTE not in html and CUT not in data.sentence
    out = suite_json(data)
    assert out["pooled"]["truncated"] is False
    assert all(r["truncated"] is False for t in out["when"].values() for r in t)


def test_the_json_stores_the_cut_interval_and_flags_it() -> None:
    out = json.loads(json.dumps(suite_json(build_suite_data(_with_all(real()))), allow_nan=False))
    pooled = out["pooled"]
    assert (pooled["low"], pooled["high"], pooled["truncated"]) == (-100.0, 100.0, True)
    assert out["arms"]["dynamic"]["pooled"]["truncated"] is True
    (row,) = out["when"]["all"]
    assert (row["low"], row["high"], row["truncated"]) == (-100.0, 100.0, True)
    assert [r["truncated"] for r in out["when"]["opt"]] == [False, False]
    assert [r["truncated"] for r in out["experiments"]] == [False, False]


def _plot(html: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The traces and the layout of a figure, as its Plotly.newPlot call carries them."""
    decoder = json.JSONDecoder()
    rest, parts = html.split("Plotly.newPlot(", 1)[1], []
    for _ in range(3):  # the div's id, the traces, the layout
        part, end = decoder.raw_decode(rest.lstrip().removeprefix(",").lstrip())
        parts.append(part)
        rest = rest.lstrip().removeprefix(",").lstrip()[end:]
    return parts[1], parts[2]


def test_the_forest_and_when_bars_end_at_the_bounds() -> None:
    data = build_suite_data(_with_all(real()))
    forest = forest_figure(data)
    assert forest is not None
    traces, layout = _plot(forest.html)
    (pooled,) = [t for t in traces if t.get("name") == "pooled (random effects)"]
    mean, bar = pooled["x"][0], pooled["error_x"]
    assert mean - bar["arrayminus"][0] >= -100.0 - 1e-9
    assert mean + bar["array"][0] <= 100.0 + 1e-9
    assert mean + bar["array"][0] == mean - bar["arrayminus"][0] + 200.0  # at the bounds
    assert layout["yaxis"]["ticktext"][-1].endswith(f"</b>{CUT}")  # the pooled row's label
    when = when_figure(data)
    assert when is not None
    ends = [
        (y - down, y + up)
        for trace in _plot(when.html)[0]
        for y, up, down in zip(
            trace["y"], trace["error_y"]["array"], trace["error_y"]["arrayminus"], strict=True
        )
    ]
    assert min(low for low, _ in ends) == -100.0 and max(high for _, high in ends) == 100.0


def test_readings_prints_the_cut_pooled_line() -> None:
    spec = importlib.util.spec_from_file_location("readings", ROOT / "docs" / "readings.py")
    assert spec is not None and spec.loader is not None
    readings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readings)
    line, cut = readings.pooled_line(
        "dynamic_as_written", "fixed", [(-10.96, 0.55, 2), (-35.79, 0.81, 2)]
    )
    assert cut
    assert line == (
        "pooled dynamic_as_written − fixed over 2: −23.37 points, 95% CI [−100.00, +100.00]†, "
        "p = 0.311"
    )
    fine, cut = readings.pooled_line("dynamic", "fixed", [(1.0, 0.4, 2), (1.2, 0.5, 2)])
    assert not cut and CUT not in fine
