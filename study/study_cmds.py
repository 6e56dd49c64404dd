"""The study verbs: ``run``, ``worker``, ``evaluate``, ``status``, ``trials``, ``sql``."""

from __future__ import annotations

import argparse
import datetime
import decimal
import json
import math
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pandas as pd

import storage
from storage import Store
from storage.readonly import MAX_ROWS, MAX_TIMEOUT_S, RESULT_BYTES
from storage.store import StoreVanished

from . import env, signals
from .errors import UsageError
from .evaluate import EvalTask, evaluate
from .experiment import (
    MAX_SEEDS,
    MAX_WORKERS,
    ExperimentConfig,
    load_experiment,
    parse_experiment,
    require_device,
)
from .files import check_target, default_report_path, target_path
from .progress import (
    ProgressPrinter,
    arm_counts,
    current_evaluations,
    evaluation_summary,
    format_summary,
)
from .resilience import Patience, is_transient, retrying
from .studies import Heartbeat, check_studies, label, open_studies
from .worker import run_worker

FORMATS = ("table", "csv", "json")


def add_parsers(verbs: Any) -> None:
    p = verbs.add_parser(
        "run",
        help="create or resume an experiment, search every arm, evaluate the winners",
        description=(
            "Create the experiment in CONFIG.toml (or resume it if it exists with the same "
            "config), search every arm with N worker processes, then retrain each arm's best "
            "configuration on the evaluation seeds."
        ),
    )
    p.add_argument("config", metavar="CONFIG.toml", help="the experiment config")
    p.add_argument(
        "--workers",
        type=_up_to(MAX_WORKERS),
        default=1,
        help=f"worker processes (default 1, at most {MAX_WORKERS})",
    )
    _batch_flag(p)
    _storage_flag(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_run)

    p = verbs.add_parser(
        "worker",
        help="join an existing experiment from another process or machine",
        description="Train trials of EXPERIMENT until every arm has its budget, then exit.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT")
    _batch_flag(p)
    _storage_flag(p)
    p.add_argument("--quiet", action="store_true", help="no line per trial")
    p.add_argument(
        "--index",
        type=int,
        help="this worker's number, which seeds its samplers (default: a fresh random seed)",
    )
    p.set_defaults(handler=cmd_worker)

    p = verbs.add_parser(
        "evaluate",
        help="retrain each arm's best configuration on S shared seeds and test it",
        description="Evaluate every arm's best configuration; seeds already evaluated are kept.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT")
    p.add_argument(
        "--seeds",
        type=_up_to(MAX_SEEDS),
        help=f"evaluation seeds (default: the config's; at most {MAX_SEEDS})",
    )
    p.add_argument(
        "--workers",
        type=_up_to(MAX_WORKERS),
        default=1,
        help=f"processes (default 1, at most {MAX_WORKERS})",
    )
    p.add_argument(
        "--provisional",
        action="store_true",
        help="evaluate although the search is unfinished (its best may still change; "
        "reports call such a verdict provisional)",
    )
    _storage_flag(p)
    p.set_defaults(handler=cmd_evaluate)

    p = verbs.add_parser(
        "status",
        help="every experiment, or one experiment's per-arm progress",
        description="Without a name: every experiment. With one: counts per arm and state, "
        "the best value and parameters, and evaluation progress.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT", nargs="?")
    _storage_flag(p)
    p.set_defaults(handler=cmd_status)

    p = verbs.add_parser(
        "trials",
        help="one row per trial (table, csv or json)",
        description="One row per trial: arm, number, state, params, objective, best epoch, "
        "duration, and the test metrics where the trial's configuration was evaluated.",
    )
    p.add_argument("experiment", metavar="EXPERIMENT")
    p.add_argument("--arm", help="only this arm")
    p.add_argument("--format", choices=FORMATS, default="table")
    _storage_flag(p)
    p.set_defaults(handler=cmd_trials)

    p = verbs.add_parser(
        "sql",
        help="a read-only SQL query over the store",
        description="Run one read-only query (SELECT, WITH, EXPLAIN). Writes, DDL, ATTACH and "
        "state-changing PRAGMAs are refused; each query has a time limit and a row cap.",
    )
    p.add_argument("query", metavar="SQL")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument(
        "--max-rows",
        type=_max_rows,
        default=1000,
        help=f"row cap (default 1000, at most {MAX_ROWS})",
    )
    p.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        help=f"seconds (default 10, at most {MAX_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--reader-url",
        metavar="URL",
        help="PostgreSQL: the read-only login to query as (default: $DYNL2_SQL_URL, else the "
        "store's login if it can only read, else the role dynl2 sql-setup creates)",
    )
    _storage_flag(p)
    p.set_defaults(handler=cmd_sql)


