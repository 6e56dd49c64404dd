"""Evaluations belong to the configuration they retrained (issue: evaluations pinned to a
stale best).

``dynl2 evaluate`` on an unfinished search is refused unless ``--provisional``; a report on it
says the verdict is provisional; once the search finds another best, the rows of the old one
are left out of every reader and redone by the next evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import create_trial

import storage
from study.config.experiment import ExperimentConfig, load_experiment
from study.search.keys import Heartbeat
from study.search.studies import distributions, open_studies
from tests.storage.backends import BACKENDS, empty_url
from tests.study.test_run_e2e import dynl2_here
from tests.tiny import write_tiny

ARMS = ("dynamic", "fixed", "none")
SEEDS = 2


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # reports go to ./dynl2-workspace: keep it out of the tree


def hand_trial(config: ExperimentConfig, study: optuna.Study, arm: str, value: float,
               params: dict[str, float]) -> None:  # fmt: skip
    """A finished trial written as a worker writes one (without training it)."""
    study.add_trial(
        create_trial(
            params=params,
            distributions=distributions(config, arm),
            value=value,
            user_attrs={"config": {"device": "cpu"}, "dynl2_result": "complete"},
        )
    )


def latest_summary(url: str, name: str) -> dict:
    with storage.open(url, create=False) as store:
        frame = store.reports(name)
    return dict(frame.iloc[0]["summary"])


def evaluations_match_best(url: str, name: str) -> None:
    with storage.open(url, create=False) as store:
        evals = store.evaluations(name)
        best = storage.best_trials(store.trials(name), "maximize")
    assert sorted(evals.groupby("arm").size().items()) == [(a, SEEDS) for a in ARMS]
    for arm, params in zip(evals["arm"], evals["params"], strict=True):
        assert params == best[arm]["params"], arm


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_early_evaluation_is_provisional_and_redone_for_the_final_best(backend, tmp_path):
    name = "early"
    path = write_tiny(tmp_path, name, epochs=2, n_trials=3, seeds=SEEDS, arms=ARMS)
    config = load_experiment(path)
    with empty_url(backend, tmp_path) as url:
        # An unfinished search: one finished trial per arm, as if the run had been stopped.
        with storage.open(url) as store:
            store.create_experiment(config.name, config.to_dict())
            studies = open_studies(store, config, Heartbeat())
            first = {
                "dynamic": {"lr": 0.01, "alpha": 0.01},
                "fixed": {"lr": 0.01, "lam": 1e-3},
                "none": {"lr": 0.01},
            }
            for arm in ARMS:
                hand_trial(config, studies[(arm, 1)], arm, 0.5, first[arm])

        refused = dynl2_here("evaluate", name, "--storage", url)
        assert refused.returncode == 2, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "unfinished" in refused.stderr and "--provisional" in refused.stderr
        with storage.open(url, create=False) as store:
            assert store.evaluations(name).empty  # nothing written

        early = dynl2_here("evaluate", name, "--provisional", "--storage", url)
        assert early.returncode == 0, early.stderr
        with storage.open(url, create=False) as store:
            evals = store.evaluations(name)
        assert len(evals) == SEEDS * len(ARMS)
        report = dynl2_here("report", name, "-o", str(tmp_path / "early.html"), "--storage", url)
        assert report.returncode == 0, report.stderr
        summary = latest_summary(url, name)
        assert summary["provisional"] is True
        assert summary["sentence"].startswith("Provisional, the search is unfinished")
        assert "Provisional" in (tmp_path / "early.html").read_text()

        # The search moves on: a better fixed configuration (no validation accuracy beats 2).
        final_fixed = {"lr": 0.02, "lam": 1e-5}
        with storage.open(url) as store:
            studies = open_studies(store, config, Heartbeat())
            hand_trial(config, studies[("fixed", 1)], "fixed", 2.0, final_fixed)
        report = dynl2_here("report", name, "-o", str(tmp_path / "moved.html"), "--storage", url)
        assert report.returncode == 0, report.stderr
        summary = latest_summary(url, name)
        assert summary["stale_evaluations"] == SEEDS
        assert summary["arms"]["fixed"]["test"] is None  # the old best's seeds are left out
        assert summary["main"] is None or summary["main"]["n_pairs"] == 0
        assert any("earlier best configuration (fixed)" in w for w in summary["warnings"])
        trials = dynl2_here("trials", name, "--arm", "fixed", "--format", "json", "--storage", url)
        assert all(row["test_seeds"] == 0 for row in json.loads(trials.stdout))

        # The run resumes, finishes the search and evaluates the final best of every arm.
        done = dynl2_here("run", str(path), "--quiet", "--storage", url)
        assert done.returncode == 0, done.stderr
        evaluations_match_best(url, name)
        with storage.open(url, create=False) as store:
            fixed = store.evaluations(name).query("arm == 'fixed'")
        assert all(p == final_fixed for p in fixed["params"])
        summary = latest_summary(url, name)
        assert summary["provisional"] is False and summary["stale_evaluations"] == 0
        assert not summary["sentence"].startswith("Provisional")


def test_evaluate_refuses_an_experiment_without_trials(tmp_path: Path) -> None:
    path = write_tiny(tmp_path, "bare", epochs=2, n_trials=2, seeds=SEEDS, arms=ARMS)
    config = load_experiment(path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with storage.open(url) as store:
        store.create_experiment(config.name, config.to_dict())
    refused = dynl2_here("evaluate", "bare", "--storage", url)
    assert refused.returncode == 2 and "unfinished (dynamic 0/2" in refused.stderr
    with storage.open(url, create=False) as store:
        assert store.evaluations("bare").empty
