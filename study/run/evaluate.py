"""The final evaluation: each arm's best configuration retrained on S shared seeds, tested once.

Seed i is the same trainer seed for every arm, so arms can be compared paired by seed. An arm's
seeds train together, fused (:mod:`trainers.fused`), each with its own initialization and batch
order: the numbers of an unfused run with that seed. Selection
used the validation split only; the test split is read here and nowhere else. Each (arm, seed)
is one row written when its run ends, so a killed evaluation is redone, never double-counted,
and seeds already evaluated are skipped.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from storage import Store, best_by_search, open
from study.config import env
from study.config.experiment import ExperimentConfig, parse_experiment
from study.errors import StudyError, UsageError
from study.run.progress import unfinished_arms
from study.search import signals
from study.search.fused import DEVICE_BATCH
from study.search.keys import SearchKey, searches
from study.search.studies import check_studies, evaluation_seed
from trainers import DivergenceError, TrainConfig, TrainResult, resolve_device, train_fused


@dataclass(frozen=True)
class EvalTask:
    arm: str
    index: int  # the evaluation seed's index, shared by all arms and replicates
    params: dict[str, float | int]  # the search's best parameters ({} if none)
    replicate: int = 1  # whose best: the arm's search of this replicate


def best_params(store: Store, config: ExperimentConfig) -> dict[SearchKey, dict[str, float | int]]:
    """The best trial's parameters of every search, ``{(arm, replicate): params}``
    (:func:`storage.best_by_search`: ties go to the lowest trial number); an arm with nothing
    to search gets ``{}`` once, as replicate 1: it trains one configuration, the same for every
    replicate, and the report pairs it with each.

    A search with no complete trial yet is left out (it cannot be evaluated). Studies dynl2
    did not create for the experiment are refused (:class:`ForeignStudy`).
    """
    out: dict[SearchKey, dict[str, float | int]] = {
        (arm.name, 1): {} for arm in config.arms if not config.searched(arm.name)
    }
    check_studies(store, config, legacy=True)
    best = best_by_search(store.trials(config.name), config.direction)
    for key in searches(config):
        if key in best:
            out[key] = dict(best[key]["params"])
    return out


def pending_tasks(store: Store, config: ExperimentConfig, seeds: int) -> list[EvalTask]:
    """Every (arm, replicate, seed) without an evaluation of that search's current best
    configuration: seeds not evaluated yet, and seeds evaluated for an earlier best (redone,
    replacing them)."""
    params = best_params(store, config)
    evals = store.evaluations(config.name)
    tasks = []
    for (arm, replicate), wanted in params.items():
        rows = evals[(evals["arm"] == arm) & (evals["replicate"] == replicate)]
        done = {
            int(seed)
            for seed, stored in zip(rows["seed"], rows["params"], strict=True)
            if stored == wanted
        }
        tasks += [EvalTask(arm, i, wanted, replicate) for i in range(seeds) if i not in done]
    # Seed-major order: if the evaluation is cut short, every search has the same seeds so far.
    return sorted(tasks, key=lambda t: (t.index, t.replicate, t.arm))


def run_group(store: Store, config: ExperimentConfig, tasks: list[EvalTask]) -> list[float | None]:
    """Train and test one arm's ``tasks`` (seeds) together, fused, each seed with its own
    initialization and batch order exactly as an unfused run with that seed; record each.
    Returns each task's test accuracy (None when it diverged or for regression)."""
    configs = [
        config.train_config(t.arm, t.params, evaluation_seed(config, t.index)) for t in tasks
    ]
    outcomes = train_fused(configs)  # the one engine, for a group of one seed too
    accuracies = []
    for task, train_config, outcome in zip(tasks, configs, outcomes, strict=True):
        accuracies.append(_record(store, config, task, train_config, outcome))
    return accuracies


def _record(
    store: Store,
    config: ExperimentConfig,
    task: EvalTask,
    train_config: TrainConfig,
    outcome: TrainResult | DivergenceError,
) -> float | None:
    if isinstance(outcome, DivergenceError):
        store.record_evaluation(
            config.name, task.arm, task.index, task.params, replicate=task.replicate,
            test_loss=None, seconds=None, trainer_seed=train_config.seed, diverged=str(outcome),
        )  # fmt: skip
        return None
    last = outcome.history[-1]
    store.record_evaluation(
        config.name,
        task.arm,
        task.index,
        task.params,
        replicate=task.replicate,
        trainer_seed=train_config.seed,
        test_loss=outcome.test_loss,
        test_acc=outcome.test_acc,
        val_loss=last.val_loss,
        val_acc=last.val_acc,
        seconds=outcome.seconds,
    )
    return outcome.test_acc


def balanced_size(size: int, seeds: int, arms: int, workers: int) -> int:
    """The group size, at most ``size``, that splits every arm's ``seeds`` into a number of
    groups such that all arms' groups divide evenly among ``workers`` processes: 3 arms of 10
    seeds on 2 workers train in groups of 5 (6 groups, 3 rounds), not 10 (the third group
    would train alone while a core idles)."""
    per_arm = max(1, math.ceil(seeds / max(size, 1)))
    if workers > 1 and arms > 0:
        even = workers // math.gcd(arms, workers)  # arms × even is a multiple of workers
        per_arm = math.ceil(per_arm / even) * even
    return max(1, math.ceil(seeds / per_arm))


