"""How an experiment runs: create or resume it, search every arm in this process or in worker
processes with progress, evaluate the winners. :mod:`study.api.experiments` composes these into the
public functions; nothing here prints except through the ``say`` and ``note`` callbacks it
is given.

Importing this module costs no torch: the search and the evaluation import the trainer when
they start (:mod:`study.search.worker`, :mod:`study.run.evaluate`), so the verbs that only read
the store never pay for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass

import storage
from storage import Store
from study.config import env
from study.config.experiment import ExperimentConfig, parse_experiment
from study.errors import UsageError
from study.run.progress import ProgressPrinter, arm_counts
from study.run.stages import reached
from study.search import signals
from study.search.keys import Heartbeat, label
from study.search.resilience import is_transient, retrying
from study.search.studies import ForeignStudy, check_studies

Say = Callable[[str], None]


def prepare_training() -> None:
    """What every training process sets before its first torch operation, CLI or API alike,
    so that a run trains the same either way."""
    from trainers import flush_denormals, keep_freed_memory

    flush_denormals()  # subnormal floats flushed: torch's worker threads inherit it
    keep_freed_memory()  # a step's tensors reuse freed pages: see trainers/memory.py


def stored_experiment(store: Store, name: str) -> ExperimentConfig:
    """The stored config of experiment ``name``. One that is no experiment's config at all
    (no ``[experiment]`` table of that name) is a damaged store (exit 1); one that an older
    dynl2 accepted and this one refuses fails as the config would (exit 2, naming the key).
    A sequential experiment's config comes at the stage the store has reached
    (:func:`study.run.stages.reached`)."""
    stored = store.get_experiment(name).config
    head = stored.get("experiment") if isinstance(stored, dict) else None
    if not isinstance(head, dict) or head.get("name") != name:
        raise storage.StorageError(
            f"the store is damaged: the stored config of experiment {name!r} is not an "
            "experiment's config (no [experiment] table with its name); restore the database "
            "from a backup"
        )
    return reached(store, parse_experiment(stored))


def heartbeat_from_env() -> Heartbeat:
    """``DYNL2_HEARTBEAT=INTERVAL,GRACE`` (seconds) tunes stale-trial detection (tests use 1,3);
    checked by :func:`study.config.env.heartbeat`."""
    found = env.heartbeat()
    return Heartbeat() if found is None else Heartbeat(*found)


def create_or_resume(store: Store, config: ExperimentConfig) -> None:
    """Create the experiment, or check that the stored one has the same config; studies named
    like its arms that dynl2 did not create for it are refused before anything is written."""
    try:
        existing = store.get_experiment(config.name)
    except storage.ExperimentNotFound:
        check_studies(store, config, legacy=False)
        store.create_experiment(config.name, config.to_dict())
        return
    problem = resume_problem(store, config)
    if problem is not None:
        raise UsageError(problem)
    stored = stored_experiment(store, existing.name)
    if stored.diff(config):  # only raised replicates or seeds: the run adds what is missing
        store.update_experiment_config(config.name, config.to_dict())


def resume_problem(store: Store, config: ExperimentConfig) -> str | None:
    """Why ``config`` cannot create or resume its experiment in ``store`` (one line), or None;
    writes nothing. A new experiment needs no foreign study under its name
    (:func:`check_studies`); a stored one resumes with the same config, or one whose only
    changes raise ``search.replicates`` or ``evaluate.seeds``."""
    try:
        existing = store.get_experiment(config.name)
    except storage.ExperimentNotFound:
        try:
            check_studies(store, config, legacy=False)
        except ForeignStudy as exc:
            return str(exc)
        return None
    stored = stored_experiment(store, existing.name)
    differences = stored.diff(config)
    if not differences:
        return None
    if "data.fingerprint" in differences:
        return (
            f"experiment {config.name!r} was run on data with fingerprint "
            f"{stored.data.get('fingerprint')}, but the data read now has "
            f"{config.data.get('fingerprint')}: the same data resumes it (or choose another "
            "[experiment] name for the new data)"
        )
    raised = [key for key in differences if key in _RAISABLE]
    if raised == differences:
        lowered = [key for key in raised if _RAISABLE[key](config) < _RAISABLE[key](stored)]
        if not lowered:
            return None
        key = lowered[0]
        return (
            f"experiment {config.name!r} has {key} = {_RAISABLE[key](stored)}; it can be "
            f"raised (the run adds what is missing) but not lowered to "
            f"{_RAISABLE[key](config)}: keep {_RAISABLE[key](stored)} or more"
        )
    return (
        f"experiment {config.name!r} already exists with a different config "
        f"({', '.join(differences[:8])} differ); resume it with the same config (only "
        "search.replicates and evaluate.seeds may be raised) or choose another "
        "[experiment] name"
    )


# Settings a stored experiment may take a larger value of: a rerun adds searches or seeds.
_RAISABLE: dict[str, Callable[[ExperimentConfig], int]] = {
    "search.replicates": lambda c: c.search.most,  # a count, or the sequential form's max
    "search.replicates.max": lambda c: c.search.most,
    "evaluate.seeds": lambda c: c.evaluate.seeds,
}


def group_line(config: ExperimentConfig, batch: int | None, note: Say) -> str | None:
    """How many trials each claim trains together (``note`` hears which arms cannot fuse)."""
    from study.search.fused import group_sizes
    from trainers import resolve_device

    device = resolve_device(str(config.train_fixed.get("device", "auto")))
    sizes = group_sizes(config, device.type, batch, note)
    if not sizes:
        return None
    how = "--batch" if batch else "[search] batch" if config.search.batch else device.type
    return f"fused groups of up to {max(sizes.values())} trials ({how})"


@dataclass(frozen=True)
class SearchOutcome:
    """How a search ended: every search has its budget, or some are short because workers
    failed (a rerun resumes them)."""

    failed_workers: int
    short: tuple[str, ...]  # searches short of n_trials results, as progress names them
    budget: int  # n_trials: the results each search needs

    @property
    def complete(self) -> bool:
        return not self.short


def search(
    store: Store,
    config: ExperimentConfig,
    url: str,
    workers: int,
    say: Say,
    batch: int | None = None,
    heartbeat: Heartbeat | None = None,
) -> SearchOutcome:
    """Search every arm with ``workers`` worker processes, with progress lines on ``say``.
    One worker trains in this process: a second process would spend its first seconds
    importing torch again, which this one has done."""
    printer = ProgressPrinter(say)
    started = time.monotonic()
    if workers == 1:
        _search_here(store, config, url, printer, started, batch, heartbeat)
        failed = 0
    else:
        failed = _search_in_processes(store, config, url, workers, printer, started, batch)
    counts = retrying(lambda: arm_counts(store, config), "counting results")
    printer.update(counts, time.monotonic() - started, force=True)
    short = tuple(arm for arm, c in counts.items() if c.results < config.search.n_trials)
    return SearchOutcome(failed, short, config.search.n_trials)


def worker_threads(workers: int) -> int:
    """torch's threads for each of a run's ``workers`` (its own worker when it is the one):
    ``$DYNL2_THREADS`` when set, else the CPUs divided among them."""
    return env.threads() or max(1, (os.cpu_count() or 1) // workers)


def _search_in_processes(
    store: Store,
    config: ExperimentConfig,
    url: str,
    workers: int,
    printer: ProgressPrinter,
    started: float,
    batch: int | None,
) -> int:
    """``dynl2 worker`` × ``workers``; returns how many failed. The URL reaches them in
    ``$DYNL2_STORAGE``, never on their command lines, which every local user can read (``ps``)
    and which would show a password in it.

    The run answers for its workers: ``$DYNL2_RUN_PID`` tells them so (:func:`env.supervised`),
    and they leave Ctrl-C and the lines about a stop to it. When the run is stopped (SIGINT,
    SIGTERM) or fails, it stops them with SIGTERM, on which each hands its trials in flight
    back and exits; one that takes longer than ``signals.STOP_GRACE_S`` is killed."""
    threads = worker_threads(workers)
    child_env = {
        **os.environ,
        env.THREADS: str(threads),
        storage.ENV_VAR: url,
        env.RUN_PID: str(os.getpid()),
    }
    command = [sys.executable, "-m", "study", "worker", config.name, "--quiet"]
    if batch is not None:
        command += ["--batch", str(batch)]
    procs: list[subprocess.Popen[bytes]] = []

    def running() -> bool:
        return any(p.poll() is None for p in procs)

    try:
        for i in range(workers):
            procs.append(subprocess.Popen([*command, "--index", str(i)], env=child_env))
        if workers < (os.cpu_count() or 1):  # a core to spare while the workers import torch
            _warm_imports()
        while running():
            signals.check()  # a stop whose raise was swallowed
            store.check_file()  # the SQLite file deleted or replaced: the results would be lost
            _show_progress(store, config, printer, started)
            tick = time.monotonic() + 1.0
            while running() and time.monotonic() < tick:  # and on as soon as they are done
                time.sleep(0.05)
        store.check_file()  # a worker that found it gone left the saying to the run
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            signals.stopping()
        signals.stop_processes(procs)
        raise
    return sum(p.returncode != 0 for p in procs)


def _search_here(
    store: Store,
    config: ExperimentConfig,
    url: str,
    printer: ProgressPrinter,
    started: float,
    batch: int | None,
    heartbeat: Heartbeat | None,
) -> None:
    """The one worker in this process (its own connections, as a worker process has), with
    progress from a thread. A worker's failure raises, as ``dynl2 worker`` would end; a stop
    (Ctrl-C, SIGTERM) hands the trials in flight back (:func:`worker.run_worker`) and raises."""
    import torch

    from study.search.worker import run_worker

    torch.set_num_threads(worker_threads(1))
    stop = threading.Event()
    trouble: list[BaseException] = []

    def show() -> None:
        while not stop.wait(1.0):
            try:
                _show_progress(store, config, printer, started)
            except BaseException as exc:  # handed to the main thread
                trouble.append(exc)
                return

    # Only this thread imports: two threads importing at once can deadlock or see a module half
    # made (QMCSampler's scipy.stats._qmc did). So no head start on the report's imports here
    # (the thread that took one saved nothing measurable: a 13 s run, 4 tries each, medians
    # 13.6 s with it, 13.4 s without), and the progress thread's first call is made here,
    # which loads whatever its calls load on first use.
    _show_progress(store, config, printer, started)
    with storage.open(url, create=False) as own:
        thread = threading.Thread(target=show, name="dynl2-progress", daemon=True)
        thread.start()
        try:
            run_worker(own, config, heartbeat, batch=batch)
        except Exception:
            own.check_file()  # a deleted store file is the cause to name, not what it broke
            raise
        finally:
            stop.set()
            thread.join()
    if trouble:
        raise trouble[0]


def _show_progress(
    store: Store, config: ExperimentConfig, printer: ProgressPrinter, started: float
) -> None:
    try:
        printer.update(arm_counts(store, config), time.monotonic() - started)
    except Exception as exc:
        if not is_transient(exc):
            raise
        # The database is away: the workers wait for it (study.search.resilience), and progress
        # lines resume when it answers.


def _warm_imports() -> None:
    """Import what the summary and the report need (scipy, plotly, jinja2: about 2 s) while the
    worker processes start: each spends its first seconds importing torch on one core, so with
    a core to spare (fewer workers than cores) this costs the search nothing and takes the
    wait off the run's end.

    In the main thread, with no other thread in this process: Python's imports are not safe
    from two threads at once here (a thread that did this while the main one imported ended
    runs with ``ImportError: ... partially initialized module 'scipy.stats._qmc'`` and
    ``_DeadlockError``)."""
    with suppress(Exception):  # only a head start: the summary imports them itself anyway
        import scipy.stats  # noqa: F401

        import reports  # noqa: F401


def evaluate_searches(
    store: Store,
    config: ExperimentConfig,
    seeds: int,
    workers: int,
    say: Say,
    batch: int | None = None,
    provisional: bool = False,
) -> int:
    """Retrain each search's best configuration on ``seeds`` shared seeds (those already
    evaluated are kept), a line on ``say`` per run; returns how many runs this call did."""
    from study.run.evaluate import EvalTask, evaluate

    def on_done(task: EvalTask, acc: float | None, i: int, total: int) -> None:
        shown = "diverged" if acc is None else f"test_acc {100 * acc:.2f}%"
        name = label(config, (task.arm, task.replicate))
        say(f"evaluate {i}/{total}: {name} seed {task.index}: {shown}")

    return evaluate(
        store,
        config,
        seeds,
        workers=workers,
        on_done=on_done,
        batch=batch,
        provisional=provisional,
    )
