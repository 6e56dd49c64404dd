"""The study verbs: ``run``, ``worker``, ``evaluate``, ``status``, ``trials``, ``sql``."""

from __future__ import annotations

import argparse
import json
import os
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

from .errors import UsageError
from .evaluate import EvalTask, evaluate
from .experiment import ExperimentConfig, load_experiment, parse_experiment
from .progress import (
    ProgressPrinter,
    arm_counts,
    current_evaluations,
    evaluation_summary,
    format_summary,
)
from .resilience import Patience, is_transient, retrying
from .studies import Heartbeat, check_studies, open_studies
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
    p.add_argument("--workers", type=_positive, default=1, help="worker processes (default 1)")
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
    p.add_argument("--seeds", type=_positive, help="evaluation seeds (default: the config's)")
    p.add_argument("--workers", type=_positive, default=1, help="processes (default 1)")
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
    p.add_argument("--max-rows", type=_positive, default=1000, help="row cap (default 1000)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
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


def _storage_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="URL",
        help="database URL (default: $DYNL2_STORAGE, else sqlite in ./dynl2-workspace/)",
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
    """``DYNL2_HEARTBEAT=INTERVAL,GRACE`` (seconds) tunes stale-trial detection (tests use 1,3)."""
    text = os.environ.get("DYNL2_HEARTBEAT")
    if not text:
        return Heartbeat()
    try:
        interval, grace = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(
            f"DYNL2_HEARTBEAT: expected INTERVAL,GRACE in whole seconds, got {text!r}"
        ) from None
    if interval < 1 or grace <= interval:
        raise UsageError(f"DYNL2_HEARTBEAT: need 1 <= INTERVAL < GRACE, got {text!r}")
    return Heartbeat(interval, grace)


def _experiment(store: Store, name: str) -> ExperimentConfig:
    return parse_experiment(store.get_experiment(name).config)


def cmd_run(args: argparse.Namespace) -> int:
    config = load_experiment(Path(args.config))  # validated before anything is written
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
    url = storage.resolve_url(storage_url)
    with storage.open(url) as store:
        _create_or_resume(store, config)
        open_studies(store, config, heartbeat)
        say = _say(quiet)
        say(
            f"dynl2 run: experiment {config.name!r} in {store.display_url}: "
            f"{len(config.arms)} arms, {config.search.n_trials} trials per searched arm, "
            f"{workers} worker(s)"
        )
        _say_groups(config, batch, say)
        code = _search(store, config, url, workers, say, batch, heartbeat)
        if code != 0:
            return code
        _evaluate(store, config, config.evaluate.seeds, workers, say, batch)
        print(format_summary(evaluation_summary(store, config)))
        path, seconds = make_report(store, config.name)
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
    stored = parse_experiment(existing.config)
    differences = stored.diff(config)
    if differences:
        raise UsageError(
            f"experiment {config.name!r} already exists with a different config "
            f"({', '.join(differences[:8])} differ); resume it with the same config or "
            "choose another [experiment] name"
        )


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
    and which would show a password in it."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    env = {**os.environ, "DYNL2_THREADS": str(threads), storage.ENV_VAR: url}
    command = [sys.executable, "-m", "study", "worker", config.name, "--quiet"]
    if batch is not None:
        command += ["--batch", str(batch)]
    procs = [subprocess.Popen([*command, "--index", str(i)], env=env) for i in range(workers)]

    def running() -> bool:
        return any(p.poll() is None for p in procs)

    try:
        if workers < (os.cpu_count() or 1):  # a core to spare while the workers import torch
            _warm_imports()
        while running():
            _show_progress(store, config, printer, started)
            tick = time.monotonic() + 1.0
            while running() and time.monotonic() < tick:  # and on as soon as they are done
                time.sleep(0.05)
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
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
    progress from a thread. A worker's failure raises, as ``dynl2 worker`` would end."""
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
        say(f"evaluate {i}/{total}: {task.arm} seed {task.index}: {shown}")

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

    torch.set_num_threads(int(os.environ.get("DYNL2_THREADS", torch.get_num_threads())))
    heartbeat = heartbeat_from_env()
    Patience.from_env()  # refuse a bad $DYNL2_DB_PATIENCE now, not at the first outage
    with storage.open(storage.resolve_url(args.storage), create=False) as store:
        config = _experiment(store, args.experiment)

        def on_trial(arm: str, number: int, outcome: str) -> None:
            if not args.quiet:
                print(f"dynl2 worker: {arm} trial {number}: {outcome}", flush=True)

        def note(line: str) -> None:
            if not args.quiet:
                print(f"dynl2 worker: {line}", file=sys.stderr, flush=True)

        summary = run_worker(
            store,
            config,
            heartbeat,
            on_trial=on_trial,
            worker=args.index,
            note=note,
            batch=args.batch,
        )
        if not args.quiet:
            print(f"dynl2 worker: done, {summary.total} trial(s) trained here")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    with storage.open(storage.resolve_url(args.storage), create=False) as store:
        config = _experiment(store, args.experiment)
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
        for arm in config.arms:
            rows = trials[(trials["arm"] == arm.name) & (trials["state"] == "COMPLETE")]
            if not rows.empty:
                best = rows.sort_values("value", ascending=config.direction != "maximize")
                print(f"  {arm.name} best params: {json.dumps(best.iloc[0]['params'])}")
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
    for arm_name, group in evals.groupby("arm"):
        params = storage.evaluated_params(group.iloc[0]["params"])
        match = (trials["arm"] == arm_name) & trials["params"].map(params.__eq__)
        if params and match.any():
            trials.loc[match, "test_loss"] = group["test_loss"].mean()
            trials.loc[match, "test_acc"] = group["test_acc"].mean()
            trials.loc[match, "test_seeds"] = len(group)
    return trials


def cmd_sql(args: argparse.Namespace) -> int:
    url = storage.resolve_url(args.storage)
    result = storage.run_readonly(
        url,
        args.query,
        max_rows=args.max_rows,
        timeout_s=args.timeout,
        reader_url=args.reader_url,
    )
    frame = pd.DataFrame(list(result.rows), columns=list(result.columns))
    _print_frame(frame, args.format)
    if result.truncated:
        print(f"(truncated at {args.max_rows} rows; use --max-rows)", file=sys.stderr)
    return 0


def _print_frame(frame: pd.DataFrame, fmt: str) -> None:
    if fmt != "json":  # dict cells (params) as JSON text, not Python reprs
        frame = frame.copy()
        for column in frame.columns:
            if frame[column].map(lambda v: isinstance(v, dict)).any():
                frame[column] = frame[column].map(
                    lambda v: json.dumps(v) if isinstance(v, dict) else v
                )
    if fmt == "csv":
        sys.stdout.write(frame.to_csv(index=False))
    elif fmt == "json":
        sys.stdout.write(frame.to_json(orient="records", date_format="iso") + "\n")
    elif frame.empty:
        print("(no rows)")
    else:
        with pd.option_context("display.max_colwidth", 60, "display.width", 200):
            print(frame.to_string(index=False))
