"""The contract suite: every Store method, on every backend (see conftest.store_url)."""

from __future__ import annotations

import math
import os
import types
from pathlib import Path
from typing import Any

import optuna
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

import storage
from storage import EPOCH_COLUMNS, EVALUATION_COLUMNS, EXPERIMENT_COLUMNS, TRIAL_COLUMNS
from storage.store import StoreVanished

optuna.logging.set_verbosity(optuna.logging.WARNING)

CONFIG = {"dataset": "mnist1d", "epochs": 20, "arms": ["dynamic", "fixed"], "lr": 0.01}


retry_callback = getattr(  # renamed in Optuna 4.9
    optuna.storages, "RetryHeartbeatStaleTrialCallback", optuna.storages.RetryFailedTrialCallback
)


def _study(store: storage.Store, experiment: str, arm: str) -> optuna.Study:
    return optuna.create_study(
        storage=store.optuna_storage(), study_name=storage.study_name(experiment, arm)
    )


def _trial_ids(store: storage.Store, experiment: str, arm: str, n: int) -> list[int]:
    study = _study(store, experiment, arm)
    return [study.ask()._trial_id for _ in range(n)]


def _epoch(epoch: int, **metrics: float | None) -> dict[str, float | int | None]:
    row: dict[str, float | int | None] = {"epoch": epoch, "train_loss": 1.0 / epoch}
    row.update(metrics)
    return row


# ------------------------------------------------------------------------- experiments


def test_create_experiment_returns_a_frozen_info(store: storage.Store) -> None:
    info = store.create_experiment("exp", CONFIG)
    assert (info.name, info.config) == ("exp", CONFIG)
    assert info.created.tzinfo is not None
    assert store.get_experiment("exp") == info
    with pytest.raises(AttributeError):
        info.name = "other"  # type: ignore[misc]


def test_create_experiment_resumes_with_an_identical_config(store: storage.Store) -> None:
    first = store.create_experiment("exp", CONFIG)
    reordered = dict(reversed(list(CONFIG.items())))
    assert store.create_experiment("exp", reordered) == first
    assert len(store.experiments()) == 1


