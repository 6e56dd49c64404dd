"""Wall time per trial of dynl2's study bookkeeping alone, with no training, run by hand.

    python bench/store_overhead.py [--trials 64] [--epochs 20] [--workers 1,8] \
        [--backends sqlite,postgresql] [--postgres-url URL] [--repeats 1] [--timeout 900]

Replaces ``study.search.worker.train`` with a fake that reports E plausible epochs through the real
``on_epoch`` callback and ``study.search.worker.load_dataset`` with a stub, then runs the real
``run_worker`` in W spawned processes on an experiment of two searched arms (sampler random,
pruner none). What is timed is everything else a trial costs: ask/tell under the claim lock,
stale-trial checks, the heartbeat thread, ``trial.report`` + ``should_prune`` per epoch,
``Store.record_epochs``, user attributes, and the 1 s poll of workers waiting for the last
trials (shown as "tail": wall time after the last trial was told).

The clock starts when every worker has imported dynl2 and opened the store, and stops when the
last ``run_worker`` returns: each worker's ``open_studies`` (inside ``run_worker``) is timed,
process start-up and interpreter teardown are not (they are not bookkeeping).
Each run gets a fresh database: a SQLite file in a temporary folder, or a scratch PostgreSQL
database ``dynl2_bench_<random>`` dropped afterwards. Backends and worker counts are
interleaved repeat by repeat. After each run it checks that every arm has exactly n_trials
COMPLETE trials with E epoch rows each, no RUNNING/WAITING/FAIL trial and no duplicate trial
number, and counts "database is locked" errors seen by any engine in any worker (including ones
the heartbeat thread swallows). Exits 1 if any check fails. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import math
import multiprocessing
import os
import platform
import queue
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna
import psycopg
import sqlalchemy
from sqlalchemy.engine import Engine, make_url

import storage
import study.search.worker as study_worker
from study.config.experiment import ExperimentConfig, parse_experiment
from study.search.studies import Heartbeat, open_studies
from trainers import Dataset, EpochCallback, EpochRecord, TrainConfig, TrainResult

POSTGRES_ENV = "DYNL2_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")
ARMS = ("dynamic", "fixed")  # the searched arms of the benchmark experiment
LOCKED = "database is locked"
LOG_TAIL_LINES = 15  # lines of a failed worker's log printed with the failure


# --------------------------------------------------------------------------------------------
# The fakes each worker process installs (module level, so spawned children can import them).


_FAKE_DATA: Any = object()  # stands in for the Dataset; the fake train never looks at it


def fake_load_dataset(*args: object, **kwargs: object) -> Dataset:
    """Instead of loading tensors: a token, returned once per worker like the real dataset."""
    return _FAKE_DATA  # type: ignore[no-any-return]


def fake_train(
    config: TrainConfig, on_epoch: EpochCallback | None = None, data: Dataset | None = None
) -> TrainResult:
    """``trainers.train`` without the training: ``config.epochs`` plausible epoch records,
    each passed to ``on_epoch`` (a True return stops the run, as when a trial is pruned)."""
    started = time.perf_counter()
    rng = random.Random(config.seed)
    ceiling = rng.uniform(0.80, 0.97)  # the accuracy this "trial" converges to
    lam = 0.0 if config.scheme.name == "none" else rng.uniform(1e-6, 1e-2)
    history: list[EpochRecord] = []
    stopped = False
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        progress = 1.0 - math.exp(-epoch / 4.0)
        val_acc = min(1.0, 0.1 + (ceiling - 0.1) * progress + rng.gauss(0.0, 0.005))
        record = EpochRecord(
            epoch=epoch,
            train_loss=2.3 * math.exp(-epoch / 5.0) + 0.05,
            train_acc=min(1.0, val_acc + 0.02),
            val_loss=2.3 * math.exp(-epoch / 5.0) + 0.1 + abs(rng.gauss(0.0, 0.01)),
            val_acc=val_acc,
            lam_mean=lam,
            lam_min=0.5 * lam,
            lam_max=1.5 * lam,
            lam_last=lam,
            weight_norm=10.0 + 0.1 * epoch,
            seconds=time.perf_counter() - t0,
        )
        history.append(record)
        if on_epoch is not None and on_epoch(record):
            stopped = True
            break
    return TrainResult(
        config=config,
        history=tuple(history),
        test_loss=None if stopped else history[-1].val_loss,
        test_acc=None if stopped else history[-1].val_acc,
        seconds=time.perf_counter() - started,
        stopped=stopped,
        device="cpu",
    )


def install_fakes() -> None:
    """Patch the names ``train`` and ``load_dataset`` that study/worker.py imported."""
    # setattr: the names are study.search.worker's own imports, not part of its public API.
    setattr(study_worker, "train", fake_train)  # noqa: B010
    setattr(study_worker, "load_dataset", fake_load_dataset)  # noqa: B010


# --------------------------------------------------------------------------------------------
# One worker process.


@dataclass(eq=False)  # hashable by identity: SQLAlchemy keys its listeners by them
class _ErrorCounter:
    locked: int = 0  # DBAPI errors whose message says "database is locked"
    first: str | None = None  # the first database error of any kind, one line

    def __call__(self, context: sqlalchemy.engine.ExceptionContext) -> None:
        text = str(context.original_exception)
        if LOCKED in text:
            self.locked += 1
        if self.first is None:
            self.first = text.strip().splitlines()[0] if text.strip() else repr(text)


def worker_main(
    url: str,
    config_dict: dict[str, Any],
    index: int,
    log_path: str,
    start: Event,
    results: multiprocessing.Queue[tuple[Any, ...]],
) -> None:
    """Spawned child: install the fakes, open the store, say ready, wait, run_worker."""
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)  # anything optuna, sqlalchemy or a traceback prints goes to the log
    os.dup2(log, 2)
    errors = _ErrorCounter()
    sqlalchemy.event.listen(Engine, "handle_error", errors)  # every engine, Optuna's too
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    install_fakes()
    finished = 0
    last_trial = math.nan

    def on_trial(arm: str, number: int, outcome: str) -> None:
        nonlocal finished, last_trial
        finished += 1
        last_trial = time.monotonic()  # CLOCK_MONOTONIC: comparable across processes

    try:
        config = parse_experiment(config_dict)
        with storage.open(url, create=False) as store:
            results.put(("ready", index))
            start.wait()
            study_worker.run_worker(store, config, Heartbeat(), on_trial=on_trial)
            ended = time.monotonic()
    except BaseException as exc:
        text = "".join(traceback.format_exception(exc))
        print(text, file=sys.stderr, flush=True)
        results.put(("error", index, text, errors.locked, errors.first))
        sys.exit(1)
    results.put(("done", index, ended, last_trial, finished, errors.locked, errors.first))


# --------------------------------------------------------------------------------------------
# One run: W workers on a fresh database.


@dataclass
class RunResult:
    backend: str
    workers: int
    trials: int  # trials asked for: arms x n_trials
    wall_s: float
    tail_s: float  # wall time after the last trial was told (workers polling, then exiting)
    lost: int  # trials short of the budget, all arms together
    locked: int  # "database is locked" errors, all workers together
    problems: list[str] = field(default_factory=list)


def experiment_dict(name: str, trials: int, epochs: int) -> dict[str, Any]:
    return {
        "experiment": {"name": name, "seed": 0},
        "data": {"dataset": "digits"},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {
            "optimizer": "adam",
            "lr": {"low": 1e-3, "high": 3e-2, "log": True},
            "epochs": epochs,
            "batch_size": 100,
            "device": "cpu",
        },
        "search": {"n_trials": trials, "sampler": "random", "pruner": "none", "metric": "val_acc"},
        "arms": {
            "dynamic": {
                "scheme": "dynamic",
                "alpha": {"low": 1e-4, "high": 1.0, "log": True},
                "floor": {"low": 1e-8, "high": 1e-2, "log": True},
            },
            "fixed": {"scheme": "fixed", "lam": {"low": 1e-6, "high": 1e-1, "log": True}},
        },
        "evaluate": {"seeds": 1},
    }


def create_experiment(url: str, config: ExperimentConfig) -> None:
    """What ``dynl2 run`` does before it starts workers: create the experiment, its studies."""
    with storage.open(url) as store:
        store.create_experiment(config.name, config.to_dict())
        open_studies(store, config, Heartbeat())


def run_once(
    backend: str, url: str, workers: int, args: argparse.Namespace, logs: Path
) -> RunResult:
    config = parse_experiment(experiment_dict(f"bench-{workers}w", args.trials, args.epochs))
    assert set(ARMS) == {a.name for a in config.arms}
    create_experiment(url, config)
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results: multiprocessing.Queue[tuple[Any, ...]] = ctx.Queue()
    tag = uuid.uuid4().hex[:6]
    log_paths = [logs / f"{backend}-w{workers}-{tag}-{i}.log" for i in range(workers)]
    procs = [
        ctx.Process(
            target=worker_main,
            args=(url, config.to_dict(), i, str(log_paths[i]), start, results),
            name=f"bench-worker-{i}",
        )
        for i in range(workers)
    ]
    problems: list[str] = []
    messages: dict[int, tuple[Any, ...]] = {}
    for p in procs:
        p.start()
    t0 = math.nan
    ready = 0
    deadline = time.monotonic() + args.timeout
    try:
        while len(messages) < workers:
            if time.monotonic() > deadline:
                problems.append(f"timed out after {args.timeout} s")
                break
            try:
                message = results.get(timeout=0.5)
            except queue.Empty:
                dead = [
                    i for i, p in enumerate(procs) if p.exitcode is not None and i not in messages
                ]
                if dead:
                    problems.append(f"worker(s) {dead} exited without a result")
                    break
                continue
            if message[0] == "ready":
                ready += 1
                if ready == workers:
                    t0 = time.monotonic()
                    start.set()
            else:
                messages[message[1]] = message
    finally:
        start.set()  # a worker still waiting for the start must not wait forever
        stop_at = time.monotonic() + 30
        while any(p.is_alive() for p in procs) and time.monotonic() < stop_at:
            _drain(results, messages)  # a child exits only once its queue is flushed
            time.sleep(0.1)
        for p in procs:
            if p.is_alive():
                p.terminate()
            p.join()
        _drain(results, messages)
    ends = [m[2] for m in messages.values() if m[0] == "done"]
    lasts = [m[3] for m in messages.values() if m[0] == "done" and not math.isnan(m[3])]
    wall = max(ends) - t0 if ends and len(ends) == workers else math.nan
    tail = max(ends) - max(lasts) if ends and lasts else math.nan
    locked = 0
    for i, path in enumerate(log_paths):
        got = messages.get(i)
        seen = 0 if got is None else int(got[-2])
        text = path.read_text(errors="replace") if path.exists() else ""
        locked += max(seen, text.count(LOCKED))
        if got is None or got[0] == "error":
            tail_lines = "\n    ".join(text.strip().splitlines()[-LOG_TAIL_LINES:])
            problems.append(f"worker {i} failed; end of its log:\n    {tail_lines}")
    if locked:
        firsts = sorted({str(m[-1]) for m in messages.values() if m[-1] is not None})
        problems.append(f"{locked} {LOCKED!r} error(s) in the workers; first: {firsts[:3]}")
    told = sum(int(m[4]) for m in messages.values() if m[0] == "done")
    if len(ends) == workers and told != len(ARMS) * args.trials:
        problems.append(f"the workers finished {told} trials, not {len(ARMS) * args.trials}")
    lost = check_results(url, config, args.epochs, problems)
    return RunResult(backend, workers, len(ARMS) * args.trials, wall, tail, lost, locked, problems)


def _drain(
    results: multiprocessing.Queue[tuple[Any, ...]], into: dict[int, tuple[Any, ...]]
) -> None:
    while True:
        try:
            message = results.get_nowait()
        except queue.Empty:
            return
        if message[0] != "ready":
            into[message[1]] = message


def check_results(url: str, config: ExperimentConfig, epochs: int, problems: list[str]) -> int:
    """Append what is wrong with the stored trials to ``problems``; return the lost trials."""
    n = config.search.n_trials
    lost = 0
    with storage.open(url, create=False) as store:
        trials = store.trials(config.name)
        rows = store.epochs(config.name)
    for arm in ARMS:
        mine = trials[trials["arm"] == arm]
        states = mine["state"].value_counts().to_dict()
        complete = int(states.get("COMPLETE", 0))
        results = complete + int(states.get("PRUNED", 0))
        lost += max(0, n - results)
        if complete != n or len(mine) != n:
            problems.append(f"{arm}: {complete} COMPLETE of {n}, trial states {states}")
        duplicates = sorted(set(mine.loc[mine["number"].duplicated(), "number"]))
        if duplicates:
            problems.append(f"{arm}: duplicate trial numbers {duplicates}")
        done = set(mine.loc[mine["state"] == "COMPLETE", "number"])
        per_trial = rows[rows["arm"] == arm].groupby("number")["epoch"].agg(["count", "nunique"])
        wrong = [
            int(number)
            for number in sorted(done)
            if number not in per_trial.index
            or per_trial.loc[number, "count"] != epochs
            or per_trial.loc[number, "nunique"] != epochs
        ]
        if wrong:
            problems.append(f"{arm}: COMPLETE trials without exactly {epochs} epoch rows: {wrong}")
    return lost


# --------------------------------------------------------------------------------------------
# Databases.


def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as libpq/psycopg spell it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_version(server_url: str) -> tuple[str | None, str]:
    """``(version, "")`` when the server answers, else ``(None, why not)``."""
    try:
        with psycopg.connect(libpq_url(server_url), connect_timeout=3) as connection:
            row = connection.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, first
    return (str(row[0]) if row else "?"), ""


@contextlib.contextmanager
def fresh_database(backend: str, server_url: str, directory: Path) -> Iterator[str]:
    """The URL of an empty database: a new SQLite file, or a scratch PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"dynl2_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(server_url), autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------------------------
