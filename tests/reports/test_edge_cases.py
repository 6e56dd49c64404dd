"""Reports of synthetic stores: empty and partial experiments, hostile names, and size."""

from __future__ import annotations

import statistics

import optuna
import pytest
from optuna.trial import TrialState

import reports
import storage
from study.config.experiment import parse_experiment
from tests.reports import synthetic as syn
from tests.reports.checks import assert_sections, assert_self_contained, figure_ids

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture
def store(tmp_path):
    with storage.open(f"sqlite:///{tmp_path / 'r.db'}") as s:
        yield s


def report(store, name, spec=None):
    data = reports.build_report_data(store, spec or syn.spec(store, name))
    html = reports.render_html(data)
    assert_self_contained(html)
    assert_sections(html)
    return data, html


def test_a_missing_experiment_raises_experiment_not_found(store):
    with pytest.raises(storage.ExperimentNotFound, match="nope"):
        reports.build_report_data(store, parse_experiment(syn.config("nope")))


def test_no_trials_and_no_evaluations(store):
    syn.create(store, "empty")
    data, html = report(store, "empty")
    assert data.verdict.sentence.startswith("No evaluations yet")
    assert "No evaluations exist yet." in data.verdict.warnings
    assert data.verdict.main is not None and data.verdict.main.n_pairs == 0
    assert data.search.message and data.sensitivity.message and data.dynamics.message
    assert data.tables.message == "No complete trial yet; no evaluations yet."
    assert figure_ids(html) == []
    assert "<script>" not in html  # no figure: plotly.js is not inlined
    assert [a.arm for a in data.setup.arms] == ["dynamic", "fixed", "none"]


def test_trials_without_evaluations(store):
    cfg = syn.create(store, "half")
    for arm in ("dynamic", "fixed", "none"):
        syn.add_trials(store, cfg, arm, [0.7, 0.8, 0.75], epochs=2)
    data, html = report(store, "half")
    assert data.verdict.sentence.startswith("No evaluations yet")
    assert data.search.message is None
    assert {"fig-search", "fig-loss", "fig-lambda"} <= set(figure_ids(html))
    assert "fig-verdict" not in figure_ids(html)
    # λ of the unregularized arm is 0 throughout: left off the log-scale chart
    lam = html[html.index('id="fig-lambda"') :]
    lam = lam[: lam.index("</script>")]
    assert '"name":"dynamic"' in lam and '"name":"none"' not in lam


def test_only_failed_trials(store):
    cfg = syn.create(store, "failed")
    for arm in ("dynamic", "fixed"):
        syn.add_trials(store, cfg, arm, [None, None], state=TrialState.FAIL,
                       fail_reason="diverged at epoch 2 (lambda 3.1)")  # fmt: skip
    data, html = report(store, "failed")
    assert {a.arm: dict(a.counts) for a in data.search.arms} == {
        "dynamic": {"FAIL": 2}, "fixed": {"FAIL": 2},
    }  # fmt: skip
    assert all(f.reason.startswith("diverged at epoch 2") for a in data.search.arms
               for f in a.failures)  # fmt: skip
    assert data.search.message and data.sensitivity.message and data.dynamics.message
    assert html.count("diverged at epoch 2 (lambda 3.1)") == 4
    assert figure_ids(html) == []


def test_a_single_arm_gives_no_comparison(store):
    cfg = syn.create(store, "solo", arms={"fixed": syn.ARMS["fixed"]})
    syn.add_trials(store, cfg, "fixed", [0.8, 0.9], epochs=2)
    syn.add_evaluations(store, "solo", "fixed", [0.81, 0.83, 0.8])
    data, _ = report(store, "solo")
    assert data.verdict.main is None and data.verdict.comparisons == ()
    assert 'no "dynamic" arm' in data.verdict.sentence
    assert data.verdict.arms[0].ci is not None and data.verdict.arms[0].ci.n == 3


def test_a_clear_win_on_many_seeds(store):
    syn.create(store, "win")
    noise = [0.003, -0.002, 0.001, -0.004, 0.0025, 0.0, -0.001, 0.0035, -0.003, 0.0005]
    syn.add_evaluations(store, "win", "fixed", [0.85 + n for n in noise])
    syn.add_evaluations(store, "win", "dynamic", [0.87 - n / 2 for n in noise])
    data, html = report(store, "win")
    v = data.verdict
    assert v.sentence.startswith("Better: dynamic beat fixed by 1.99 ± 0.27 points")
    assert "10 seeds" in v.sentence
    # One search per arm: the sentence and the one warning say the verdict is about these
    # two configurations, and that a rerun of the search may disagree (issue 11).
    assert "two configurations one search chose; a rerun may disagree" in v.sentence
    assert len(v.warnings) == 1 and v.warnings[0].startswith("One search per arm")
    assert v.replicates == 1 and v.seeds == 10 and v.method == "seeds only"
    assert v.components is not None and v.components.search_sd is None
    assert v.components.seed_sd == pytest.approx(statistics.stdev(
        [(0.87 - n / 2 - 0.85 - n) * 100 for n in noise]
    ))  # fmt: skip
    assert '<p class="answer win">' in html
    assert "One search per arm" in html and "R = 1" in html


