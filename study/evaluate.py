"""The final evaluation: each arm's best configuration retrained on S shared seeds, tested once.

Seed i is the same trainer seed for every arm, so arms can be compared paired by seed. Selection
used the validation split only; the test split is read here and nowhere else. Each (arm, seed)
is one row written when its run ends, so a killed evaluation is redone, never double-counted,
and seeds already evaluated are skipped.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from storage import Store, open, study_name

from .errors import StudyError
from .experiment import ExperimentConfig, parse_experiment
from .studies import evaluation_seed, searched_arms


@dataclass(frozen=True)
class EvalTask:
    arm: str
    index: int  # the evaluation seed's index, shared by all arms
    params: dict[str, float | int]  # the arm's best searched parameters ({} if none)


def best_params(store: Store, config: ExperimentConfig) -> dict[str, dict[str, float | int]]:
    """The best trial's parameters of every arm; arms with nothing to search get ``{}``.

    An arm whose search has no complete trial yet is left out (it cannot be evaluated).
    """
    out: dict[str, dict[str, float | int]] = {
        arm.name: {} for arm in config.arms if not config.searched(arm.name)
    }
    storage = store.optuna_storage()
    for arm in searched_arms(config):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study = optuna.load_study(
                study_name=study_name(config.name, arm.name), storage=storage
            )
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if trials:
            out[arm.name] = dict(study.best_trial.params)
    return out


def pending_tasks(store: Store, config: ExperimentConfig, seeds: int) -> list[EvalTask]:
    params = best_params(store, config)
    tasks = []
    for arm in config.arms:
        if arm.name not in params:
            continue
        done = store.evaluated_seeds(config.name, arm.name)
        tasks += [EvalTask(arm.name, i, params[arm.name]) for i in range(seeds) if i not in done]
    # Seed-major order: if the evaluation is cut short, every arm has the same seeds so far.
    return sorted(tasks, key=lambda t: (t.index, t.arm))


def run_task(store: Store, config: ExperimentConfig, task: EvalTask) -> float | None:
    """Train and test one (arm, seed); record it. Returns the test accuracy (or None)."""
    from trainers import DivergenceError, train

    train_config = config.train_config(task.arm, task.params, evaluation_seed(config, task.index))
    try:
        result = train(train_config)
    except DivergenceError as exc:
        store.record_evaluation(
            config.name, task.arm, task.index, {**task.params, "diverged": str(exc)},
            test_loss=None, seconds=None,
        )  # fmt: skip
        return None
    last = result.history[-1]
    store.record_evaluation(
        config.name,
        task.arm,
        task.index,
        {**task.params, "trainer_seed": train_config.seed},
        test_loss=result.test_loss,
        test_acc=result.test_acc,
        val_loss=last.val_loss,
        val_acc=last.val_acc,
        seconds=result.seconds,
    )
    return result.test_acc


def _run_in_child(url: str, config_dict: dict[str, object], task: EvalTask) -> float | None:
    import torch

    from trainers import flush_denormals

    flush_denormals()  # first, before torch creates its threads
    torch.set_num_threads(int(os.environ.get("DYNL2_THREADS", "1")))
    with open(url) as store:
        return run_task(store, parse_experiment(config_dict), task)


def evaluate(
    store: Store,
    config: ExperimentConfig,
    seeds: int,
    workers: int = 1,
    on_done: Callable[[EvalTask, float | None, int, int], None] | None = None,
) -> int:
    """Evaluate every pending (arm, seed); returns how many runs this call did."""
    tasks = pending_tasks(store, config, seeds)
    total = len(tasks)
    if workers <= 1 or total <= 1:
        for i, task in enumerate(tasks, 1):
            acc = run_task(store, config, task)
            if on_done:
                on_done(task, acc, i, total)
        return total
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_run_in_child, store.url, config.to_dict(), t): t for t in tasks}
        for i, future in enumerate(as_completed(futures), 1):
            try:
                acc = future.result()
            except Exception as exc:
                raise StudyError(f"evaluation of {futures[future].arm} failed: {exc}") from exc
            if on_done:
                on_done(futures[future], acc, i, total)
    return total