# The command.


def print_table(runs: list[RunResult], backends: list[str], workers: list[int]) -> None:
    """Medians over repeats, then ms/trial at each worker count against the first one."""
    print(
        f"{'backend':<12}{'workers':>8}{'trials':>8}{'wall s':>9}{'min-max':>13}"
        f"{'ms/trial':>10}{'trials/s':>10}{'tail s':>8}{'busy ms/trial':>15}{'lost':>6}"
        f"{'locked':>8}"
    )
    per_trial: dict[tuple[str, int], float] = {}
    busy: dict[tuple[str, int], float] = {}  # ms/trial without the tail (poll and exit)
    for backend in backends:
        for w in workers:
            mine = [r for r in runs if r.backend == backend and r.workers == w]
            walls = [r.wall_s for r in mine]
            wall = _median(walls)
            total = mine[0].trials
            per_trial[backend, w] = 1e3 * wall / total
            busy[backend, w] = 1e3 * _median([r.wall_s - r.tail_s for r in mine]) / total
            print(
                f"{backend:<12}{w:>8}{total:>8}{wall:>9.2f}{_spread(walls):>13}"
                f"{per_trial[backend, w]:>10.2f}{total / wall:>10.1f}"
                f"{_median([r.tail_s for r in mine]):>8.2f}{busy[backend, w]:>15.2f}"
                f"{sum(r.lost for r in mine):>6}{sum(r.locked for r in mine):>8}"
            )
    base = workers[0]
    for label, table in (("ms/trial", per_trial), ("busy ms/trial", busy)):
        for backend in backends:
            ratios = "  ".join(
                f"{w} / {base} workers {table[backend, w] / table[backend, base]:.2f}"
                for w in workers[1:]
            )
            if ratios:
                print(f"ratio {label:<13} {backend:<11} {ratios}  (< 1: workers overlap)")