def test_a_loss_metric_lower_is_better(store):
    syn.create(store, "reg", dataset="linear", metric="val_loss")
    noise = [0.03, -0.02, 0.01, -0.04, 0.025, 0.0]
    syn.add_evaluations(store, "reg", "fixed", [1.0 + n for n in noise], loss=True)
    syn.add_evaluations(store, "reg", "dynamic", [1.2 - n for n in noise], loss=True)
    data, _ = report(store, "reg")
    v = data.verdict
    assert (v.metric, v.higher_is_better) == ("test_loss", False)
    assert v.sentence.startswith("Worse: fixed beat dynamic with a test loss lower by 0.1983 ± ")
    summary = reports.summary_json(data)
    assert summary["main"]["winner"] == "fixed"


def test_diverged_evaluations_are_left_out_and_named(store):
    syn.create(store, "div")
    syn.add_evaluations(store, "div", "fixed", [0.8, 0.82, 0.81])
    syn.add_evaluations(store, "div", "dynamic", [0.8, None, 0.83])
    data, _ = report(store, "div")
    dyn = next(a for a in data.verdict.arms if a.arm == "dynamic")
    assert dyn.n_failed == 1 and dyn.ci is not None and dyn.ci.n == 2
    assert data.verdict.main is not None and data.verdict.main.n_pairs == 2
    assert any("dynamic: 1 evaluation" in w for w in data.verdict.warnings)


def test_an_arm_only_the_store_knows_is_shown_with_an_unknown_scheme(store):
    """Trials and evaluations of an arm the config does not list (a store edited by hand):
    shown, as searched over the train ranges (all the config says of it), never dropped."""
    arms = {"dynamic": syn.ARMS["dynamic"], "fixed": syn.ARMS["fixed"]}
    cfg = syn.create(store, "ghostly", arms=arms)
    for arm in arms:
        syn.add_trials(store, cfg, arm, [0.7, 0.8], epochs=2)
    syn.add_trials(store, {**cfg, "arms": {**arms, "ghost": {"scheme": "none"}}}, "ghost",
                   [0.6, 0.65], epochs=2)  # fmt: skip
    for arm in arms:
        syn.add_evaluations(store, "ghostly", arm, [0.8, 0.81, 0.82])
    syn.add_evaluations(store, "ghostly", "ghost", [0.7, 0.71, 0.72],
                        params=syn.best_params(store, "ghostly", "ghost"))  # fmt: skip
    data, _ = report(store, "ghostly")
    ghost = next(a for a in data.setup.arms if a.arm == "ghost")
    assert ghost.scheme == "?" and dict(ghost.settings) == {}
    assert [s.name for s in ghost.spaces] == ["lr"] and ghost.budget == 4
    assert [a.arm for a in data.setup.arms] == ["dynamic", "fixed", "ghost"]  # the config's first
    assert next(a for a in data.verdict.arms if a.arm == "ghost").ci.n == 3
    assert "ghost" in {c.arm for c in data.verdict.comparisons}
    assert "ghost" in {a.arm for a in data.search.arms}
    assert [p.name for a in data.sensitivity.arms if a.arm == "ghost" for p in a.params] == ["lr"]
    assert data.verdict.unfinished == ("dynamic 2/4", "fixed 2/4", "ghost 2/4")


def test_a_classification_whose_evaluations_all_diverged_keeps_its_accuracy(store):
    """The config says what the test metric is, not which numbers happen to be stored."""
    syn.create(store, "lost")
    for arm in ("dynamic", "fixed"):
        syn.add_evaluations(store, "lost", arm, [None, None, None])
    data, _ = report(store, "lost")
    assert (data.accuracy, data.verdict.metric, data.verdict.unit) == (True, "test_acc", "points")
    assert all(a.ci is None and a.n_failed == 3 for a in data.verdict.arms if a.arm != "none")


HOSTILE = "</script><script>alert(1)</script>"
HOSTILE_NAME = "<script>alert(1)<img src=x onerror=alert(2)>"  # names cannot hold "/"