def test_create_experiment_conflict_names_the_differing_keys(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    changed = {**CONFIG, "lr": 0.1, "seeds": 5}
    del changed["epochs"]
    with pytest.raises(storage.ExperimentConflict) as info:
        store.create_experiment("exp", changed)
    message = str(info.value)
    assert "'exp'" in message
    assert "epochs, lr, seeds" in message
    assert "dataset" not in message and "arms" not in message
    assert store.get_experiment("exp").config == CONFIG  # unchanged


def test_get_experiment_not_found_lists_known_names(store: storage.Store) -> None:
    with pytest.raises(storage.ExperimentNotFound, match="no experiments yet"):
        store.get_experiment("nope")
    for i in range(12):
        store.create_experiment(f"exp{i}", {})
    with pytest.raises(storage.ExperimentNotFound) as info:
        store.get_experiment("nope")
    message = str(info.value)
    assert "'nope'" in message and "exp0" in message and "exp9" in message
    assert "exp10" not in message  # the list is capped


@pytest.mark.parametrize("bad", ["", " exp", "exp ", "a/b", "x" * 256, 7, None], ids=repr)
def test_bad_experiment_names_are_refused(sqlite_store: storage.Store, bad: Any) -> None:
    with pytest.raises(storage.InvalidRecord, match="`experiment`"):
        sqlite_store.create_experiment(bad, {})
    assert sqlite_store.experiments().empty


@pytest.mark.parametrize(
    "bad",
    [{"x": math.nan}, {"x": object()}, ["not", "a", "mapping"]],
    ids=["nan", "object", "list"],  # stable ids: parallel workers must collect the same tests
)
def test_unserialisable_configs_are_refused(sqlite_store: storage.Store, bad: Any) -> None:
    with pytest.raises(storage.InvalidRecord, match="`config`"):
        sqlite_store.create_experiment("exp", bad)


def test_experiments_frame(store: storage.Store) -> None:
    empty = store.experiments()
    assert list(empty.columns) == list(EXPERIMENT_COLUMNS)
    assert empty.empty
    store.create_experiment("b", {"k": 2})
    store.create_experiment("a", {"k": 1})
    frame = store.experiments()
    assert list(frame["name"]) == ["b", "a"]  # creation order
    assert list(frame["config"]) == [{"k": 2}, {"k": 1}]
    assert str(frame["created"].dt.tz) == "UTC"


# ------------------------------------------------------------------------------ epochs


def test_record_epochs_in_one_call_and_read_them_back(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    (trial_id,) = _trial_ids(store, "exp", "dynamic", 1)
    rows = [
        _epoch(e, val_loss=2.0 / e, val_acc=None, lam_mean=0.1, seconds=0.5) for e in (1, 2, 3)
    ]
    store.record_epochs(trial_id, rows)
    frame = store.epochs("exp")
    assert list(frame.columns) == list(EPOCH_COLUMNS)
    assert list(frame["epoch"]) == [1, 2, 3]
    assert set(frame["arm"]) == {"dynamic"}
    assert set(frame["trial_id"]) == {trial_id}
    assert set(frame["state"]) == {"RUNNING"}
    assert list(frame["val_loss"]) == [2.0, 1.0, pytest.approx(2.0 / 3)]
    assert frame["val_acc"].isna().all() and frame["train_acc"].isna().all()


def test_record_epochs_is_idempotent_last_write_wins(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    (trial_id,) = _trial_ids(store, "exp", "dynamic", 1)
    store.record_epochs(trial_id, [_epoch(1), _epoch(2)])
    store.record_epochs(trial_id, [_epoch(2, val_loss=9.0)])  # retried epoch 2
    store.record_epochs(trial_id, [_epoch(3, val_loss=1.0), _epoch(3, val_loss=3.0)])
    store.record_epochs(trial_id, [])  # nothing to do
    frame = store.epochs("exp")
    assert list(frame["epoch"]) == [1, 2, 3]
    assert list(frame["val_loss"].fillna(-1)) == [-1, 9.0, 3.0]


def test_nan_metrics_are_stored_as_null(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    (trial_id,) = _trial_ids(store, "exp", "dynamic", 1)
    store.record_epochs(trial_id, [_epoch(1, train_loss=math.nan, val_loss=math.inf)])
    frame = store.epochs("exp")
    assert math.isnan(frame["train_loss"].iloc[0])
    assert frame["val_loss"].iloc[0] == math.inf


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"train_loss": 1.0}, "epoch"),
        ({"epoch": 0}, "1-based"),
        ({"epoch": True}, "epoch"),
        ({"epoch": 1.0}, "epoch"),
        ({"epoch": 1, "train_los": 1.0}, "train_los"),
        ({"epoch": 1, "trial_id": 5}, "trial_id"),
        ({"epoch": 1, "val_loss": "low"}, "val_loss"),
    ],
    ids=repr,
)
def test_bad_epoch_rows_are_refused_and_nothing_is_written(
    sqlite_store: storage.Store, row: dict[str, Any], message: str
) -> None:
    sqlite_store.create_experiment("exp", CONFIG)
    (trial_id,) = _trial_ids(sqlite_store, "exp", "dynamic", 1)
    with pytest.raises(storage.InvalidRecord, match=message):
        sqlite_store.record_epochs(trial_id, [_epoch(1), _epoch(2), row])
    assert sqlite_store.epochs("exp").empty


