"""Issue 28, end to end: replicates added until decided (``[search] replicates = { min, max }``).

Two experiments on digits, each run by ``dynl2 run --workers 2`` on SQLite and on PostgreSQL:

- **handicapped** — the dynamic arm's λ is held between 5 and 50 (``floor``/``ceiling``): far
  too strong, so it loses to fixed by tens of points. The run must stop at the first stage
  (3 replicates of up to 5), decided "worse", and search nothing more.
- **twins** — both arms train with λ = 1e-12 and the same learning rate, so their test
  accuracies agree seed by seed. Without a margin nothing can be decided: the run must add
  replicates to its maximum (2, then 4) and end "inconclusive".

And the same twins worked through by one ``dynl2 agent --once``, which opens the second stage
itself; and a stopped run that resumes at its stage."""

from __future__ import annotations

import optuna
import pytest

import storage
from study.cli import dispatch as cli
from study.config.experiment import load_experiment
from study.run.runs import create_or_resume, stored_experiment
from study.run.stages import next_stage, reached

from ..storage.backends import BACKENDS, empty_url
from ..tiny import tiny_config

pytestmark = pytest.mark.slow

NARROW_LR = "lr = { low = 0.01, high = 0.0100001 }"  # searched, yet one learning rate


def _handicapped(tmp_path):
    text = tiny_config("handicapped", epochs=3, n_trials=2, seeds=3, arms=("dynamic", "fixed"))
    text = text.replace(
        "alpha = { low = 1e-4, high = 1.0, log = true }\n",
        "alpha = { low = 1e-4, high = 1.0, log = true }\nfloor = 5.0\nceiling = 50.0\n",
    )
    text = text.replace("n_trials = 2\n", "n_trials = 2\nreplicates = { min = 3, max = 5 }\n")
    path = tmp_path / "handicapped.toml"
    path.write_text(text)
    return path


def _twins(tmp_path, name="twins"):
    text = tiny_config(name, epochs=2, n_trials=2, seeds=3, arms=())
    text = text.replace("lr = { low = 1e-3, high = 3e-2, log = true }", NARROW_LR)
    text = text.replace("n_trials = 2\n", "n_trials = 2\nreplicates = { min = 2, max = 4 }\n")
    text += (
        '\n[arms.dynamic]\nscheme = "dynamic"\nalpha = 0.01\nfloor = 0.0\nceiling = 1e-12\n'
        '\n[arms.fixed]\nscheme = "fixed"\nlam = 1e-12\n'
    )
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def _summary(url, name):
    with storage.open(url, create=False) as store:
        return store.reports(name).iloc[-1]["summary"]


def _replicates(url, name):
    with storage.open(url, create=False) as store:
        return sorted({int(r) for r in store.trials(name)["replicate"]}), store.evaluations(name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_handicapped_arm_is_decided_at_the_first_stage(backend, tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with empty_url(backend, tmp_path) as url:
        config = _handicapped(tmp_path)
        code = cli.main(["run", str(config), "--storage", url, "--quiet", "--workers", "2"])
        assert code == 0
        replicates, evals = _replicates(url, "handicapped")
        assert replicates == [1, 2, 3]  # stopped at the first stage: 3 of up to 5
        assert len(evals) == 2 * 3 * 3
        main = _summary(url, "handicapped")["main"]
        assert main["decision"] == "worse", main
        assert main["sequential"]["stage"] == 1 and main["sequential"]["stages"] == 2
        assert not main["sequential"]["continues"]
        assert main["prob_better"]["mean"] < 0.1
        sentence = _summary(url, "handicapped")["sentence"]
        assert sentence.startswith("Worse: fixed beat dynamic")
        assert "Decided at stage 1 of 2, after 3 replicates." in sentence


@pytest.mark.parametrize("backend", BACKENDS)
def test_twin_arms_run_to_the_maximum_and_stay_inconclusive(backend, tmp_path, capsys):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with empty_url(backend, tmp_path) as url:
        config = _twins(tmp_path)
        code = cli.main(["run", str(config), "--storage", url, "--workers", "2"])
        out = capsys.readouterr().out
        assert code == 0
        assert "undecided at stage 1 of 2 (2 replicates); adding 2 replicates" in out, out
        replicates, evals = _replicates(url, "twins")
        assert replicates == [1, 2, 3, 4]
        assert len(evals) == 2 * 4 * 3
        summary = _summary(url, "twins")
        main = summary["main"]
        assert main["decision"] == "inconclusive", main
        assert main["sequential"] == {
            "stage": 2, "stages": 2, "replicates": 4, "continues": False,
            "level": main["sequential"]["level"],
        }  # fmt: skip
        assert summary["replicates"] == 4
        assert summary["sentence"].startswith("Inconclusive")
        assert "Stage 2 of 2, after 4 replicates: the last." in summary["sentence"]
        # the terminal ends with the report's headline
        assert summary["sentence"] in out


def test_an_agent_opens_the_next_stage_itself(tmp_path):
    from study.service.agent import run_agent, work_left

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'agent.db'}"
    config = load_experiment(_twins(tmp_path, "agented"))
    with storage.open(url) as store:
        create_or_resume(store, config)
    said: list[str] = []
    run_agent(storage=url, once=True, say=said.append)
    assert any("undecided at stage 1 of 2 (2 replicates); opening stage 2 of 2" in s for s in said)
    replicates, evals = _replicates(url, "agented")
    assert replicates == [1, 2, 3, 4] and len(evals) == 2 * 4 * 3
    with storage.open(url, create=False) as store:
        staged = stored_experiment(store, "agented")
        assert staged.search.replicates == 4  # the store says how far it came
        assert work_left(store, staged) is None
    assert _summary(url, "agented")["main"]["decision"] == "inconclusive"


def test_a_stopped_run_resumes_at_its_stage(tmp_path):
    """A run stopped after its first stage was decided undecided (the second stage's studies
    opened, nothing trained in them) resumes at the second stage: what the store says."""
    from dataclasses import replace

    from study.run.runs import heartbeat_from_env
    from study.search.studies import open_studies

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    path = _twins(tmp_path, "resumed")
    config = load_experiment(path)
    with storage.open(url) as store:
        create_or_resume(store, config)
        assert reached(store, config).search.replicates == 2
        assert next_stage(store, config) is None  # nothing evaluated: nothing to decide yet
        second = replace(config, search=replace(config.search, replicates=4))
        open_studies(store, second, heartbeat_from_env())  # what the run does to go on
        assert reached(store, config).search.replicates == 4
        assert stored_experiment(store, "resumed").search.replicates == 4
    assert cli.main(["run", str(path), "--storage", url, "--quiet"]) == 0
    replicates, evals = _replicates(url, "resumed")
    assert replicates == [1, 2, 3, 4] and len(evals) == 2 * 4 * 3