def test_names_params_and_reasons_from_the_database_are_escaped(store):
    arms = {
        HOSTILE_NAME: {"scheme": "dynamic", "alpha": {"low": 1e-4, "high": 1.0, "log": True},
                       "floor": {"low": 1e-8, "high": 1e-2, "log": True},
                       HOSTILE: {"low": 0.0, "high": 1.0, "log": False}},
        HOSTILE: {"scheme": HOSTILE},  # a config-only arm: no study may carry its name
        "fixed": syn.ARMS["fixed"],
    }  # fmt: skip
    cfg = syn.create(store, HOSTILE_NAME, arms=arms)
    syn.add_trials(store, cfg, HOSTILE_NAME, [0.7, 0.8, 0.9], epochs=2)
    syn.add_trials(store, cfg, "fixed", [0.75, 0.85], epochs=2)
    syn.add_trials(store, cfg, "fixed", [None], state=TrialState.FAIL, fail_reason=HOSTILE)
    syn.add_evaluations(store, HOSTILE_NAME, HOSTILE_NAME, [0.8, 0.81, 0.82])
    syn.add_evaluations(store, HOSTILE_NAME, "fixed", [0.8, 0.8, 0.83])
    data, html = report(store, HOSTILE_NAME, syn.Unchecked(cfg))  # no config may carry them
    assert HOSTILE in {p.name for a in data.sensitivity.arms for p in a.params}
    assert {"fig-verdict", "fig-search", "fig-sens-0", "fig-alpha-floor-0"} <= set(
        figure_ids(html)
    )
    for page in (html, reports.render_compare_html([data])):
        lowered = page.lower()
        assert "<script>alert" not in lowered
        assert "<img src=x" not in lowered
        assert "</script><script>" not in lowered
        assert page.count("<script>") == page.count("</script>")
    assert "&lt;script&gt;alert(1)" in html  # shown, as text


@pytest.mark.slow
def test_500_trials_per_arm_render_small(store):
    """The size limit (10 MB); the time is measured by bench/report_time.py, never asserted."""
    cfg = syn.create(store, "big", n_trials=500)
    for i, arm in enumerate(("dynamic", "fixed", "none")):
        syn.add_trials(store, cfg, arm, [0.9 - 0.001 * i], epochs=150, seed=i)  # the best
        syn.add_trials(store, cfg, arm, [0.5 + 0.0007 * k for k in range(499)], seed=10 + i)
    for arm in ("dynamic", "fixed", "none"):
        syn.add_evaluations(store, "big", arm, [0.85 + 0.001 * k for k in range(10)])
    data = reports.build_report_data(store, syn.spec(store, "big"))
    html = reports.render_html(data)
    assert_self_contained(html)
    assert sum(len(a.numbers) for a in data.search.arms) == 1500
    assert all(len(a.epochs) == 150 for a in data.dynamics.arms)
    assert len(html.encode()) < 10_000_000


def test_evaluations_of_an_earlier_best_are_left_out_and_said(store):
    cfg = syn.create(store, "moved")
    syn.finish_search(store, cfg)
    syn.add_evaluations(store, "moved", "fixed", [0.8, 0.82, 0.81, 0.8, 0.79])
    syn.add_evaluations(store, "moved", "dynamic", [0.83, 0.84, 0.82, 0.85, 0.83])
    first, _ = report(store, "moved")
    assert first.verdict.main is not None and first.verdict.main.n_pairs == 5
    assert first.verdict.stale == 0 and not first.verdict.unfinished
    syn.add_trials(store, cfg, "fixed", [0.99], seed=99)  # the search found a better one
    data, html = report(store, "moved")
    fixed = next(a for a in data.verdict.arms if a.arm == "fixed")
    assert fixed.ci is None and fixed.by_seed == {}
    assert data.verdict.main is not None and data.verdict.main.n_pairs == 0
    assert data.verdict.stale == 5
    assert any("5 stored evaluations of an earlier best" in w for w in data.verdict.warnings)
    assert "earlier best configuration (fixed)" in html
    assert reports.summary_json(data)["stale_evaluations"] == 5


def test_a_verdict_on_an_unfinished_search_is_provisional(store):
    cfg = syn.create(store, "early", n_trials=4)
    for arm in ("dynamic", "fixed", "none"):
        syn.add_trials(store, cfg, arm, [0.5, 0.6], seed=len(arm))  # 2 of 4 trials
        syn.add_evaluations(store, "early", arm, [0.8, 0.82, 0.81], params=syn.best_params(
            store, "early", arm))  # fmt: skip
    data, html = report(store, "early")
    v = data.verdict
    assert v.unfinished == ("dynamic 2/4", "fixed 2/4", "none 2/4")
    assert v.sentence.startswith("Provisional, the search is unfinished (dynamic 2/4")
    assert any("search is unfinished" in w for w in v.warnings)
    assert "Provisional" in html
    assert reports.summary_json(data)["provisional"] is True