def test_record_epochs_for_an_unknown_trial_is_refused(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    with pytest.raises(storage.InvalidRecord, match="12345"):
        store.record_epochs(12345, [_epoch(1)])
    with pytest.raises(storage.InvalidRecord, match="`trial_id`"):
        store.record_epochs("1", [_epoch(1)])  # type: ignore[arg-type]


def test_record_epochs_many_writes_several_trials_all_or_none(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    first, second = _trial_ids(store, "exp", "dynamic", 2)
    with pytest.raises(storage.InvalidRecord, match="12345"):  # one unknown trial: nothing
        store.record_epochs_many({first: [_epoch(1)], 12345: [_epoch(1)]})
    with pytest.raises(storage.InvalidRecord, match="1-based"):  # one bad row: nothing
        store.record_epochs_many({first: [_epoch(1)], second: [{"epoch": 0}]})
    assert store.epochs("exp").empty
    store.record_epochs_many({first: [_epoch(1), _epoch(2)], second: [_epoch(1, val_loss=4.0)]})
    store.record_epochs_many({second: [_epoch(1, val_loss=2.0)], first: []})  # a retry
    frame = store.epochs("exp")
    assert list(zip(frame["trial_id"], frame["epoch"], strict=True)) == [
        (first, 1), (first, 2), (second, 1),
    ]  # fmt: skip
    assert frame.loc[frame["trial_id"] == second, "val_loss"].tolist() == [2.0]
    store.record_epochs_many({})  # nothing to do


def test_epochs_filters_by_arm_and_orders_by_trial(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    dynamic = _trial_ids(store, "exp", "dynamic", 2)
    (fixed,) = _trial_ids(store, "exp", "fixed", 1)
    for trial_id in [*reversed(dynamic), fixed]:
        store.record_epochs(trial_id, [_epoch(2), _epoch(1)])
    frame = store.epochs("exp", arm="dynamic")
    assert list(zip(frame["number"], frame["epoch"], strict=True)) == [
        (0, 1),
        (0, 2),
        (1, 1),
        (1, 2),
    ]
    assert len(store.epochs("exp")) == 6
    assert store.epochs("exp", arm="none").empty


def test_delete_study_cascades_to_epochs(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    study = _study(store, "exp", "dynamic")
    for _ in range(2):
        trial = study.ask()
        store.record_epochs(trial._trial_id, [_epoch(1), _epoch(2)])
        study.tell(trial, 0.5)
    (kept,) = _trial_ids(store, "exp", "fixed", 1)
    store.record_epochs(kept, [_epoch(1)])

    optuna.delete_study(study_name="exp/dynamic", storage=store.optuna_storage())

    assert store.arms("exp") == ["fixed"]
    assert list(store.epochs("exp")["trial_id"]) == [kept]
    with store.engine.connect() as connection:
        count = connection.exec_driver_sql("SELECT count(*) FROM dynl2_epochs").scalar()
    assert count == 1  # no orphans


def test_sqlite_trigger_cleans_up_when_another_tool_deletes(sqlite_url: str) -> None:
    with storage.open(sqlite_url) as store:
        store.create_experiment("exp", CONFIG)
        (trial_id,) = _trial_ids(store, "exp", "dynamic", 1)
        store.record_epochs(trial_id, [_epoch(1)])
    plain = optuna.storages.RDBStorage(sqlite_url)  # like optuna-dashboard: no FK pragma
    with plain.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    optuna.delete_study(study_name="exp/dynamic", storage=plain)
    plain.engine.dispose()
    with storage.open(sqlite_url) as store, store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM dynl2_epochs").scalar() == 0


# ------------------------------------------------------------------------- evaluations


def test_record_evaluation_is_idempotent_per_seed(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    store.record_evaluation("exp", "dynamic", 1, {"alpha": 0.1}, test_loss=0.5, test_acc=0.8)
    store.record_evaluation("exp", "dynamic", 1, {"alpha": 0.2}, test_loss=0.4, seconds=3.0)
    store.record_evaluation("exp", "dynamic", 2, {"alpha": 0.2}, test_loss=0.6)
    store.record_evaluation("exp", "fixed", 1, {"lam": 1e-4}, test_loss=0.7)
    assert store.evaluated_seeds("exp", "dynamic") == {1, 2}
    assert store.evaluated_seeds("exp", "none") == set()
    frame = store.evaluations("exp")
    assert list(frame.columns) == list(EVALUATION_COLUMNS)
    assert list(zip(frame["arm"], frame["seed"], strict=True)) == [
        ("dynamic", 1),
        ("dynamic", 2),
        ("fixed", 1),
    ]
    first = frame.iloc[0]
    assert (first["params"], first["test_loss"], first["seconds"]) == ({"alpha": 0.2}, 0.4, 3.0)
    assert math.isnan(first["test_acc"])  # overwritten with the new (missing) value
    assert str(frame["created"].dt.tz) == "UTC"


def test_an_evaluation_keeps_its_seed_and_divergence_apart_from_params(
    store: storage.Store,
) -> None:
    store.create_experiment("exp", CONFIG)
    largest = 2**63 - 1  # evaluation seeds go up to it
    store.record_evaluation("exp", "dynamic", 1, {"alpha": 0.1}, test_loss=0.5, trainer_seed=11)
    store.record_evaluation(
        "exp", "dynamic", 2, {"alpha": 0.1}, test_loss=None, trainer_seed=largest,
        diverged="loss is nan at epoch 3",
    )  # fmt: skip
    store.record_evaluation("exp", "fixed", 1, {}, test_loss=0.7)
    frame = store.evaluations("exp")
    assert list(frame["params"]) == [{"alpha": 0.1}, {"alpha": 0.1}, {}]
    assert str(frame["trainer_seed"].dtype) == "Int64"
    assert list(frame["trainer_seed"].iloc[:2]) == [11, largest]
    assert pd.isna(frame["trainer_seed"].iloc[2])
    assert pd.isna(frame["diverged"].iloc[0]) and pd.isna(frame["diverged"].iloc[2])
    assert frame["diverged"].iloc[1] == "loss is nan at epoch 3"
    # Recording the seed again replaces both, as it replaces the metrics.
    store.record_evaluation("exp", "dynamic", 2, {"alpha": 0.1}, test_loss=0.4, trainer_seed=12)
    again = store.evaluations("exp").iloc[1]
    assert (again["trainer_seed"], again["test_loss"]) == (12, 0.4)
    assert pd.isna(again["diverged"])


def test_evaluations_need_an_existing_experiment(store: storage.Store) -> None:
    with pytest.raises(storage.ExperimentNotFound, match="'ghost'"):
        store.record_evaluation("ghost", "dynamic", 1, {}, test_loss=0.1)
    with pytest.raises(storage.ExperimentNotFound):
        store.evaluated_seeds("ghost", "dynamic")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": "1"}, "`seed`"),
        ({"seed": True}, "`seed`"),
        ({"arm": "a/b"}, "`arm`"),
        ({"params": {"x": math.inf}}, "`params`"),
        ({"test_loss": "0.1"}, "`test_loss`"),
        ({"trainer_seed": "7"}, "`trainer_seed`"),
        ({"trainer_seed": True}, "`trainer_seed`"),
        ({"trainer_seed": 7.0}, "`trainer_seed`"),
        ({"trainer_seed": 2**63}, "`trainer_seed`"),  # more than a BIGINT holds
        ({"diverged": 1}, "`diverged`"),
        ({"diverged": b"nan"}, "`diverged`"),
    ],
    ids=repr,
)
def test_bad_evaluations_are_refused(
    sqlite_store: storage.Store, kwargs: dict[str, Any], message: str
) -> None:
    sqlite_store.create_experiment("exp", CONFIG)
    call: dict[str, Any] = {"arm": "dynamic", "seed": 1, "params": {}, "test_loss": 0.1}
    call.update(kwargs)
    with pytest.raises(storage.InvalidRecord, match=message):
        sqlite_store.record_evaluation("exp", **call)
    assert sqlite_store.evaluations("exp").empty


# ------------------------------------------------------------------------------ trials


def _populate_trials(store: storage.Store) -> dict[str, int]:
    """exp/dynamic: complete, pruned, failed, running, waiting; exp/fixed: one complete."""
    store.create_experiment("exp", CONFIG)
    dynamic = _study(store, "exp", "dynamic")

    def suggest(trial: optuna.Trial) -> None:
        trial.suggest_float("alpha", 1e-3, 1.0, log=True)
        trial.suggest_int("width", 8, 64)
        trial.suggest_categorical("act", ["relu", "tanh"])

    complete = dynamic.ask()
    suggest(complete)
    complete.set_user_attr("best_epoch", 7)
    dynamic.tell(complete, 0.25)
    pruned = dynamic.ask()
    suggest(pruned)
    dynamic.tell(pruned, state=TrialState.PRUNED)
    failed = dynamic.ask()
    suggest(failed)
    failed.set_user_attr("fail_reason", "loss diverged (nan) at epoch 3")
    dynamic.tell(failed, state=TrialState.FAIL)
    running = dynamic.ask()
    suggest(running)
    dynamic.enqueue_trial({"alpha": 0.5, "width": 16, "act": "tanh"})  # stays WAITING

    fixed = _study(store, "exp", "fixed")
    only = fixed.ask({"lam": optuna.distributions.FloatDistribution(0.0, 1.0)})
    fixed.tell(only, float("inf"))

    # Studies that must not leak in: other experiments, a prefix look-alike, no arm.
    for name in ("expo/dynamic", "other/dynamic", "exp_/dynamic", "exp/a/b", "exp"):
        optuna.create_study(storage=store.optuna_storage(), study_name=name).ask()
    return {"complete": complete._trial_id, "failed": failed._trial_id}


def test_a_retry_has_the_draw_of_the_trial_it_retries(prepared_url: str) -> None:
    """Trial 1 handed back (FAIL) and retried by Optuna's callback as trial 2; trial 3 new:
    draws 0, 1, 1, 2, in Store.trials and in the quick reader of ``dynl2 status``."""
    with storage.open(prepared_url) as store:
        store.create_experiment("exp", CONFIG)
        study = _study(store, "exp", "fixed")
        first, handed = study.ask(), study.ask()
        for trial in (first, handed):
            trial.suggest_float("lam", 1e-3, 1.0, log=True)
        study.tell(first, 0.5)
        study.tell(handed, state=optuna.trial.TrialState.FAIL)
        retry_callback(max_retry=1)(study, study.trials[1])
        retry = study.ask()  # pops the retry, numbered 2
        study.tell(retry, 0.9)
        study.tell(study.ask({"lam": FloatDistribution(1e-3, 1.0, log=True)}), 0.9)
        frame = store.trials("exp")
    assert list(frame["number"]) == [0, 1, 2, 3]
    assert list(frame["draw"]) == [0, 1, 1, 2]
    assert frame["params"][2] == frame["params"][1]
    read = storage.read_status(prepared_url, "exp", result_attr="dynl2_result", holder_attrs=())
    assert read is not None
    assert [(t.number, t.draw) for t in read.trials] == [(0, 0), (1, 1), (2, 1), (3, 2)]
    assert storage.best_params(read.trials, "maximize") == {("fixed", 1): frame["params"][1]}


def test_trials_frame_reads_optuna_tables(store: storage.Store) -> None:
    ids = _populate_trials(store)
    frame = store.trials("exp")
    assert list(frame.columns) == list(TRIAL_COLUMNS)
    assert len(frame) == 6
    assert list(frame["arm"]) == ["dynamic"] * 5 + ["fixed"]
    assert list(frame["number"]) == [0, 1, 2, 3, 4, 0]
    assert list(frame["state"]) == ["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING", "COMPLETE"]
    by_number = frame[frame["arm"] == "dynamic"].set_index("number")
    complete = by_number.loc[0]
    assert complete["trial_id"] == ids["complete"]
    assert complete["value"] == 0.25
    assert complete["best_epoch"] == 7
    assert set(complete["params"]) == {"alpha", "width", "act"}
    assert complete["params"]["act"] in ("relu", "tanh")  # categorical: the choice, not index
    assert isinstance(complete["params"]["width"], int)
    assert complete["duration_s"] >= 0
    assert by_number.loc[2, "fail_reason"] == "loss diverged (nan) at epoch 3"
    assert by_number.loc[2, "trial_id"] == ids["failed"]
    assert pd.isna(by_number.loc[0, "fail_reason"])
    assert by_number["value"].isna().sum() == 4  # pruned, failed, running, waiting
    assert pd.isna(by_number.loc[3, "duration_s"])  # still running
    assert by_number.loc[4, "params"] == {}  # enqueued params are system attrs until it runs
    assert by_number["best_epoch"].isna().sum() == 4
    assert frame.iloc[-1]["value"] == math.inf
    assert str(frame["datetime_start"].dt.tz) == "UTC"


def test_trials_frame_filters_by_arm(store: storage.Store) -> None:
    _populate_trials(store)
    assert list(store.trials("exp", arm="fixed")["state"]) == ["COMPLETE"]
    assert store.trials("exp", arm="none").empty
    assert store.arms("exp") == ["dynamic", "fixed"]


def test_empty_experiment_gives_empty_frames_with_columns(store: storage.Store) -> None:
    store.create_experiment("exp", CONFIG)
    for frame, columns in (
        (store.trials("exp"), TRIAL_COLUMNS),
        (store.epochs("exp"), EPOCH_COLUMNS),
        (store.evaluations("exp"), EVALUATION_COLUMNS),
    ):
        assert frame.empty
        assert list(frame.columns) == list(columns)
    assert store.arms("exp") == []


@pytest.mark.parametrize("method", ["trials", "epochs", "evaluations", "arms"])
def test_reads_of_an_unknown_experiment_say_so(sqlite_store: storage.Store, method: str) -> None:
    sqlite_store.create_experiment("exp", CONFIG)
    with pytest.raises(storage.ExperimentNotFound, match="known experiments: exp"):
        getattr(sqlite_store, method)("expp")


def test_a_sqlite_file_deleted_while_it_is_opened_is_a_vanished_store(tmp_path, monkeypatch):
    """The file deleted between the connection and the look at its identity (a worker that
    starts as the user deletes the store): StoreVanished, which the run says in one line, not
    a FileNotFoundError traceback; and deleted after opening, the same from check_file."""
    from storage.store import base

    path = tmp_path / "gone.db"
    storage.open(f"sqlite:///{path}").close()
    real = os.stat

    def stat_after_unlink(target, *args, **kwargs):  # the deletion lands at this instant
        if str(target) == str(path):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return real(target, *args, **kwargs)

    monkeypatch.setattr(base, "os", types.SimpleNamespace(stat=stat_after_unlink))
    with pytest.raises(StoreVanished, match="was deleted or replaced"):
        storage.open(f"sqlite:///{path}", create=False)
    monkeypatch.undo()
    store = storage.open(f"sqlite:///{path}")
    try:
        path.unlink()
        with pytest.raises(StoreVanished, match="was deleted or replaced"):
            store.check_file()
    finally:
        store.close()