def _batch_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--batch",
        type=_batch,
        metavar="K",
        help="trials of one arm trained together as one fused model (1 to 4096; default: "
        "[search] batch, else chosen for the device: see the README)",
    )


def _batch(text: str) -> int:
    value = _positive(text)
    if value > 4096:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 4096, got {text!r}")
    return value


def _up_to(most: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to ``most``, in ASCII digits."""

    def whole(text: str) -> int:
        if not re.fullmatch(r"[0-9]{1,10}", text, re.ASCII) or not 1 <= int(text) <= most:
            shown = text if len(text) <= 24 else text[:21] + "..."
            raise argparse.ArgumentTypeError(
                f"expected a whole number from 1 to {most}, got {shown!r}"
            )
        return int(text)

    return whole


def _storage_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="URL",
        help="database URL (default: $DYNL2_STORAGE, else sqlite in ./dynl2-workspace/); a "
        "password in it is visible to other local users in ps: prefer $DYNL2_STORAGE",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def heartbeat_from_env() -> Heartbeat:
    """``DYNL2_HEARTBEAT=INTERVAL,GRACE`` (seconds) tunes stale-trial detection (tests use 1,3);
    checked by :func:`study.env.heartbeat`."""
    found = env.heartbeat()
    return Heartbeat() if found is None else Heartbeat(*found)


def _experiment(store: Store, name: str) -> ExperimentConfig:
    """The stored config of experiment ``name``. One that is no experiment's config at all
    (no ``[experiment]`` table of that name) is a damaged store (exit 1); one that an older
    dynl2 accepted and this one refuses fails as the config would (exit 2, naming the key)."""
    stored = store.get_experiment(name).config
    head = stored.get("experiment") if isinstance(stored, dict) else None
    if not isinstance(head, dict) or head.get("name") != name:
        raise storage.StorageError(
            f"the store is damaged: the stored config of experiment {name!r} is not an "
            "experiment's config (no [experiment] table with its name); restore the database "
            "from a backup"
        )
    return parse_experiment(stored)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_experiment(Path(args.config))  # validated before anything is written,
    require_device(config)  # and the device is on this machine
    return run_experiment(config, args.storage, args.workers, args.quiet, args.batch)


def run_experiment(
    config: ExperimentConfig,
    storage_url: str | None,
    workers: int,
    quiet: bool,
    batch: int | None = None,
) -> int:
    """Create or resume, search, evaluate, report: what ``dynl2 run`` and ``demo`` do."""
    from .report_cmds import make_report

    heartbeat = heartbeat_from_env()
    Patience.from_env()  # a bad $DYNL2_DB_PATIENCE is refused before anything is written
    report = target_path(default_report_path(config.name))
    check_target(report)  # a report it could not write is refused now, not after the training
    url = storage.resolve_url(storage_url)
    with storage.open(url) as store:
        _create_or_resume(store, config)
        open_studies(store, config, heartbeat)
        say = _say(quiet)
        say(
            f"dynl2 run: experiment {config.name!r} in {store.display_url}: "
            f"{len(config.arms)} arms, {config.search.n_trials} trials per searched arm"
            + (
                f" in each of {config.search.replicates} replicates"
                if config.search.replicates > 1
                else ""
            )
            + f", {workers} worker(s)"
        )
        _say_groups(config, batch, say)
        code = _search(store, config, url, workers, say, batch, heartbeat)
        if code != 0:
            return code
        _evaluate(store, config, config.evaluate.seeds, workers, say, batch)
        print(format_summary(evaluation_summary(store, config)))
        path, seconds = make_report(store, config.name, report)
        print(f"report: {path}  ({seconds:.1f} s)")
    return 0


def _say_groups(config: ExperimentConfig, batch: int | None, say: Callable[[str], None]) -> None:
    """Say how many trials each claim trains together, and which arms cannot fuse."""
    from trainers import resolve_device

    from .fused_trials import group_sizes

    def note(line: str) -> None:
        print(f"dynl2 run: note: {line}", file=sys.stderr)

    device = resolve_device(str(config.train_fixed.get("device", "auto")))
    sizes = group_sizes(config, device.type, batch, note)
    if sizes:
        largest = max(sizes.values())
        how = "--batch" if batch else "[search] batch" if config.search.batch else device.type
        say(f"dynl2 run: fused groups of up to {largest} trials ({how})")


def _say(quiet: bool) -> Callable[[str], None]:
    def say(line: str) -> None:
        if not quiet:
            print(line, flush=True)

    return say


def _create_or_resume(store: Store, config: ExperimentConfig) -> None:
    """Create the experiment, or check that the stored one has the same config; studies named
    like its arms that dynl2 did not create for it are refused before anything is written."""
    try:
        existing = store.get_experiment(config.name)
    except storage.ExperimentNotFound:
        check_studies(store, config, legacy=False)
        store.create_experiment(config.name, config.to_dict())
        return
    stored = _experiment(store, existing.name)
    differences = stored.diff(config)
    if not differences:
        return
    raised = [key for key in differences if key in _RAISABLE]
    if raised == differences:  # more replicates or seeds: the run adds what is missing
        lowered = [key for key in raised if _RAISABLE[key](config) < _RAISABLE[key](stored)]
        if not lowered:
            store.update_experiment_config(config.name, config.to_dict())
            return
        key = lowered[0]
        raise UsageError(
            f"experiment {config.name!r} has {key} = {_RAISABLE[key](stored)}; it can be "
            f"raised (the run adds what is missing) but not lowered to "
            f"{_RAISABLE[key](config)}: keep {_RAISABLE[key](stored)} or more"
        )
    raise UsageError(
        f"experiment {config.name!r} already exists with a different config "
        f"({', '.join(differences[:8])} differ); resume it with the same config (only "
        "search.replicates and evaluate.seeds may be raised) or choose another "
        "[experiment] name"
    )


# Settings a stored experiment may take a larger value of: a rerun adds searches or seeds.
_RAISABLE: dict[str, Callable[[ExperimentConfig], int]] = {
    "search.replicates": lambda c: c.search.replicates,
    "evaluate.seeds": lambda c: c.evaluate.seeds,
}


def _search(
    store: Store,
    config: ExperimentConfig,
    url: str,
    workers: int,
    say: Callable[[str], None],
    batch: int | None = None,
    heartbeat: Heartbeat | None = None,
) -> int:
    """Search every arm with ``workers`` worker processes, printing progress; 0 when every
    arm has its results, 1 (said on stderr) when workers failed and arms are short. One
    worker trains in this process: a second process would spend its first seconds importing
    torch again, which this one has done."""
    printer = ProgressPrinter(say)
    started = time.monotonic()
    if workers == 1:
        _search_here(store, config, url, printer, started, batch, heartbeat)
        failed = 0
    else:
        failed = _search_in_processes(store, config, url, workers, printer, started, batch)
    counts = retrying(lambda: arm_counts(store, config), "counting results")
    printer.update(counts, time.monotonic() - started, force=True)
    short = [arm for arm, c in counts.items() if c.results < config.search.n_trials]
    if short:
        print(
            f"dynl2 run: {failed} worker(s) failed and arms {', '.join(short)} are short "
            f"of their {config.search.n_trials} trials; fix the cause and run again to resume",
            file=sys.stderr,
        )
        return 1
    return 0


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
    threads = max(1, (os.cpu_count() or 1) // workers)
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

    torch.set_num_threads(os.cpu_count() or 1)  # what a lone worker process is given
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
            run_worker(own, config, heartbeat, worker=0, batch=batch)
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
        # The database is away: the workers wait for it (study.resilience), and progress
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


def _evaluate(
    store: Store,
    config: ExperimentConfig,
    seeds: int,
    workers: int,
    say: Callable[[str], None],
    batch: int | None = None,
    provisional: bool = False,
) -> None:
    def on_done(task: EvalTask, acc: float | None, i: int, total: int) -> None:
        shown = "diverged" if acc is None else f"test_acc {100 * acc:.2f}%"
        name = label(config, (task.arm, task.replicate))
        say(f"evaluate {i}/{total}: {name} seed {task.index}: {shown}")

    evaluate(
        store,
        config,
        seeds,
        workers=workers,
        on_done=on_done,
        batch=batch,
        provisional=provisional,
    )


def cmd_worker(args: argparse.Namespace) -> int:
    import torch

    threads = env.threads()
    if threads is not None:
        torch.set_num_threads(threads)
    heartbeat = heartbeat_from_env()
    patience = Patience.from_env()  # refuse a bad $DYNL2_DB_PATIENCE now, not at an outage
    url = storage.resolve_url(args.storage)

    def on_trial(arm: str, number: int, outcome: str) -> None:
        if not args.quiet:
            print(f"dynl2 worker: {arm} trial {number}: {outcome}", flush=True)

    def note(line: str) -> None:
        if not args.quiet:
            print(f"dynl2 worker: {line}", file=sys.stderr, flush=True)

    # A worker started while the database restarts (a scheduler starting workers with the
    # server, or one joining during an outage) waits for it as it would mid-search.
    opened = retrying(
        lambda: storage.open(url, create=False), "connecting", patience=patience, note=note
    )
    try:
        with opened as store:
            config = retrying(
                lambda: _experiment(store, args.experiment),
                "reading the experiment",
                patience=patience,
                note=note,
            )
            require_device(config)  # before the studies are opened: the store may be a GPU's

            try:
                summary = run_worker(
                    store,
                    config,
                    heartbeat,
                    on_trial=on_trial,
                    worker=args.index,
                    note=note,
                    batch=args.batch,
                )
            except Exception:
                store.check_file()  # a deleted store file is the cause to name
                raise
    except StoreVanished:
        if env.supervised():
            return 1  # the run checks the file too, and says it once for all its workers
        raise
    if not args.quiet:
        print(f"dynl2 worker: done, {summary.total} trial(s) trained here")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    with storage.open(storage.resolve_url(args.storage), create=False) as store:
        config = _experiment(store, args.experiment)
        require_device(config)  # before anything is written: the store may come from a GPU
        seeds = args.seeds or config.evaluate.seeds
        _evaluate(store, config, seeds, args.workers, _say(False), provisional=args.provisional)
        print(format_summary(evaluation_summary(store, config)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with storage.open(storage.resolve_url(args.storage), create=False) as store:
        if args.experiment is None:
            frame = store.experiments()
            if frame.empty:
                print(f"no experiments in {store.display_url}")
                return 0
            for name in frame["name"]:
                config = _experiment(store, name)
                counts = arm_counts(store, config)
                done = sum(c.results for c in counts.values())
                total = config.search.n_trials * len(counts)
                evals = len(store.evaluations(name))
                print(f"{name}: {done}/{total} trials, {evals} evaluation run(s)")
            return 0
        config = _experiment(store, args.experiment)
        printer = ProgressPrinter(print)
        printer.update(arm_counts(store, config), None, force=True)
        trials = store.trials(config.name)
        for key, row in sorted(storage.best_by_search(trials, config.direction).items()):
            print(f"  {label(config, key)} best params: {json.dumps(row['params'])}")
        print(format_summary(evaluation_summary(store, config)))
    return 0


def cmd_trials(args: argparse.Namespace) -> int:
    with storage.open(storage.resolve_url(args.storage), create=False) as store:
        config = _experiment(store, args.experiment)
        if args.arm is not None and args.arm not in [a.name for a in config.arms]:
            arms = ", ".join(a.name for a in config.arms)
            raise UsageError(f"--arm: no arm {args.arm!r} in {config.name!r}; arms: {arms}")
        frame = trials_with_tests(store, config, args.arm)
    _print_frame(frame, args.format)
    return 0


def trials_with_tests(store: Store, config: ExperimentConfig, arm: str | None) -> pd.DataFrame:
    """Trials, plus the mean test metrics over the seeds where the trial's params were
    evaluated (the current best trial of each arm; evaluations of an earlier best are left
    out)."""
    trials = store.trials(config.name, arm)
    evals, _ = current_evaluations(store, config)
    trials["test_loss"] = float("nan")
    trials["test_acc"] = float("nan")
    trials["test_seeds"] = 0
    for (arm_name, replicate), group in evals.groupby(["arm", "replicate"]):
        params = storage.evaluated_params(group.iloc[0]["params"])
        match = (
            (trials["arm"] == arm_name)
            & (trials["replicate"] == replicate)
            & trials["params"].map(params.__eq__)
        )
        if params and match.any():
            trials.loc[match, "test_loss"] = group["test_loss"].mean()
            trials.loc[match, "test_acc"] = group["test_acc"].mean()
            trials.loc[match, "test_seeds"] = len(group)
    return trials


def _max_rows(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_ROWS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number from 1 to {MAX_ROWS}, got {text!r}"
        )
    return value


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value <= MAX_TIMEOUT_S:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, got {text!r}"
        )
    return value


def cmd_sql(args: argparse.Namespace) -> int:
    """The result as the database gave it, but for two things every format needs: a column
    whose name came before gets the first free name of ``NAME_2``, ``NAME_3``, ... (``SELECT
    1 AS a, 2 AS a`` prints ``a`` and ``a_2``), and a blob prints as ``\\x`` and its bytes in
    hex, as psql prints bytea."""
    url = storage.resolve_url(args.storage)
    result = storage.run_readonly(
        url,
        args.query,
        max_rows=args.max_rows,
        timeout_s=args.timeout,
        reader_url=args.reader_url,
    )
    rows = [[_cell(value) for value in row] for row in result.rows]
    frame = pd.DataFrame(rows, columns=_unique_names(result.columns))
    _print_frame(frame, args.format, _SQL_TABLE_WIDTH)
    if result.truncated:
        n = len(result.rows)
        if n < args.max_rows:
            why = f"the next row would pass the {RESULT_BYTES // 2**20} MiB a result may hold"
        else:
            why = "use --max-rows"
        print(f"(truncated at {n} rows; {why})", file=sys.stderr)
    return 0


def _unique_names(names: tuple[str, ...]) -> list[str]:
    """``names`` with each repeat renamed to the first of ``NAME_2``, ``NAME_3``, ... that
    no other column has."""
    taken = set(names)
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        if name in seen:
            k = 2
            while f"{name}_{k}" in taken:
                k += 1
            name = f"{name}_{k}"
            taken.add(name)
        seen.add(name)
        out.append(name)
    return out


def _cell(value: Any) -> Any:
    """One value of a query's result as JSON can hold it: numbers, text, None, lists and
    dicts stay (PostgreSQL arrays and JSON); blobs become ``\\x`` + hex; dates and times
    their ISO text; a numeric a float (its text when no float holds it); anything else its
    text (intervals, UUIDs, network addresses). Iterative: a JSON value may nest deep."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, list | dict):
        out: Any = [] if isinstance(value, list) else {}
        pending: list[tuple[Any, Any]] = [(value, out)]
        while pending:
            source, target = pending.pop()
            items = source.items() if isinstance(source, dict) else enumerate(source)
            for key, item in items:
                if isinstance(item, list | dict):
                    child: Any = [] if isinstance(item, list) else {}
                    pending.append((item, child))
                    converted = child
                else:
                    converted = _cell(item)
                if isinstance(target, dict):
                    target[str(key)] = converted
                else:
                    target.append(converted)
        return out
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        number = float(value)
        return number if math.isfinite(number) or not value.is_finite() else str(value)
    return str(value)


_SQL_TABLE_WIDTH = 60  # characters of a cell `dynl2 sql --format table` shows (csv, json: all)


def _print_frame(frame: pd.DataFrame, fmt: str, max_colwidth: int | None = None) -> None:
    """``frame`` on stdout as a table, csv or json; a table cuts cells at ``max_colwidth``
    characters (every row is padded to its column's widest cell, so one long value would
    otherwise cost its length on every row)."""
    if fmt != "json":  # dict and list cells (params) as JSON text, not Python reprs
        frame = frame.copy()
        for i in range(frame.shape[1]):
            column = frame.iloc[:, i]
            if any(isinstance(v, dict | list) for v in column):  # an empty column has none
                frame.isetitem(
                    i, column.map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)
                )
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso") + "\n")
    elif frame.empty:
        print("(no rows)")
    else:
        print(frame.to_string(index=False, max_colwidth=max_colwidth))
