"""Issue 11: ``dynl2 report EXPERIMENT --json`` and the verdict summary's new keys: R, S, the
two spreads of the main difference, and the budget curves."""

from __future__ import annotations

import json

import optuna
import pytest
from optuna.trial import TrialState

import storage
from reports.budget import expected_best
from tests.reports import synthetic as syn

from ..reliability.helpers import run_cli


@pytest.fixture
def url(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'r.db'}"
    with storage.open(url) as store:
        cfg = syn.create(store, "j", n_trials=6)
        syn.add_trials(store, cfg, "dynamic", [0.70, 0.74, 0.71, 0.78], seed=1)
        syn.add_trials(store, cfg, "dynamic", [None], state=TrialState.PRUNED)
        syn.add_trials(store, cfg, "dynamic", [0.80], seed=2)
        syn.add_trials(store, cfg, "fixed", [0.72, 0.73, 0.75, 0.76, 0.74, 0.77], seed=3)
        syn.add_evaluations(store, "j", "dynamic", [0.80, 0.82, 0.81, 0.83, 0.80])
        syn.add_evaluations(store, "j", "fixed", [0.79, 0.80, 0.80, 0.81, 0.78])
        syn.add_evaluations(store, "j", "none", [0.75, 0.76, 0.74, 0.75, 0.76])
    return url


def test_json_is_the_stored_summary_with_the_new_keys(url, tmp_path, capsys):
    out = tmp_path / "j.html"
    code, stdout, stderr = run_cli(
        ["report", "j", "-o", str(out), "--json", "--storage", url], capsys
    )
    assert code == 0, stderr
    summary = json.loads(stdout)  # stdout is the one JSON object, nothing else
    assert stderr.strip() == f"report: {out}"
    assert out.is_file()
    with storage.open(url, create=False) as store:
        stored = store.reports("j").iloc[0]["summary"]
    assert stored == summary
    # today's keys are kept
    for key in ("comparisons", "sentence", "warnings"):
        assert key in summary
    main = summary["main"]
    for key in ("mean", "low", "high", "half_width", "n"):
        assert key in main["diff"]
    assert {"p_value", "significant", "winner"} <= set(main)
    # the new ones
    assert summary["replicates"] == 1 and summary["seeds"] == 5
    assert main["components"]["search_sd"] is None  # one search: not measurable
    dynamic_accs, fixed_accs = [0.80, 0.82, 0.81, 0.83, 0.80], [0.79, 0.80, 0.80, 0.81, 0.78]
    diffs = [100 * (a - b) for a, b in zip(dynamic_accs, fixed_accs, strict=True)]
    mean = sum(diffs) / 5
    sd = (sum((d - mean) ** 2 for d in diffs) / 4) ** 0.5
    assert main["components"]["seed_sd"] == pytest.approx(sd)
    assert any(w.startswith("One search per arm") for w in summary["warnings"])
    # the decision keys, on main and on every comparison
    for entry in (main, *summary["comparisons"]):
        assert {"decision", "margin", "tost_p", "prob_better", "ruled_out"} <= set(entry)
        assert entry["decision"] in ("better", "worse", "equivalent", "inconclusive")
    assert main["margin"] is None and main["tost_p"] is None  # no [evaluate] margin
    assert main["ruled_out"] == {"low": main["diff"]["low"], "high": main["diff"]["high"]}
    wins = sum(1 if d > 0 else 0.5 if d == 0 else 0 for d in diffs) / 5
    assert main["prob_better"]["mean"] == pytest.approx(wins)
    assert main["prob_better"]["over"] == "seeds"  # one search: Wilson over its seeds
    assert main["prob_better"]["low"] <= wins <= main["prob_better"]["high"]
    assert summary["sentence"].split(":")[0] == main["decision"].capitalize()
    curves = summary["budget_curves"]
    assert set(curves) == {"dynamic", "fixed", "none"}  # "none" searches lr
    dynamic = [0.70, 0.74, 0.71, 0.78, None, 0.80]  # the pruned trial counts, never best
    expected = expected_best(dynamic, range(1, 7), higher_is_better=True)
    assert [p["n"] for p in curves["dynamic"]] == list(range(1, 7))
    assert [p["mean"] for p in curves["dynamic"]] == pytest.approx(expected)
    assert all(p["low"] is None and p["high"] is None for p in curves["dynamic"])
    assert curves["dynamic"][-1]["mean"] == pytest.approx(0.80)
    assert summary["budget_sentence"].startswith("At 6 trials, dynamic's expected best val_acc")
    html = out.read_text(encoding="utf-8")
    assert 'id="plot-budget"' in html and "expected best val_acc after n trials" in html


@pytest.mark.parametrize(
    "extra", [["--compare", "j", "j"], ["--from-store"]], ids=["compare", "from-store"]
)
def test_json_with_compare_or_from_store_is_refused(url, tmp_path, capsys, extra):
    argv = ["report", *extra, "-o", str(tmp_path / "x.html"), "--json", "--storage", url]
    if extra[0] == "--from-store":
        argv.insert(1, "j")
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "--json" in stderr
    assert not (tmp_path / "x.html").exists()


def test_replicates_partly_evaluated_are_named_and_the_report_renders(tmp_path, capsys):
    """Three replicates searched, two evaluated: the report renders, compares over the two,
    and says which searches are not evaluated yet."""
    url = f"sqlite:///{tmp_path / 'p.db'}"
    arms = {"dynamic": syn.ARMS["dynamic"], "fixed": syn.ARMS["fixed"]}
    with storage.open(url) as store:
        cfg = syn.config("p", arms=arms, n_trials=3)
        cfg["search"]["replicates"] = 3
        store.create_experiment("p", cfg)
        for r in (1, 2, 3):
            for arm in arms:
                syn.add_trials(store, cfg, arm, [0.7, 0.72, 0.71], seed=10 * r + len(arm),
                               replicate=r)  # fmt: skip
        for r, shift in ((1, 0.01), (2, 0.02)):
            syn.add_evaluations(store, "p", "dynamic", [0.8 + shift, 0.81 + shift, 0.8 + shift],
                                replicate=r)  # fmt: skip
            syn.add_evaluations(store, "p", "fixed", [0.8, 0.8, 0.79], replicate=r)
    out = tmp_path / "p.html"
    code, stdout, stderr = run_cli(
        ["report", "p", "-o", str(out), "--json", "--storage", url], capsys
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["replicates"] == 2 and summary["method"] == "replicate means"
    assert summary["main"]["diff"]["n"] == 2
    (warning,) = [w for w in summary["warnings"] if w.startswith("Not evaluated yet")]
    assert "dynamic/3" in warning and "fixed/3" in warning and "dynamic/1" not in warning
    assert "Not evaluated yet: dynamic/3, fixed/3" in out.read_text(encoding="utf-8")
    assert len(summary["budget_curves"]["dynamic"]) == 3
    assert summary["budget_curves"]["dynamic"][0]["low"] is not None  # a band over 3 searches
