"""How many dynl2 workers one store takes, measured with simulated workers; run by hand.

    python bench/store_scale.py [--quick] [--workers 1,4,16,64,256]
        [--backends sqlite,postgresql,pgbouncer] [--epochs 30] [--epoch-seconds 0.05]
        [--trials-per-worker 3] [--min-trials 32] [--batch 1] [--growth 1000,10000,50000]
        [--growth-backends sqlite,postgresql] [--growth-workers 4] [--growth-trials 40]
        [--max-rss-gb 6] [--max-procs 16] [--pool-size 20] [--timeout 600] [--json FILE]

Each simulated worker is the real ``run_worker`` (bench/_simulated.py: torch-free stand-ins for
the trainer's training modules, a fake ``train_fused`` reporting ``--epochs`` epochs, each
sleeping ``--epoch-seconds``). Workers run in spawned processes, several as threads of one
process when the memory guard or ``--max-procs`` says so (each thread opens its own store:
its own connections). Backends: a fresh SQLite file, a scratch PostgreSQL database
(``dynl2_bench_<random>``, dropped after) on ``$DYNL2_TEST_POSTGRES_URL``, and the same through
a PgBouncer in transaction pooling mode started for the run.

For each (backend, workers): trials/s from the start to the last trial told, p50/p99 of the
claim (``worker._claim``: lock, stale checks, ask), of the tell (``tell_many``) and of the
per-epoch report, database errors by kind, the peak connections (``pg_stat_activity``; for
PgBouncer also its client connections from ``SHOW POOLS``), and an exactness check: every arm
has exactly its trials, all COMPLETE, no duplicate number, each new one with its epoch rows.
Growth: the same with a study pre-filled by SQL at Optuna's schema with N finished trials.
Timings are never asserted; exits 1 if an exactness check fails, 2 on a bad flag.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import math
import multiprocessing
import os
import platform
import queue
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _simulated  # bench/, beside this file
import psycopg
import sqlalchemy
from sqlalchemy.engine import make_url

POSTGRES_ENV = "DYNL2_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql", "pgbouncer")
ARMS = ("dynamic", "fixed")


def experiment_dict(name: str, trials: int, epochs: int, arms: tuple[str, ...]) -> dict[str, Any]:
    every = {
        "dynamic": {
            "scheme": "dynamic",
            "alpha": {"low": 1e-4, "high": 1.0, "log": True},
            "floor": {"low": 1e-8, "high": 1e-2, "log": True},
        },
        "fixed": {"scheme": "fixed", "lam": {"low": 1e-6, "high": 1e-1, "log": True}},
    }
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
        "arms": {a: every[a] for a in arms},
        "evaluate": {"seeds": 1},
    }


# --------------------------------------------------------------------------------------------
# Databases: scratch ones, and a PgBouncer in front of the server.


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def server_version(url: str) -> str | None:
    try:
        with psycopg.connect(libpq(url), connect_timeout=3) as c:
            row = c.execute("SHOW server_version").fetchone()
    except psycopg.Error:
        return None
    return str(row[0]) if row else "?"


@contextlib.contextmanager
def scratch_database(backend: str, server: str, folder: Path, bouncer: Any) -> Iterator[Any]:
    """``(url the workers use, url for setup and checks, database name)``."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / f'scale-{uuid.uuid4().hex[:8]}.db'}"
        yield url, url, None
        return
    name = f"dynl2_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq(server), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    direct = make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        yield (bouncer.url(name) if backend == "pgbouncer" else direct), direct, name
    finally:
        with psycopg.connect(libpq(server), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Bouncer:
    """PgBouncer in transaction pooling mode in front of ``server``, started with the
    project's starter (tests/reliability/pgbouncer.py); its client connections are counted
    from the kernel's socket table (that starter opens no admin console)."""

    def __init__(self, server: str, pool_size: int) -> None:
        from tests.reliability.pgbouncer import PgBouncer

        url = make_url(server)
        self.server = server
        self.bouncer = PgBouncer(
            url.host or "127.0.0.1",
            url.port or 5432,
            pool_mode="transaction",
            pool_size=pool_size,
            max_client_conn=4000,
            users=(url.username or "postgres",),
        )

    def start(self) -> None:
        self.bouncer.start()

    def stop(self) -> None:
        self.bouncer.stop()

    def url(self, database: str) -> str:
        direct = make_url(self.server).set(database=database)
        return self.bouncer.url(direct.render_as_string(hide_password=False))

    def clients(self) -> int:
        """Established TCP connections to PgBouncer's port (its clients)."""
        port = f":{self.bouncer.port:04X}"
        n = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError), open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    n += fields[1].endswith(port) and fields[3] == "01"
        return n