def _csv(kind: type, allowed: tuple[str, ...] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"expected at least one value, got {text!r}")
        if allowed is not None and any(v not in allowed for v in values):
            raise argparse.ArgumentTypeError(f"allowed: {', '.join(allowed)}; got {text!r}")
        if kind is int and any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"worker counts must be >= 1, got {text!r}")
        return list(dict.fromkeys(values))

    return parse


def _spread(values: list[float], scale: float = 1.0) -> str:
    good = [v * scale for v in values if not math.isnan(v)]
    if not good:
        return "n/a"
    if len(good) == 1:
        return ""
    return f"{min(good):.2f}-{max(good):.2f}"


def _median(values: list[float]) -> float:
    good = [v for v in values if not math.isnan(v)]
    return statistics.median(good) if good else math.nan


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=64, help="trials per arm (2 arms)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs each fake trial reports")
    parser.add_argument("--workers", type=_csv(int), default=[1, 8], help="e.g. 1,8")
    parser.add_argument(
        "--backends", type=_csv(str, BACKENDS), default=list(BACKENDS), help="sqlite,postgresql"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL,
        help=f"server to make scratch databases on (default ${POSTGRES_ENV}, else "
        f"{DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    args = parser.parse_args()
    for name in ("trials", "epochs", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)

    backends: list[str] = args.backends
    server = f"SQLite {sqlite3.sqlite_version}"
    if "postgresql" in backends:
        version, why = postgres_version(args.postgres_url)
        shown = make_url(args.postgres_url).render_as_string(hide_password=True)
        if version is None:
            print(f"note: skipping PostgreSQL: no server answers at {shown} ({why})")
            backends = [b for b in backends if b != "postgresql"]
        else:
            server += f" | PostgreSQL {version}"
    if not backends:
        print("nothing to run", file=sys.stderr)
        sys.exit(1)
    heartbeat = Heartbeat()
    print(
        f"dynl2 store overhead: fake trials ({args.epochs} epochs reported, no training), "
        f"{len(ARMS)} arms x {args.trials} trials, sampler random, pruner none, heartbeat "
        f"{heartbeat.interval} s/grace {heartbeat.grace} s, worker poll 1 s | dynl2 "
        f"{_version('dynl2')} | optuna {optuna.__version__} | sqlalchemy "
        f"{sqlalchemy.__version__} | psycopg {psycopg.__version__} | {server} | Python "
        f"{platform.python_version()} | {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cores | {args.repeats} repeat(s), backends and workers interleaved; "
        "wall from all workers ready to the last run_worker return"
    )
    runs: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="dynl2-bench-") as tmp:
        directory = Path(tmp)
        for _ in range(args.repeats):
            for backend in backends:
                for workers in args.workers:
                    with fresh_database(backend, args.postgres_url, directory) as url:
                        runs.append(run_once(backend, url, workers, args, directory))
                    done = runs[-1]
                    state = "ok" if not done.problems else "FAILED"
                    print(
                        f"  ran {backend} x {workers} worker(s): {done.wall_s:.2f} s, {state}",
                        file=sys.stderr,
                        flush=True,
                    )

    print_table(runs, backends, args.workers)
    failed = [r for r in runs if r.problems]
    for r in failed:
        for problem in r.problems:
            print(f"CHECK FAILED {r.backend} x {r.workers} worker(s): {problem}")
    if failed:
        sys.exit(1)
    print(
        "checks passed: every arm has exactly its trials, all COMPLETE, each with "
        f"{args.epochs} epoch rows; 0 lost, 0 {LOCKED!r}"
    )


if __name__ == "__main__":
    main()
