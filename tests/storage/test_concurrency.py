"""Several real worker processes writing to one SQLite file at once (WAL + busy timeout)."""

from __future__ import annotations

import multiprocessing

import optuna
import pytest

import storage

WORKERS = 4
EPOCHS = 50


def _worker(url: str, epochs: int) -> int:
    """What a dynl2 worker does: open the store, join the study, record each epoch."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with storage.open(url) as store:
        store.create_experiment("exp", {"epochs": epochs})
        study = optuna.create_study(
            storage=store.optuna_storage(), study_name="exp/dynamic", load_if_exists=True
        )
        trial = study.ask()
        for epoch in range(1, epochs + 1):  # one transaction per epoch, as the study layer does
            store.record_epochs(trial._trial_id, [{"epoch": epoch, "train_loss": 1.0 / epoch}])
        study.tell(trial, 1.0 / epochs)
        return trial._trial_id


@pytest.mark.slow  # four spawned interpreters: about 4 s
def test_worker_processes_share_a_fresh_sqlite_file(sqlite_url: str) -> None:
    context = multiprocessing.get_context("spawn")  # like real workers: no inherited engines
    with context.Pool(WORKERS) as pool:
        trial_ids = pool.starmap(_worker, [(sqlite_url, EPOCHS)] * WORKERS)
    assert len(set(trial_ids)) == WORKERS
    with storage.open(sqlite_url, create=False) as store:
        epochs = store.epochs("exp")
        trials = store.trials("exp")
    assert len(epochs) == WORKERS * EPOCHS
    for trial_id in trial_ids:
        assert list(epochs[epochs["trial_id"] == trial_id]["epoch"]) == list(range(1, EPOCHS + 1))
    assert list(trials["state"]) == ["COMPLETE"] * WORKERS