class Connections(threading.Thread):
    """Samples the connections to one scratch database every 0.2 s: the server's backends
    (``pg_stat_activity``) and, behind PgBouncer, PgBouncer's clients. Its own connection
    is opened before the workers start, so a full server cannot keep it out."""

    def __init__(self, server: str, database: str | None, bouncer: Bouncer | None) -> None:
        super().__init__(daemon=True)
        self.database, self.bouncer = database, bouncer
        self.peak = {"server": 0, "clients": 0}
        self.stop = threading.Event()
        self.pg = psycopg.connect(libpq(server), autocommit=True) if database else None

    def run(self) -> None:
        if self.pg is None:
            return
        with self.pg:
            while not self.stop.wait(0.2):
                with contextlib.suppress(psycopg.Error):
                    row = self.pg.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                        (self.database,),
                    ).fetchone()
                    self._peak("server", int(row[0]) if row else 0)
                if self.bouncer is not None:
                    self._peak("clients", self.bouncer.clients())

    def _peak(self, key: str, value: int) -> None:
        self.peak[key] = max(self.peak[key], value)


# --------------------------------------------------------------------------------------------
# One run: W simulated workers on a prepared database.


@dataclass
class Run:
    backend: str
    workers: int
    procs: int
    threads: int  # at most this many workers per process
    trials: int  # new trials asked for, all arms
    prefill: int = 0  # finished trials already in each study
    prefill_s: float = math.nan
    wall_s: float = math.nan  # start to the last run_worker return
    busy_s: float = math.nan  # start to the last trial told
    times: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    first_errors: dict[str, str] = field(default_factory=dict)
    fatal: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what workers said (database away, back)
    peak: dict[str, int] = field(default_factory=dict)
    rss_mb: float = math.nan  # the largest process's peak RSS
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.trials / self.busy_s if self.busy_s > 0 else math.nan

    def pct(self, kind: str, q: float) -> float:
        values = sorted(self.times.get(kind, []))
        if not values:
            return math.nan
        return 1e3 * values[min(len(values) - 1, math.ceil(q * len(values)) - 1)]


def worker_env(backend: str, args: argparse.Namespace) -> dict[str, str]:
    """What a worker's environment says: a pooler in transaction mode, and how long the
    worker waits for a database that does not answer (a run that breaks fails in minutes)."""
    patience = str(int(min(args.timeout / 2, 120)))
    return {
        "DYNL2_PGBOUNCER": "1" if backend == "pgbouncer" else "0",
        "DYNL2_DB_PATIENCE": patience,
    }