def groups(tasks: list[EvalTask], batch: int) -> list[list[EvalTask]]:
    """Tasks in fused groups of up to ``batch`` seeds of one search (an arm's replicate),
    seed-block-major: the first ``batch`` seeds of every search before the next block, so a
    cut-short evaluation leaves the searches with (nearly) the same seeds."""
    out: dict[tuple[int, int, str], list[EvalTask]] = {}
    for task in tasks:
        out.setdefault((task.index // batch, task.replicate, task.arm), []).append(task)
    return [out[key] for key in sorted(out)]


# What a pool process imports, imported once by the fork server: torch, the trainers, this module.
POOL_PRELOAD = ("study.run.evaluate",)


def pool_context() -> multiprocessing.context.BaseContext:
    """How the evaluation's pool processes start: forked from a server process that imported
    torch and dynl2's trainer once (``forkserver``, with :data:`POOL_PRELOAD`), instead of each
    importing them anew (``spawn``: seconds of CPU a process). The server is clean: it imported
    only, ran no torch op, started no thread and opened no connection, so a process forked from
    it is as fresh as a spawned one. ``spawn`` off Linux: Windows has no fork server, and on
    macOS a process forked after its system frameworks loaded (torch loads them) may crash."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(POOL_PRELOAD))  # no effect once the server runs
    return context


def start_pool(workers: int) -> ProcessPoolExecutor:
    """The evaluation's pool of ``workers`` processes (:func:`pool_context`), each taking this
    process's environment, working folder and import path as they are now."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=pool_context(),
        initializer=_child_start,
        initargs=(dict(os.environ), os.getcwd(), list(sys.path)),
    )


def _child_start(environ: dict[str, str], cwd: str, path: list[str]) -> None:
    """A pool process takes the evaluation's environment, working folder and import path as
    they are now, as a spawned process would (the fork server kept those of its own start),
    and leaves stopping to the evaluation that started it: a terminal's Ctrl-C, which reaches
    the whole process group, is ignored here, and the SIGTERM the parent then sends ends the
    process at once (an (arm, seed) row is written only when its run ends, in one
    transaction, so a run cut short is simply redone)."""
    os.environ.clear()
    os.environ.update(environ)
    os.chdir(cwd)
    sys.path[:] = path
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop_pool(
    pool: ProcessPoolExecutor, before: set[int], grace: float = signals.STOP_GRACE_S
) -> None:
    """Drop the queued groups and end the pool's processes (SIGTERM, then SIGKILL after
    ``grace`` seconds); returns once every one has ended. ``before``: the pids of this
    process's children from before the pool, which are not the pool's."""
    children = [c for c in multiprocessing.active_children() if c.pid not in before]
    pool.shutdown(wait=False, cancel_futures=True)
    for child in children:
        with contextlib.suppress(ProcessLookupError, ValueError):
            child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive() and child.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
            child.join()


def _run_in_child(
    url: str, config_dict: dict[str, object], tasks: list[EvalTask]
) -> list[float | None]:
    import torch

    from trainers import flush_denormals, keep_freed_memory

    flush_denormals()  # first, before torch creates its threads
    keep_freed_memory()
    torch.set_num_threads(env.threads() or 1)  # checked by study.config.env
    with open(url) as store:
        return run_group(store, parse_experiment(config_dict), tasks)


def evaluate(
    store: Store,
    config: ExperimentConfig,
    seeds: int,
    workers: int = 1,
    on_done: Callable[[EvalTask, float | None, int, int], None] | None = None,
    batch: int | None = None,
    provisional: bool = False,
) -> int:
    """Evaluate every pending (arm, seed); returns how many runs this call did.

    Seeds of one arm train fused in groups of ``batch`` (default: ``[search] batch``, else
    the device's largest default group: evaluation has no sampler waiting for results).
    An unfinished search is refused (:class:`UsageError`) unless ``provisional``: the rest of
    the search may find another best, whose evaluation would then start over."""
    check_studies(store, config, legacy=True)  # refuses studies dynl2 did not create
    short = unfinished_arms(store, config)
    if short and not provisional:
        counts = ", ".join(f"{arm} {n}/{config.search.n_trials}" for arm, n in short.items())
        raise UsageError(
            f"the search of experiment {config.name!r} is unfinished ({counts} results): "
            "its best configurations may still change; finish it (dynl2 run CONFIG.toml, or "
            f"dynl2 worker {config.name}), or pass --provisional to evaluate the current best "
            "configurations anyway (reports then call the verdict provisional)"
        )
    tasks = pending_tasks(store, config, seeds)
    total = len(tasks)
    device = resolve_device(str(config.train_fixed.get("device", "auto")))
    size = batch or config.search.batch or DEVICE_BATCH.get(device.type, 1)
    arms = len({(t.arm, t.replicate) for t in tasks})  # the searches to evaluate
    work = groups(tasks, balanced_size(size, seeds, arms, workers))
    done = 0
    if workers <= 1 or len(work) <= 1:
        for group in work:
            for task, acc in zip(group, run_group(store, config, group), strict=True):
                done += 1
                if on_done:
                    on_done(task, acc, done, total)
        return total
    before = {c.pid for c in multiprocessing.active_children() if c.pid is not None}
    pool = start_pool(workers)
    try:
        futures = {pool.submit(_run_in_child, store.url, config.to_dict(), g): g for g in work}
        for future in as_completed(futures):
            group = futures[future]
            try:
                accuracies = future.result()
            except Exception as exc:
                raise StudyError(f"evaluation of {group[0].arm} failed: {exc}") from exc
            for task, acc in zip(group, accuracies, strict=True):
                done += 1
                if on_done:
                    on_done(task, acc, done, total)
    except (
        BaseException
    ) as exc:  # a stop (study.search.signals) or a failed group: end the rest now
        if isinstance(exc, KeyboardInterrupt):
            signals.stopping()
        _stop_pool(pool, before)
        raise
    pool.shutdown()
    return total
