"""A tiny real experiment (digits, three arms), run once by the CLI (in this process); its
report's numbers are checked against an independent computation from the store with scipy."""

from __future__ import annotations

import contextlib
import json
import statistics
import tomllib
from pathlib import Path

import pytest
from scipy import stats

import reports
import storage
from tests.reports import synthetic as syn
from tests.reports.checks import assert_sections, assert_self_contained, figure_ids

ROOT = Path(__file__).resolve().parents[2]

# examples/tiny.toml (digits, 3 epochs, 4 trials per arm, alpha and floor searched), 3 seeds.
TINY = (
    (ROOT / "examples" / "tiny.toml")
    .read_text()
    .replace('name = "tiny"', 'name = "rep"')
    .replace("seeds = 2", "seeds = 3")
    .replace("replicates = 3", "replicates = 1")  # one search: the seed-only verdict checked here
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-e2e")
    config = tmp / "rep.toml"
    config.write_text(TINY)
    url = f"sqlite:///{tmp / 'rep.db'}"
    # By the CLI in this process (study.cli.main), in tmp: the run writes its report there.
    import torch

    from study.cli.dispatch import main

    threads = torch.get_num_threads()
    try:
        with contextlib.chdir(tmp):
            assert main(["run", str(config), "--quiet", "--storage", url]) == 0
    finally:
        torch.set_num_threads(threads)  # a one-worker run sets them, as a worker process's
    with storage.open(url, create=False) as store:
        data = reports.build_report_data(store, syn.spec(store, "rep"))
        yield store, data, reports.render_html(data)


pytestmark = pytest.mark.slow


def test_verdict_equals_an_independent_computation(tiny):
    store, data, _ = tiny
    evals = store.evaluations("rep")
    acc = {
        arm: dict(zip(rows["seed"], 100 * rows["test_acc"], strict=True))
        for arm, rows in evals.groupby("arm")
    }
    v = data.verdict
    assert (v.metric, v.unit, v.dynamic_arm, v.fixed_arm) == ("test_acc", "points", "dynamic",
                                                              "fixed")  # fmt: skip
    for a in v.arms:
        values = list(acc[a.arm].values())
        low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values),
                                     scale=stats.sem(values))  # fmt: skip
        assert a.ci is not None and a.ci.n == 3
        assert a.ci.mean == pytest.approx(statistics.fmean(values))
        assert (a.ci.low, a.ci.high) == (pytest.approx(low), pytest.approx(high))
        assert a.ci.low <= a.ci.mean <= a.ci.high
    for c in v.comparisons:
        seeds = sorted(set(acc[c.arm]) & set(acc["fixed"]))
        x = [acc[c.arm][s] for s in seeds]
        y = [acc["fixed"][s] for s in seeds]
        diffs = [p - q for p, q in zip(x, y, strict=True)]
        assert c.baseline == "fixed" and c.n_pairs == 3
        assert c.diff is not None and c.diff.mean == pytest.approx(statistics.fmean(diffs))
        assert c.diff.low <= c.diff.mean <= c.diff.high
        assert c.p_value == pytest.approx(stats.ttest_rel(x, y).pvalue)
        assert c.cohen_dz == pytest.approx(statistics.fmean(diffs) / statistics.stdev(diffs))
    assert v.main is v.comparisons[0] and v.main.arm == "dynamic"
    assert "3 seeds" in v.sentence
    assert any("too few seeds" in w for w in v.warnings)  # 3 < 5 paired seeds
    assert "3 paired evaluation seeds" in v.basis and "4 complete trials" in v.basis


def test_counts_and_tables_match_the_store(tiny):
    store, data, _ = tiny
    trials = store.trials("rep")
    expected = {arm: rows["state"].value_counts().to_dict() for arm, rows in trials.groupby("arm")}
    assert {a.arm: dict(a.counts) for a in data.search.arms} == expected
    for a in data.search.arms:
        assert len(a.numbers) == 4
        assert a.best_so_far[-1] == max(a.values)
        assert list(a.best_so_far) == sorted(a.best_so_far)
    assert {r.arm for r in data.tables.top_trials} == {"dynamic", "fixed", "none"}
    assert len(data.tables.evaluations) == 9
    for d in data.dynamics.arms:
        mine = trials[(trials["arm"] == d.arm) & (trials["state"] == "COMPLETE")]
        assert d.value == mine["value"].max()
        assert d.epochs == (1, 2, 3)
    none = next(d for d in data.dynamics.arms if d.arm == "none")
    assert all(x == 0 for x in none.series["lam_mean"])


def test_setup_reproduces_the_stored_config(tiny):
    store, data, _ = tiny
    s = data.setup
    assert tomllib.loads(s.config_toml) == store.get_experiment("rep").config
    assert s.command == "dynl2 run rep.toml"
    assert {a.arm: a.budget for a in s.arms} == {"dynamic": 4, "fixed": 4, "none": 4}
    assert {a.arm: [sp.name for sp in a.spaces] for a in s.arms} == {
        "dynamic": ["lr", "alpha", "floor"], "fixed": ["lr", "lam"], "none": ["lr"],
    }  # fmt: skip
    assert all(a.devices == ("cpu",) for a in s.arms)
    assert all(a.compute_seconds > 0 for a in s.arms)
    assert set(s.versions) >= {"torch", "optuna", "dynl2"}


def test_sensitivity_has_importances_and_the_alpha_floor_map(tiny):
    _, data, _ = tiny
    by_arm = {a.arm: a for a in data.sensitivity.arms}
    assert by_arm["dynamic"].alpha_floor is not None
    assert by_arm["fixed"].alpha_floor is None
    for a in by_arm.values():
        assert {name for name, _ in a.importances} == {p.name for p in a.params}
        assert a.near_best_share is not None and 0 < a.near_best_share <= 1


def test_html_is_complete_and_self_contained(tiny):
    _, data, html = tiny
    assert_self_contained(html)
    assert_sections(html)
    ids = figure_ids(html)
    for wanted in ("fig-verdict", "fig-search", "fig-sens-0", "fig-alpha-floor-0", "fig-loss",
                   "fig-acc", "fig-lambda", "fig-weight-norm"):  # fmt: skip
        assert wanted in ids
    assert len(ids) == len(set(ids))
    assert html.index(data.verdict.sentence) < html.index('id="setup"')


def test_summary_json_is_plain_json(tiny):
    _, data, _ = tiny
    summary = reports.summary_json(data)
    again = json.loads(json.dumps(summary, allow_nan=False))
    assert again["main"]["p_value"] == pytest.approx(data.verdict.main.p_value)
    assert again["arms"]["dynamic"]["test"]["n"] == 3
    assert again["sentence"] == data.verdict.sentence


def test_compare_page_has_one_row_per_experiment(tiny):
    _, data, _ = tiny
    html = reports.render_compare_html([data, data])
    assert_self_contained(html)
    assert html.count("<tr><td>rep</td>") == 2
