"""dynl2 uses only the Optuna studies it created for an experiment (issue: foreign studies).

A study named ``EXPERIMENT/ARM`` that another program made (or that dynl2 made for another
search space) is refused with one line naming it, before anything is written; a study an
older dynl2 made before studies were marked is recognised and marked on resume.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

import storage
from tests.storage.backends import BACKENDS, empty_url
from tests.study.test_run_e2e import dynl2_here
from tests.tiny import write_tiny

ARMS = ("dynamic", "fixed", "none")
TABLES = (
    "studies",
    "study_directions",
    "study_system_attributes",
    "study_user_attributes",
    "trials",
    "trial_params",
    "trial_values",
    "trial_user_attributes",
)


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # reports go to ./dynl2-workspace: keep it out of the tree


def config_file(tmp_path: Path, name: str) -> Path:
    return write_tiny(tmp_path, name, epochs=2, n_trials=2, seeds=2, arms=ARMS)


def snapshot(url: str) -> dict[str, Any]:
    """Every row of Optuna's tables and of dynl2's experiments and evaluations."""
    engine = sqlalchemy.create_engine(url)
    try:
        names = set(sqlalchemy.inspect(engine).get_table_names())
        out = {}
        with engine.connect() as connection:
            for table in (*TABLES, "dynl2_experiments", "dynl2_evaluations"):
                if table in names:
                    rows = connection.execute(sqlalchemy.text(f"SELECT * FROM {table}"))
                    out[table] = sorted(map(repr, rows))
        return out
    finally:
        engine.dispose()


def plain_study(url: str, name: str, direction: str = "maximize") -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(storage=url, study_name=name, direction=direction)


def other_program(url: str, experiment: str) -> str:
    """The issue's case: other direction, other parameters, values outside the ranges."""
    study = plain_study(url, f"{experiment}/fixed", direction="minimize")
    dists = {"lr": FloatDistribution(0.0, 10.0), "lam": FloatDistribution(0.0, 1.0)}
    for lr, lam, value in ((5.77, 0.80, 0.1), (0.3, 0.5, 0.2)):
        study.add_trial(create_trial(params={"lr": lr, "lam": lam}, distributions=dists,
                                     value=value))  # fmt: skip
    return f"{experiment}/fixed"


def same_space_no_mark(url: str, experiment: str) -> str:
    """Plain Optuna with dynl2's own direction and search space, values inside the ranges."""
    study = plain_study(url, f"{experiment}/fixed")
    dists = {
        "lr": FloatDistribution(1e-3, 3e-2, log=True),
        "lam": FloatDistribution(1e-6, 1e-1, log=True),
    }
    study.add_trial(create_trial(params={"lr": 0.01, "lam": 0.001}, distributions=dists,
                                 value=0.99))  # fmt: skip
    return f"{experiment}/fixed"


def empty_study(url: str, experiment: str) -> str:
    plain_study(url, f"{experiment}/dynamic")
    return f"{experiment}/dynamic"


def not_an_arm(url: str, experiment: str) -> str:
    plain_study(url, f"{experiment}/other")
    return f"{experiment}/other"


def marked_for_another_space(url: str, experiment: str) -> str:
    name = plain_study(url, f"{experiment}/fixed").study_name
    other = optuna.distributions.distribution_to_json(FloatDistribution(0.5, 0.9))
    mark = {"experiment": experiment, "arm": "fixed", "direction": "maximize",
            "space": {"lr": other, "lam": other}}  # fmt: skip
    rdb = optuna.storages.RDBStorage(url)
    rdb.set_study_system_attr(rdb.get_study_id_from_name(name), storage.STUDY_MARK, mark)
    rdb.engine.dispose()
    return name


FOREIGN: dict[str, Callable[[str, str], str]] = {
    "other direction and parameters": other_program,
    "same space, no mark": same_space_no_mark,
    "empty": empty_study,
    "not an arm": not_an_arm,
    "marked for another space": marked_for_another_space,
}


def assert_refused(done: Any, study: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert repr(study) in lines[0] and "not one dynl2 created" in lines[0], lines[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("how", list(FOREIGN))
def test_run_refuses_a_study_it_did_not_create(backend, how, tmp_path):
    name = "foreign"
    config = config_file(tmp_path, name)
    with empty_url(backend, tmp_path) as url:
        study = FOREIGN[how](url, name)
        before = snapshot(url)
        done = dynl2_here("run", str(config), "--quiet", "--storage", url)
        assert_refused(done, study)
        after = snapshot(url)
        assert after.pop("dynl2_experiments", []) == [] and not after.pop("dynl2_evaluations", [])
        assert after == before  # nothing written: no experiment, no study, no trial


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_study_swapped_in_later_is_refused_by_every_verb(backend, tmp_path):
    """The experiment ran; then another program replaced one arm's study with its own and
    added a study under the experiment's name. Nothing of theirs is used or shown."""
    name = "swapped"
    config = config_file(tmp_path, name)
    with empty_url(backend, tmp_path) as url:
        done = dynl2_here("run", str(config), "--quiet", "--storage", url)
        assert done.returncode == 0, done.stderr
        optuna.delete_study(study_name=f"{name}/fixed", storage=url)
        study = other_program(url, name)
        not_an_arm(url, name)
        before = snapshot(url)
        for verb in (
            ("run", str(config), "--quiet"),
            ("worker", name, "--quiet"),
            ("evaluate", name, "--seeds", "3"),
        ):
            assert_refused(dynl2_here(*verb, "--storage", url), study)
            assert snapshot(url) == before
        with storage.open(url, create=False) as store:  # the readers leave them out
            assert set(store.trials(name)["arm"]) == {"dynamic", "none"}
            assert store.arms(name) == ["dynamic", "none"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_studies_of_an_older_dynl2_are_marked_on_resume(backend, tmp_path):
    """A store written before studies were marked: its studies are recognised as dynl2's
    (the experiment's direction and space, every finished trial trained by dynl2), marked,
    and the run resumes; reading it before the resume shows every arm."""
    name = "legacy"
    config = config_file(tmp_path, name)
    with empty_url(backend, tmp_path) as url:
        assert dynl2_here("run", str(config), "--quiet", "--storage", url).returncode == 0
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as connection:
            removed = connection.execute(
                sqlalchemy.text("DELETE FROM study_system_attributes WHERE key = :k"),
                {"k": storage.STUDY_MARK},
            ).rowcount
        assert removed == 3
        with storage.open(url, create=False) as store:
            assert store.arms(name) == sorted(ARMS)
            trials_before = len(store.trials(name))
        done = dynl2_here("run", str(config), "--quiet", "--storage", url)
        assert done.returncode == 0, done.stderr
        with engine.connect() as connection:
            marks = connection.execute(
                sqlalchemy.text("SELECT count(*) FROM study_system_attributes WHERE key = :k"),
                {"k": storage.STUDY_MARK},
            ).scalar_one()
        engine.dispose()
        assert marks == 3
        with storage.open(url, create=False) as store:
            assert len(store.trials(name)) == trials_before  # resumed: nothing more to do
