"""``dynl2 status NAME`` reads a store in the common case with :func:`storage.read_status`
(SQLAlchemy Core, no Optuna, pandas or SciPy) and computes what the store's own door computes:
the same :class:`study.api.experiments.ExperimentStatus`, to the last bit of every float, and
the same lines, on SQLite and PostgreSQL, with trials in every state, workers holding trials,
stale and diverged evaluations, one replicate or three. Where the quick read does not answer,
the store's door does, as before."""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from pathlib import Path

import pytest
from optuna.trial import TrialState

import storage
from study.api import experiments as api
from study.cli.dispatch import main
from study.config.experiment import ExperimentConfig, load_experiment
from study.search.keys import DIVERGED, RESULT_ATTR, WORKER_ATTR, WORKER_JOB_ATTR, Heartbeat
from study.search.studies import distributions, open_studies
from tests.storage.backends import BACKENDS, empty_url
from tests.tiny import write_tiny

NAME = "st"
HOLDERS = (WORKER_ATTR, WORKER_JOB_ATTR)


def build(url: str, directory: Path, *, replicates: int) -> ExperimentConfig:
    """A store of experiment ``st`` with every kind of row ``dynl2 status`` shows: per search,
    complete trials (a tie, an infinite value), a pruned, a diverged and a lost one, two
    running (one held under Slurm, one without a worker), one waiting; per search, evaluations
    of its best configuration (one diverged) and one of an earlier best (stale)."""
    path = write_tiny(directory, NAME, epochs=1, n_trials=3, seeds=2,
                      arms=("dynamic", "fixed", "none"))  # fmt: skip
    text = path.read_text().replace('metric = "val_acc"', f'metric = "val_acc"\nreplicates = '
                                    f"{replicates}")  # fmt: skip
    path.write_text(text)
    config = load_experiment(path)
    with storage.open(url) as store, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna: heartbeats are for optimize()
        store.create_experiment(config.name, config.to_dict())
        studies = open_studies(store, config, Heartbeat())
        for i, ((arm, replicate), study) in enumerate(sorted(studies.items())):
            dists = distributions(config, arm)
            told = []
            for value in (0.5 + i / 100, 0.9 - i / 50, 0.9 - i / 50, math.inf if i % 2 else 0.1):
                trial = study.ask(dists)
                trial.set_user_attr(RESULT_ATTR, "complete")
                study.tell(trial, value)
                told.append((value, trial.params))
            pruned = study.ask(dists)
            pruned.report(0.1, 1)
            study.tell(pruned, state=TrialState.PRUNED)
            diverged = study.ask(dists)
            diverged.set_user_attr(RESULT_ATTR, DIVERGED)
            study.tell(diverged, state=TrialState.FAIL)
            study.tell(study.ask(dists), state=TrialState.FAIL)  # lost: no result
            held = study.ask(dists)
            held.set_user_attr(WORKER_ATTR, f"node{i}:{100 + i}")
            if i % 2:
                held.set_user_attr(WORKER_JOB_ATTR, f"77_{i}")
            study.ask(dists)  # running, its worker not recorded
            study.enqueue_trial({})  # waiting
            finite = [(v, p) for v, p in told if math.isfinite(v)]
            best = max(finite, key=lambda vp: vp[0])[1]  # the first of the tie
            for seed in range(3):
                acc = None if (seed == 2 and i % 3 == 0) else 0.6 + (i * 7 + seed * 3) % 11 / 40
                store.record_evaluation(NAME, arm, seed, best, replicate=replicate,
                                        test_loss=1.0 - (acc or 0.0), test_acc=acc)  # fmt: skip
            store.record_evaluation(NAME, arm, 3, told[0][1], replicate=replicate,
                                    test_loss=0.5, test_acc=0.5)  # fmt: skip
        store.optuna_storage().engine.dispose()
    return config


def status_lines(url: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["status", NAME, "--storage", url]) == 0
    return out.getvalue()


@pytest.mark.parametrize("replicates", [1, 3])
@pytest.mark.parametrize("backend", BACKENDS)
def test_the_quick_read_gives_what_the_store_gives(
    backend: str, replicates: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with empty_url(backend, tmp_path) as url:
        build(url, tmp_path, replicates=replicates)
        rows = storage.read_status(url, NAME, result_attr=RESULT_ATTR, holder_attrs=HOLDERS)
        assert rows is not None, "the quick read gave up on a store in the common case"
        quick, quick_lines = api.experiment_status(NAME, storage=url), status_lines(url)
        monkeypatch.setattr(storage, "read_status", lambda *args, **kwargs: None)
        full, full_lines = api.experiment_status(NAME, storage=url), status_lines(url)
    assert quick == full
    assert quick_lines == full_lines
    assert len(quick.holders) == 2 * len(quick.counts)  # the test covers what it means to
    assert any(s.diverged for s in quick.summary) and any(h.job for h in quick.holders)
    assert "held by:" in quick_lines and "lost (retried)" in quick_lines


def test_a_store_the_quick_read_does_not_know_is_read_through_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dynl2.db'}"
    build(url, tmp_path, replicates=1)
    expected = api.experiment_status(NAME, storage=url)
    with storage.open(url) as store, store.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE dynl2_alembic_version SET version_num = '0003'")
    assert storage.read_status(url, NAME, result_attr=RESULT_ATTR, holder_attrs=HOLDERS) is None
    assert api.experiment_status(NAME, storage=url) == expected  # the store's door read it


# Damage the quick read gives up on (True), or reads and the status computed from it does
# (False: a stored config that is no experiment's is the study layer's to judge).
DAMAGES = [
    ('UPDATE trial_params SET distribution_json = \'{"name": "Nope"}\'', True),
    ("UPDATE trial_user_attributes SET value_json = '{' WHERE key = 'dynl2_result'", True),
    (
        "INSERT INTO trial_user_attributes (trial_id, key, value_json) "
        "VALUES (1, 'best_epoch', '{')",
        True,
    ),
    ("UPDATE dynl2_evaluations SET params = '[1]'", True),
    ('UPDATE dynl2_experiments SET config = \'{"experiment": {"name": "other"}}\'', False),
]


@pytest.mark.parametrize(("damage", "unread"), DAMAGES)
def test_a_damaged_row_is_named_by_the_store_s_door(
    tmp_path: Path, damage: str, unread: bool
) -> None:
    url = f"sqlite:///{tmp_path / 'dynl2.db'}"
    build(url, tmp_path, replicates=1)
    with storage.open(url) as store, store.engine.begin() as connection:
        connection.exec_driver_sql(damage)
    rows = storage.read_status(url, NAME, result_attr=RESULT_ATTR, holder_attrs=HOLDERS)
    assert (rows is None) == unread
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["status", NAME, "--storage", url]) == 1
    assert "damaged" in err.getvalue(), err.getvalue()


def test_a_missing_store_or_experiment_is_named_as_before(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dynl2.db'}"
    assert storage.read_status(url, NAME, result_attr=RESULT_ATTR, holder_attrs=HOLDERS) is None
    assert not (tmp_path / "dynl2.db").exists()  # never a new empty file
    build(url, tmp_path, replicates=1)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["status", "nosuch", "--storage", url]) == 2
    assert "No experiment named 'nosuch'" in err.getvalue()