def split(workers: int, procs: int) -> list[int]:
    return [workers // procs + (i < workers % procs) for i in range(procs)]


def run_workers(
    run: Run, url: str, config: Any, args: argparse.Namespace, folder: Path, monitor: Any
) -> None:
    """Start ``run.procs`` processes holding ``run.workers`` workers, fill ``run`` in."""
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results: Any = ctx.Queue()
    tag = uuid.uuid4().hex[:6]
    where = args.logs or folder  # --logs keeps them; else they go with the temporary folder
    where.mkdir(parents=True, exist_ok=True)
    logs = [where / f"{run.backend}-{run.workers}w-{tag}-{i}.log" for i in range(run.procs)]
    counts = split(run.workers, run.procs)
    procs = [
        ctx.Process(
            target=_simulated.process_main,
            args=(
                url,
                config.to_dict(),
                i,
                counts[i],
                args.batch,
                args.epoch_seconds,
                worker_env(run.backend, args),
                str(logs[i]),
                start,
                results,
            ),
        )
        for i in range(run.procs)
    ]
    for p in procs:
        p.start()
    messages: dict[int, tuple[Any, ...]] = {}
    ready, t0 = 0, math.nan
    deadline = time.monotonic() + args.timeout
    try:
        while len(messages) < run.procs:
            if time.monotonic() > deadline:
                run.problems.append(f"timed out after {args.timeout:.0f} s")
                break
            try:
                message = results.get(timeout=0.5)
            except queue.Empty:
                dead = [
                    i for i, p in enumerate(procs) if p.exitcode is not None and i not in messages
                ]
                if dead:
                    run.problems.append(f"process(es) {dead} exited without a result")
                    break
                continue
            if message[0] == "ready":
                ready += 1
                if ready == run.procs:
                    monitor.start()
                    t0 = time.monotonic()
                    start.set()
            else:
                messages[message[1]] = message
    finally:
        start.set()
        for p in procs:
            p.join(timeout=max(1.0, deadline - time.monotonic()) if not run.problems else 5)
            if p.is_alive():
                p.terminate()
                p.join()
        monitor.stop.set()
        if not monitor.is_alive() and monitor.pg is not None:
            monitor.pg.close()
        with contextlib.suppress(queue.Empty):
            while True:
                m = results.get(timeout=0.2)
                if m[0] != "ready":
                    messages[m[1]] = m
    run.peak = dict(monitor.peak)
    collect(run, messages, logs, t0)


def collect(run: Run, messages: dict[int, tuple[Any, ...]], logs: list[Path], t0: float) -> None:
    run.times = {k: [] for k in _simulated.TIMED}
    ends, lasts, told = [], [], 0
    for i in range(run.procs):
        m = messages.get(i)
        if m is None and any(p.startswith("timed out") for p in run.problems):
            run.problems.append(f"process {i} was still running at the timeout: stopped")
            continue
        if m is None or m[0] == "error":
            text = m[2] if m else logs[i].read_text(errors="replace") if logs[i].exists() else ""
            run.problems.append(f"process {i} failed: {text.strip().splitlines()[-1:]}")
            continue
        payload = m[2]
        if payload["torch"]:
            run.problems.append(payload["torch"])
        run.rss_mb = max(payload["rss_mb"], 0 if math.isnan(run.rss_mb) else run.rss_mb)
        for kind, n in payload["errors"].items():
            run.errors[kind] = run.errors.get(kind, 0) + n
        for kind, line in payload["first_errors"].items():
            run.first_errors.setdefault(kind, line)
        for w in payload["workers"]:
            for kind, values in w["times"].items():
                run.times[kind].extend(values)
            told += w["finished"]
            ends.append(w["ended"])
            if not math.isnan(w["last_trial"]):
                lasts.append(w["last_trial"])
            run.notes += w["notes"]
            if w["fatal"]:
                run.fatal.append(w["fatal"].splitlines()[-1][:200])
    if run.fatal:
        distinct = sorted(set(run.fatal))
        run.problems.append(f"{len(run.fatal)} worker(s) raised; e.g. {distinct[:2]}")
    if ends and not math.isnan(t0):
        run.wall_s = max(ends) - t0
    if lasts and not math.isnan(t0):
        run.busy_s = max(lasts) - t0
    if told != run.trials and not run.problems:
        run.problems.append(f"the workers told {told} trials, not {run.trials}")


def check_exact(url: str, config: Any, prefill: int, epochs: int) -> list[str]:
    """What is wrong with the stored trials (bench-only SQL at Optuna's and dynl2's schema)."""
    from storage import study_name

    problems: list[str] = []
    engine = sqlalchemy.create_engine(url)
    q = sqlalchemy.text
    try:
        with engine.connect() as c:
            for arm in (a.name for a in config.arms):
                sid = c.execute(
                    q("SELECT study_id FROM studies WHERE study_name = :n"),
                    {"n": study_name(config.name, arm, 1)},
                ).scalar_one()
                found: dict[Any, int] = dict(
                    c.execute(
                        q("SELECT state, count(*) FROM trials WHERE study_id = :s GROUP BY state"),
                        {"s": sid},
                    ).all()
                )
                states = {str(getattr(k, "name", k)): v for k, v in found.items()}
                n = config.search.n_trials
                if states.get("COMPLETE", 0) != n or sum(states.values()) != n:
                    problems.append(
                        f"{arm}: {states.get('COMPLETE', 0)} COMPLETE of {n}, {states}"
                    )
                dup = c.execute(
                    q(
                        "SELECT number FROM trials WHERE study_id = :s GROUP BY number "
                        "HAVING count(*) > 1"
                    ),
                    {"s": sid},
                ).all()
                if dup:
                    problems.append(f"{arm}: duplicate trial numbers {[r[0] for r in dup][:10]}")
                wrong = c.execute(
                    q(
                        "SELECT t.number FROM trials t LEFT JOIN dynl2_epochs e "
                        "ON e.trial_id = t.trial_id WHERE t.study_id = :s AND t.number >= :p "
                        "GROUP BY t.number HAVING count(e.epoch) != :e "
                        "OR count(DISTINCT e.epoch) != :e"
                    ),
                    {"s": sid, "p": prefill, "e": epochs},
                ).all()
                if wrong:
                    problems.append(
                        f"{arm}: trials without exactly {epochs} epoch rows: "
                        f"{[r[0] for r in wrong][:10]}"
                    )
    finally:
        engine.dispose()
    return problems


# --------------------------------------------------------------------------------------------
# Setup: the experiment, its studies, and the pre-filled trials of the growth runs.


def create_experiment(url: str, config: Any) -> None:
    """What ``dynl2 run`` does before it starts workers (through the server, not PgBouncer)."""
    import storage
    from study.search.keys import Heartbeat
    from study.search.studies import open_studies

    with storage.open(url) as store:
        store.create_experiment(config.name, config.to_dict())
        open_studies(store, config, Heartbeat())


def prefill(url: str, config: Any, n: int, epochs: int) -> float:
    """Write ``n`` finished trials into each study of ``config`` by SQL at Optuna's schema, as
    the real path leaves them: state COMPLETE, the arm's params, a value, ``epochs``
    intermediate values, the user attributes dynl2 writes (the resolved config JSON, result,
    best epoch, worker), a heartbeat row, and ``epochs`` rows of ``dynl2_epochs``; one
    ``INSERT ... SELECT`` over a recursive CTE per table. Returns the seconds it took."""
    from optuna.distributions import distribution_to_json

    from storage import study_name
    from study.search.studies import distributions, trial_seed

    t0 = time.perf_counter()
    engine = sqlalchemy.create_engine(url)
    pg = engine.dialect.name == "postgresql"

    def enum(value: str, pg_type: str) -> str:
        return f"CAST('{value}' AS {pg_type})" if pg else f"'{value}'"

    q = sqlalchemy.text
    seq = "WITH RECURSIVE seq(k) AS (SELECT 0 UNION ALL SELECT k + 1 FROM seq WHERE k + 1 < :n) "
    eps = "WITH RECURSIVE ep(e) AS (SELECT 1 UNION ALL SELECT e + 1 FROM ep WHERE e < :e) "
    try:
        with engine.begin() as c:
            for arm in (a.name for a in config.arms):
                sid = c.execute(
                    q("SELECT study_id FROM studies WHERE study_name = :n"),
                    {"n": study_name(config.name, arm, 1)},
                ).scalar_one()
                c.execute(
                    q(
                        seq + "INSERT INTO trials (number, study_id, state, datetime_start, "
                        f"datetime_complete) SELECT k, :s, {enum('COMPLETE', 'trialstate')}, "
                        "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM seq"
                    ),
                    {"n": n, "s": sid},
                )
                params = {}
                for name, d in distributions(config, arm).items():
                    low, high = float(d.low), float(d.high)  # type: ignore[attr-defined]
                    params[name] = math.sqrt(low * high) if d.log else (low + high) / 2  # type: ignore[attr-defined]
                    c.execute(
                        q(
                            "INSERT INTO trial_params (trial_id, param_name, param_value, "
                            "distribution_json) SELECT trial_id, :p, :v, :d FROM trials "
                            "WHERE study_id = :s"
                        ),
                        {"p": name, "v": params[name], "d": distribution_to_json(d), "s": sid},
                    )
                c.execute(
                    q(
                        "INSERT INTO trial_values (trial_id, objective, value, value_type) "
                        "SELECT trial_id, 0, 0.5 + (number % 1000) / 2500.0, "
                        f"{enum('FINITE', 'trialvaluetype')} FROM trials WHERE study_id = :s"
                    ),
                    {"s": sid},
                )
                c.execute(
                    q(
                        eps + "INSERT INTO trial_intermediate_values (trial_id, step, "
                        "intermediate_value, intermediate_value_type) SELECT t.trial_id, ep.e, "
                        f"0.1 + 0.8 * ep.e / :e, {enum('FINITE', 'trialintermediatevaluetype')} "
                        "FROM trials t, ep WHERE t.study_id = :s"
                    ),
                    {"e": epochs, "s": sid},
                )
                resolved = config.train_config(arm, params, trial_seed(config, 0)).to_dict()
                attrs = {
                    "config": resolved,
                    "dynl2_result": "complete",
                    "best_epoch": epochs,
                    "dynl2_worker": "bench-prefill:1",
                }
                for key, value in attrs.items():
                    c.execute(
                        q(
                            "INSERT INTO trial_user_attributes (trial_id, key, value_json) "
                            "SELECT trial_id, :k, :v FROM trials WHERE study_id = :s"
                        ),
                        {"k": key, "v": json.dumps(value), "s": sid},
                    )
                c.execute(
                    q(
                        "INSERT INTO trial_heartbeats (trial_id, heartbeat) "
                        "SELECT trial_id, CURRENT_TIMESTAMP FROM trials WHERE study_id = :s"
                    ),
                    {"s": sid},
                )
                c.execute(
                    q(
                        eps + "INSERT INTO dynl2_epochs (trial_id, epoch, train_loss, train_acc, "
                        "val_loss, val_acc, lam_mean, lam_min, lam_max, lam_last, weight_norm, "
                        "seconds) SELECT t.trial_id, ep.e, 1.0 / ep.e, 0.9, 1.1 / ep.e, 0.85, "
                        "0.001, 0.0005, 0.0015, 0.001, 10.0, 0.05 FROM trials t, ep "
                        "WHERE t.study_id = :s"
                    ),
                    {"e": epochs, "s": sid},
                )
        if pg:  # a store that grew over days has its statistics; a bulk load must ask for them
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(q("ANALYZE"))
    finally:
        engine.dispose()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------
# Memory: how many processes, how many worker threads each.


def probe_rss(args: argparse.Namespace, folder: Path) -> tuple[float, float]:
    """Peak RSS (MB) of one simulated worker process, and what each more thread adds."""
    found = []
    for threads in (1, 8):
        run = Run("sqlite", threads, 1, threads, trials=2 * threads)
        config = parse(f"probe-{threads}", threads, 3, ARMS)
        with scratch_database("sqlite", "", folder, None) as (url, direct, _):
            create_experiment(direct, config)
            probe = argparse.Namespace(**{**vars(args), "epoch_seconds": 0.0, "timeout": 120.0})
            run_workers(run, url, config, probe, folder, Connections("", None, None))
        if math.isnan(run.rss_mb) or run.problems:
            raise RuntimeError(f"the memory probe failed: {run.problems}")
        found.append(run.rss_mb)
    return found[0], max(1.0, (found[1] - found[0]) / 7)


def layout(workers: int, args: argparse.Namespace, rss: tuple[float, float]) -> tuple[int, int]:
    """``(processes, threads per process)`` that fit ``--max-rss-gb`` and ``--max-procs``;
    ``(0, 0)`` when even one process cannot hold them."""
    per_proc, per_thread = rss
    budget = args.max_rss_gb * 1024
    procs = min(workers, args.max_procs)
    while procs > 1 and procs * per_proc + workers * per_thread > budget:
        procs -= 1
    if procs * per_proc + workers * per_thread > budget:
        return 0, 0
    threads = math.ceil(workers / procs)
    return math.ceil(workers / threads), threads


def parse(name: str, n_trials: int, epochs: int, arms: tuple[str, ...]) -> Any:
    from study.config.experiment import parse_experiment

    return parse_experiment(experiment_dict(name, n_trials, epochs, arms))


# --------------------------------------------------------------------------------------------
# The sweep, the growth runs, the tables.


def one_case(
    backend: str,
    workers: int,
    n_trials: int,
    arms: tuple[str, ...],
    prefilled: int,
    args: argparse.Namespace,
    ctx: dict[str, Any],
) -> Run:
    procs, threads = layout(workers, args, ctx["rss"])
    total = len(arms) * (n_trials - prefilled)
    run = Run(backend, workers, procs, threads, trials=total, prefill=prefilled)
    if procs == 0:
        run.problems.append(
            f"skipped: {workers} workers do not fit --max-rss-gb {args.max_rss_gb}"
        )
        return run
    config = parse(f"scale-{backend}-{workers}w-{prefilled}", n_trials, args.epochs, arms)
    folder, bouncer = ctx["folder"], ctx["bouncer"] if backend == "pgbouncer" else None
    with scratch_database(backend, args.postgres_url, folder, bouncer) as (url, direct, db):
        create_experiment(direct, config)
        if prefilled:
            run.prefill_s = prefill(direct, config, prefilled, args.epochs)
        monitor = Connections(args.postgres_url, db, bouncer)
        run_workers(run, url, config, args, folder, monitor)
        try:
            run.problems += check_exact(direct, config, prefilled, args.epochs)
        except Exception as exc:  # a check that cannot read the store is a failed check
            run.problems.append(f"the check could not read the store: {exc!r:.200}")
    state = "ok" if not run.problems else "FAILED"
    print(
        f"  {backend} x {workers} worker(s) ({procs} proc x <= {threads}), prefill {prefilled}: "
        f"{run.rate:.1f} trials/s, {state}",
        file=sys.stderr,
        flush=True,
    )
    return run


def grow(backend: str, args: argparse.Namespace, ctx: dict[str, Any]) -> list[Run]:
    """The growth runs of one backend: an empty study, then each pre-filled size. Every
    worker caches the study's finished trials (Optuna's _CachedStorage), so its memory grows
    with the study: the RSS each trial added in the last run predicts the next one, and the
    run gets fewer workers (or none) when --max-rss-gb would not hold them."""
    runs: list[Run] = []
    base_rss, per_trial = ctx["rss"][0], 0.0
    for size in [0, *args.growth]:
        workers = args.growth_workers
        predicted = base_rss + per_trial * size
        while workers > 0 and workers * predicted > args.max_rss_gb * 1024:
            workers -= 1
        if workers == 0:
            skipped = Run(backend, args.growth_workers, 0, 0, args.growth_trials, prefill=size)
            skipped.problems.append(
                f"skipped: one worker would need about {predicted:.0f} MB (--max-rss-gb)"
            )
            runs.append(skipped)
            continue
        run = one_case(backend, workers, size + args.growth_trials, ("dynamic",), size, args, ctx)
        if workers < args.growth_workers:
            run.notes.append(
                f"{workers} worker(s) instead of {args.growth_workers}: about {predicted:.0f} MB "
                f"each, by the memory guard"
            )
        if size and not math.isnan(run.rss_mb):
            per_trial = max(per_trial, (run.rss_mb - base_rss) / size)
        runs.append(run)
    return runs


def fmt(x: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(x) else f"{x:.{digits}f}"


def ratio(x: float, base: float) -> str:
    return "n/a" if math.isnan(x) or math.isnan(base) or base == 0 else f"{x / base:.2f}"


def errors_cell(run: Run) -> str:
    return "/".join(str(run.errors.get(k, 0)) for k in _simulated.ERROR_KINDS)


def conns_cell(run: Run) -> str:
    if run.backend == "sqlite":
        return "-"
    if run.backend == "pgbouncer":
        p = run.peak
        return f"server {p.get('server', 0)} / clients {p.get('clients', 0)}"
    return str(run.peak.get("server", 0))


def sweep_table(runs: list[Run]) -> list[str]:
    lines = [
        "| backend | workers | procs x threads | trials | trials/s | x 1 worker | claim p50 ms "
        "| claim p99 ms | tell p50 ms | tell p99 ms | report p50 ms | errors locked/clients/"
        "timeout/other | peak connections | peak RSS MB/proc | exact |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|",
    ]
    for r in runs:
        base = next((b for b in runs if b.backend == r.backend and b.workers == 1), None)
        lines.append(
            f"| {r.backend} | {r.workers} | {r.procs} x {r.threads} | {r.trials} | {fmt(r.rate)} "
            f"| {ratio(r.rate, base.rate) if base else 'n/a'} | {fmt(r.pct('claim', 0.5))} "
            f"| {fmt(r.pct('claim', 0.99))} | {fmt(r.pct('tell', 0.5))} "
            f"| {fmt(r.pct('tell', 0.99))} | {fmt(r.pct('report', 0.5))} | {errors_cell(r)} "
            f"| {conns_cell(r)} | {fmt(r.rss_mb, 0)} "
            f"| {'yes' if not r.problems else 'NO'} |"
        )
    return lines


def growth_table(runs: list[Run]) -> list[str]:
    lines = [
        "| backend | trials already in the study | pre-fill s | new trials | workers | trials/s "
        "| x empty | claim p50 ms | claim p99 ms | x empty (claim p50) | tell p50 ms "
        "| tell p99 ms "
        "| peak RSS MB/proc | exact |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        base = next((b for b in runs if b.backend == r.backend and b.prefill == 0), None)
        lines.append(
            f"| {r.backend} | {r.prefill} | {fmt(r.prefill_s)} | {r.trials} | {r.workers} "
            f"| {fmt(r.rate)} | {ratio(r.rate, base.rate) if base else 'n/a'} "
            f"| {fmt(r.pct('claim', 0.5))} | {fmt(r.pct('claim', 0.99))} "
            f"| {ratio(r.pct('claim', 0.5), base.pct('claim', 0.5)) if base else 'n/a'} "
            f"| {fmt(r.pct('tell', 0.5))} | {fmt(r.pct('tell', 0.99))} | {fmt(r.rss_mb, 0)} "
            f"| {'yes' if not r.problems else 'NO'} |"
        )
    return lines


def header(args: argparse.Namespace, pg: str | None) -> list[str]:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "?"

    ram = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    bouncer = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=5)
        bouncer = out.stdout.splitlines()[0] if out.stdout else "?"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return [
        f"# dynl2 store scale, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {os.cpu_count()} CPUs, {ram} RAM, load average at start {load} (shared); "
        f"{platform.platform()}; Python {platform.python_version()}",
        f"- optuna {version('optuna')}, SQLAlchemy {version('sqlalchemy')}, psycopg "
        f"{version('psycopg')}, SQLite {sqlite3.sqlite_version}, PostgreSQL {pg or 'absent'}, "
        f"{bouncer} (started by tests/reliability/pgbouncer.py, pool_mode transaction, "
        f"default_pool_size {args.pool_size}, workers with DYNL2_PGBOUNCER=1)",
        f"- simulated workers: the real run_worker, no torch; fake trials of {args.epochs} "
        f"epochs, {args.epoch_seconds} s of fake training per epoch, {args.batch} trial(s) per "
        "claim, sampler random, pruner none, heartbeat 10 s, poll 1 s",
        f"- workers beyond --max-procs {args.max_procs} or the --max-rss-gb {args.max_rss_gb} "
        "guard run as threads of one process, each with its own store (its own connections)",
        "- trials/s: new trials / (start to the last trial told); claim = worker._claim "
        "(lock + stale checks + ask), tell = tell_many, report = one epoch's report_many",
    ]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit status 2
        print(f"store_scale.py: {message}", file=sys.stderr)
        sys.exit(2)


def _csv(kind: type, allowed: tuple[str, ...] = ()) -> Any:
    def parse_list(text: str) -> list[Any]:
        try:
            values = [kind(p.strip()) for p in text.split(",") if p.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list, got {text!r}"
            ) from None
        if not values or (allowed and any(v not in allowed for v in values)):
            raise argparse.ArgumentTypeError(
                f"allowed: {', '.join(allowed) or 'numbers'}; got {text!r}"
            )
        if kind is int and any(v < (1 if allowed != ("growth",) else 0) for v in values):
            raise argparse.ArgumentTypeError(f"counts must be >= 1, got {text!r}")
        return list(dict.fromkeys(values))

    return parse_list


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a small sweep for smoke checks (< 3 min)")
    p.add_argument("--workers", type=_csv(int), default=[1, 4, 16, 64, 256])
    p.add_argument("--backends", type=_csv(str, BACKENDS), default=list(BACKENDS))
    p.add_argument("--epochs", type=int, default=30, help="epoch rows per fake trial")
    p.add_argument("--epoch-seconds", type=float, default=0.05, help="fake training per epoch")
    p.add_argument("--trials-per-worker", type=int, default=3)
    p.add_argument("--min-trials", type=int, default=32, help="new trials of a run, at least")
    p.add_argument("--batch", type=int, default=1, help="trials per claim (fused group)")
    p.add_argument("--growth", type=_csv(int), default=[1000, 10000, 50000])
    p.add_argument("--growth-backends", type=_csv(str, BACKENDS), default=["sqlite", "postgresql"])
    p.add_argument("--growth-workers", type=int, default=4)
    p.add_argument("--growth-trials", type=int, default=40, help="new trials on top")
    p.add_argument("--no-growth", action="store_true", help="only the sweep over workers")
    p.add_argument("--no-sweep", action="store_true", help="only the growth runs")
    p.add_argument("--max-rss-gb", type=float, default=6.0)
    p.add_argument("--max-procs", type=int, default=16)
    p.add_argument("--pool-size", type=int, default=20, help="PgBouncer default_pool_size")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    p.add_argument("--postgres-url", default=os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES_URL)
    p.add_argument("--json", type=Path, help="also write every measurement here")
    p.add_argument("--logs", type=Path, help="keep the worker processes' logs in this folder")
    args = p.parse_args(argv)
    if args.quick:
        given = set(argv if argv is not None else sys.argv[1:])
        quick = {
            "workers": [1, 4],
            "epochs": 20,
            "epoch_seconds": 0.02,
            "min_trials": 16,
            "growth": [1000],
            "growth_workers": 2,
            "growth_trials": 16,
        }
        for key, value in quick.items():
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, value)
    for name in (
        "epochs",
        "trials_per_worker",
        "min_trials",
        "batch",
        "growth_workers",
        "growth_trials",
        "max_procs",
        "pool_size",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.epoch_seconds < 0 or args.max_rss_gb <= 0 or args.timeout <= 0:
        p.error("--epoch-seconds must be >= 0, --max-rss-gb and --timeout > 0")
    if max(args.workers) > 256:
        p.error(f"--workers: at most 256 (dynl2's own limit per machine), got {max(args.workers)}")
    if max(args.growth, default=0) > 99_000:
        p.error(f"--growth: at most 99000 trials (n_trials <= 100000), got {max(args.growth)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    _simulated.install_torchless_trainers()  # this process sets up studies: no torch either
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pg = server_version(args.postgres_url)
    backends = [b for b in args.backends if pg or b == "sqlite"]
    growth_backends = [b for b in args.growth_backends if pg or b == "sqlite"]
    if pg is None and backends != args.backends:
        print("note: no PostgreSQL server answers: only SQLite runs", file=sys.stderr)
    sweep: list[Run] = []
    growth: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="dynl2-scale-") as tmp:
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        bouncer = Bouncer(args.postgres_url, args.pool_size)
        if "pgbouncer" in backends + growth_backends:
            bouncer.start()
        try:
            rss = probe_rss(args, folder)
            lines = header(args, pg)
            lines.append(
                f"- memory: one simulated worker process peaks at {rss[0]:.0f} MB RSS, each more "
                f"worker thread in it adds about {rss[1]:.1f} MB"
            )
            print("\n".join(lines), flush=True)
            ctx = {"folder": folder, "bouncer": bouncer, "rss": rss}
            for backend in backends if not args.no_sweep else ():
                for w in args.workers:
                    total = max(args.min_trials, w * args.trials_per_worker)
                    n = math.ceil(total / len(ARMS))
                    sweep.append(one_case(backend, w, n, ARMS, 0, args, ctx))
            if not args.no_growth:
                for backend in growth_backends:
                    growth += grow(backend, args, ctx)
        finally:
            bouncer.stop()
    out = ["", "## Workers", "", *sweep_table(sweep)]
    if growth:
        out += [
            "",
            f"## Growth (one searched arm, {args.growth_trials} new trials, "
            f"{args.growth_workers} workers; the study pre-filled by SQL at Optuna's schema)",
            "",
            "Pre-fill (its seconds are the pre-fill s column, outside trials/s): one "
            "INSERT ... SELECT over a recursive CTE per Optuna table and dynl2_epochs, in one "
            "transaction, then ANALYZE on PostgreSQL. Each trial: COMPLETE, the arm's 3 "
            f"params, a value, {args.epochs} intermediate values, the 4 user attributes "
            "dynl2 writes (the resolved config JSON among them), a heartbeat row and "
            f"{args.epochs} epoch rows. Workers cache the study's finished trials (Optuna's "
            "_CachedStorage): a worker's first claim loads them all (claim p99), and its "
            "memory grows with the study (peak RSS).",
            "",
            *growth_table(growth),
        ]
    failed = [r for r in sweep + growth if r.problems or r.errors or r.notes]
    if failed:
        out += ["", "## Errors and failed checks", ""]
        for r in failed:
            what = f"{r.backend} x {r.workers} workers, prefill {r.prefill}"
            for kind, line in r.first_errors.items():
                out.append(f"- {what}: {r.errors.get(kind, 0)} {kind}, first: {line}")
            if r.notes:
                out.append(f"- {what}: {len(r.notes)} worker note(s), first: {r.notes[0]}")
            out += [f"- {what}: CHECK FAILED: {p}" for p in r.problems]
    print("\n".join(out))
    if args.json:
        rows = [
            {
                **asdict(r),
                "times": {k: len(v) for k, v in r.times.items()},
                "p50_ms": {k: r.pct(k, 0.5) for k in r.times},
                "p99_ms": {k: r.pct(k, 0.99) for k in r.times},
                "trials_per_s": r.rate,
            }
            for r in sweep + growth
        ]
        args.json.write_text(json.dumps({"header": lines, "runs": rows}, indent=1, default=str))
    return 1 if any(r.problems for r in sweep + growth) else 0


if __name__ == "__main__":
    sys.exit(main())
