"""The study loop alone, against Optuna's own ``study.optimize``, run by hand.

    python bench/loop.py [--trials 1000] [--epochs 5] [--samplers random,tpe] [--workers 1,4]
        [--backends sqlite,postgresql] [--batch N] [--repeats 1] [--whole] [--timeout 900]

What a trial costs when its training costs nothing: dynl2's whole search path (the claim under
the lock, stale-trial checks, the asks, heartbeats, per-epoch reports and pruning reads, epoch
rows, attributes, tells) run by the real ``run_worker`` in W spawned processes whose trainer
layer is the torch-free stand-in of ``bench/_simulated.py`` (each epoch of a group returns at
once with a plausible record). The anchor, measured in the same run on a fresh database of the
same backend: Optuna's ``study.optimize`` in W processes on the same two studies (the searched
arms of the benchmark experiment: the same parameters and distributions, the same sampler, no
pruner), with an objective that reports the same fake curve epoch by epoch through
``trial.report`` and ``trial.should_prune`` and returns its last value.

For each backend x sampler x workers it prints both systems' trials/s and worker-ms per trial
(wall x workers / trials: with nothing to train, every millisecond is bookkeeping), and the
ratio dynl2 / Optuna of the latter (below 1: dynl2's loop is the cheaper). The clock starts
when every process has imported everything and opened its store, and stops when the last
trial is told. ``--whole`` adds one row per backend for whole commands, start-up included: a
``dynl2 run`` of ``--trials`` nearly free trials (digits, a 16-unit MLP, 2 epochs, random
search, evaluation and report included) against a Python process that imports Optuna and
runs ``study.optimize`` of as many instant trials on the same kind of store.

Every dynl2 run is checked afterwards: each arm has exactly its trials, all COMPLETE, each with
its epoch rows, no duplicate trial number; so is each Optuna run's trial count. Exits 1 if a
check fails. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import platform
import queue
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import store_scale  # bench/, beside this file

SAMPLERS = ("random", "tpe")
BACKENDS = ("sqlite", "postgresql")


# --------------------------------------------------------------------------------------------
# The anchor: Optuna's own loop on the same studies.


def _curve(seed: int, epoch: int) -> float:
    """The fake validation accuracy at ``epoch`` of a trial (what _simulated reports too)."""
    top = 0.80 + 0.17 * ((seed * 2654435761) % 1000) / 1000
    return min(1.0, 0.1 + (top - 0.1) * (1 - math.exp(-epoch / 4)))


def _objective(arm: str, epochs: int) -> Any:
    import optuna

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-3, 3e-2, log=True)
        if arm == "dynamic":
            trial.suggest_float("alpha", 1e-4, 1.0, log=True)
            trial.suggest_float("floor", 1e-8, 1e-2, log=True)
        else:
            trial.suggest_float("lam", 1e-6, 1e-1, log=True)
        value = 0.0
        for epoch in range(1, epochs + 1):
            value = _curve(trial.number, epoch)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned
        return value

    return objective


def optuna_main(
    url: str,
    names: dict[str, str],
    shares: dict[str, int],
    sampler: str,
    epochs: int,
    index: int,
    start: Any,
    results: Any,
) -> None:
    """Spawned child: Optuna's ``study.optimize`` of its share of each arm's trials."""
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.RDBStorage(url)
        studies = {}
        for arm, name in names.items():
            chosen = (
                optuna.samplers.TPESampler(seed=index)
                if sampler == "tpe"
                else optuna.samplers.RandomSampler(seed=index)
            )
            studies[arm] = optuna.load_study(
                study_name=name, storage=storage, sampler=chosen, pruner=optuna.pruners.NopPruner()
            )
        results.put(("ready", index))
        start.wait()
        for arm, study in studies.items():
            study.optimize(_objective(arm, epochs), n_trials=shares[arm])
        results.put(("done", index, time.monotonic()))
    except BaseException as exc:  # reported, then the parent fails the run
        results.put(("error", index, f"{type(exc).__name__}: {exc}"))
        raise


@dataclass
class Result:
    system: str  # "dynl2" or "optuna"
    backend: str
    sampler: str
    workers: int
    trials: int
    wall_s: float = math.nan
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.trials / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def ms_per_trial(self) -> float:
        return 1e3 * self.wall_s * self.workers / self.trials


def run_optuna(url: str, sampler: str, workers: int, args: argparse.Namespace) -> Result:
    import optuna

    trials = 2 * (args.trials // 2)
    result = Result("optuna", "", sampler, workers, trials)
    names = {arm: f"anchor-{arm}" for arm in store_scale.ARMS}
    for name in names.values():
        optuna.create_study(study_name=name, storage=url, direction="maximize")
    per_arm = trials // 2
    split = store_scale.split(per_arm, workers)
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(
            target=optuna_main,
            args=(
                url,
                names,
                dict.fromkeys(names, split[i]),
                sampler,
                args.epochs,
                i,
                start,
                results,
            ),
        )
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    ready, t0, ends = 0, math.nan, []
    deadline = time.monotonic() + args.timeout
    try:
        while len(ends) < workers:
            if time.monotonic() > deadline:
                result.problems.append(f"optuna: timed out after {args.timeout:.0f} s")
                break
            try:
                message = results.get(timeout=0.5)
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    result.problems.append("optuna: a process died")
                    break
                continue
            if message[0] == "ready":
                ready += 1
                if ready == workers:
                    t0 = time.monotonic()
                    start.set()
            elif message[0] == "done":
                ends.append(message[2])
            else:
                result.problems.append(f"optuna: {message[2]}")
                break
    finally:
        start.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()
                p.join()
    if len(ends) == workers:
        result.wall_s = max(ends) - t0
    storage = optuna.storages.RDBStorage(url)
    for arm, name in names.items():
        states = [t.state for t in optuna.load_study(study_name=name, storage=storage).trials]
        done = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
        if done != per_arm or len(states) != per_arm:
            result.problems.append(f"optuna {arm}: {done} COMPLETE of {per_arm}")
    storage.remove_session()
    storage.engine.dispose()
    return result


# --------------------------------------------------------------------------------------------
# dynl2's loop: bench/store_scale.py's simulated workers, one per process.


class _NoMonitor:
    """store_scale.run_workers' connection monitor, with nothing to watch."""

    pg = None

    def __init__(self) -> None:
        import threading

        self.stop = threading.Event()
        self.peak: dict[str, int] = {}

    def start(self) -> None:
        pass

    def is_alive(self) -> bool:
        return False


def run_dynl2(
    url: str, sampler: str, workers: int, args: argparse.Namespace, folder: Path
) -> Result:
    per_arm = args.trials // 2
    raw = store_scale.experiment_dict(
        f"loop-{uuid.uuid4().hex[:6]}", per_arm, args.epochs, store_scale.ARMS
    )
    raw["search"]["sampler"] = sampler
    from study.config.experiment import parse_experiment

    config = parse_experiment(raw)
    store_scale.create_experiment(url, config)
    run = store_scale.Run("sqlite", workers, workers, 1, 2 * per_arm)
    scale_args = argparse.Namespace(
        batch=args.batch, epoch_seconds=0.0, timeout=args.timeout, logs=None
    )
    store_scale.run_workers(run, url, config, scale_args, folder, _NoMonitor())
    result = Result("dynl2", "", sampler, workers, 2 * per_arm, run.busy_s, list(run.problems))
    if not run.problems:
        result.problems += store_scale.check_exact(url, config, 0, args.epochs)
    return result


# --------------------------------------------------------------------------------------------
# Whole commands, start-up included.

NEARLY_FREE = """
[experiment]
name = "loop-whole"
seed = 0
[data]
dataset = "digits"
[model]
kind = "mlp"
hidden = [16]
[train]
optimizer = "adam"
lr = {{ low = 1e-3, high = 3e-2, log = true }}
epochs = 2
batch_size = 100
device = "cpu"
[search]
n_trials = {per_arm}
sampler = "random"
pruner = "none"
metric = "val_acc"
[arms.dynamic]
scheme = "dynamic"
alpha = {{ low = 1e-4, high = 1.0, log = true }}
floor = {{ low = 1e-8, high = 1e-2, log = true }}
[arms.fixed]
scheme = "fixed"
lam = {{ low = 1e-6, high = 1e-1, log = true }}
[evaluate]
seeds = 1
"""

OPTUNA_SCRIPT = """
import os, sys, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, n = os.environ["DYNL2_STORAGE"], int(sys.argv[1])
for arm in ("dynamic", "fixed"):
    study = optuna.create_study(study_name=arm, storage=url, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    def objective(trial):
        trial.suggest_float("lr", 1e-3, 3e-2, log=True)
        for p in (("alpha", "floor") if arm == "dynamic" else ("lam",)):
            trial.suggest_float(p, 1e-8, 1.0, log=True)
        for epoch in (1, 2):
            trial.report(0.5, epoch)
        return 0.5
    study.optimize(objective, n_trials=n)
"""


def run_whole(backend: str, url: str, args: argparse.Namespace, folder: Path) -> Result:
    """``dynl2 run`` of nearly free trials (digits, evaluation and report included), timed as
    a process."""
    per_arm = args.trials // 2
    config = folder / f"whole-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(NEARLY_FREE.format(per_arm=per_arm))
    env = {**os.environ, "DYNL2_THREADS": "1", "DYNL2_STORAGE": url}  # never on a command line
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "study", "run", str(config), "--quiet"],
        cwd=folder, env=env, capture_output=True, text=True, timeout=args.timeout,
    )  # fmt: skip
    whole = Result("dynl2 run", backend, "random", 1, 2 * per_arm, time.monotonic() - t0)
    if proc.returncode != 0:
        whole.problems.append(f"dynl2 run exited {proc.returncode}: {proc.stderr[-300:]}")
    return whole


def run_whole_optuna(backend: str, url: str, args: argparse.Namespace) -> Result:
    """A process that imports Optuna and runs ``study.optimize`` of as many instant trials."""
    per_arm = args.trials // 2
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", OPTUNA_SCRIPT, str(per_arm)],
        env={**os.environ, "DYNL2_STORAGE": url}, capture_output=True, text=True,
        timeout=args.timeout,
    )  # fmt: skip
    result = Result("optuna script", backend, "random", 1, 2 * per_arm, time.monotonic() - t0)
    if proc.returncode != 0:
        result.problems.append(f"optuna script exited {proc.returncode}: {proc.stderr[-300:]}")
    return result


# --------------------------------------------------------------------------------------------
# The command.


def _median(values: list[float]) -> float:
    good = [v for v in values if not math.isnan(v)]
    return statistics.median(good) if good else math.nan


def print_table(results: list[Result]) -> None:
    print(
        f"{'backend':<11}{'sampler':<8}{'workers':>8}{'trials':>7}"
        f"{'dynl2 trials/s':>16}{'optuna trials/s':>17}"
        f"{'dynl2 ms/trial':>16}{'optuna ms/trial':>17}{'ratio':>7}"
    )
    keys = sorted(
        {(r.backend, r.sampler, r.workers) for r in results if r.system in ("dynl2", "optuna")},
        key=lambda k: (BACKENDS.index(k[0]), SAMPLERS.index(k[1]), k[2]),
    )
    for backend, sampler, workers in keys:
        mine = {
            system: [
                r
                for r in results
                if (r.system, r.backend, r.sampler, r.workers)
                == (system, backend, sampler, workers)
            ]
            for system in ("dynl2", "optuna")
        }
        rate = {s: _median([r.rate for r in rs]) for s, rs in mine.items()}
        ms = {s: _median([r.ms_per_trial for r in rs]) for s, rs in mine.items()}
        print(
            f"{backend:<11}{sampler:<8}{workers:>8}{mine['dynl2'][0].trials:>7}"
            f"{rate['dynl2']:>16.1f}{rate['optuna']:>17.1f}"
            f"{ms['dynl2']:>16.2f}{ms['optuna']:>17.2f}{ms['dynl2'] / ms['optuna']:>7.2f}"
        )
    whole = [r for r in results if r.system in ("dynl2 run", "optuna script")]
    for backend in BACKENDS:
        run = [r.wall_s for r in whole if r.system == "dynl2 run" and r.backend == backend]
        script = [r.wall_s for r in whole if r.system == "optuna script" and r.backend == backend]
        if run and script:
            a, b = _median(run), _median(script)
            print(
                f"whole commands, {backend}, {whole[0].trials} random trials: dynl2 run "
                f"{a:.1f} s (evaluation and report included), Optuna's script {b:.1f} s, "
                f"ratio {a / b:.2f}"
            )


def _csv(allowed: tuple[str, ...] | None, kind: type = str) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list: {text!r}"
            ) from None
        if not values or (allowed and any(v not in allowed for v in values)):
            raise argparse.ArgumentTypeError(f"allowed: {', '.join(allowed or ())}; got {text!r}")
        if kind is int and any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"worker counts must be >= 1: {text!r}")
        return list(dict.fromkeys(values))

    return parse


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="trials, both arms together")
    parser.add_argument("--epochs", type=int, default=5, help="epochs each fake trial reports")
    parser.add_argument("--samplers", type=_csv(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument("--workers", type=_csv(None, int), default=[1, 4])
    parser.add_argument("--backends", type=_csv(BACKENDS), default=list(BACKENDS))
    parser.add_argument("--batch", type=int, default=None, help="dynl2's group size")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--whole", action="store_true", help="also time whole commands")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("DYNL2_TEST_POSTGRES_URL") or store_scale.DEFAULT_POSTGRES_URL,
    )
    args = parser.parse_args()
    if args.trials < 2 or args.epochs < 1 or args.repeats < 1:
        parser.error("--trials must be >= 2, --epochs and --repeats >= 1")
    backends = list(args.backends)
    pg = store_scale.server_version(args.postgres_url) if "postgresql" in backends else None
    if "postgresql" in backends and pg is None:
        print("note: skipping PostgreSQL: no server answers", file=sys.stderr)
        backends.remove("postgresql")
    import optuna
    import sqlalchemy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"dynl2 study loop vs Optuna's study.optimize: {args.trials} fake trials (2 arms), "
        f"{args.epochs} epochs reported each, no training, pruner none | optuna "
        f"{optuna.__version__} | sqlalchemy {sqlalchemy.__version__} | PostgreSQL {pg} | "
        f"Python {platform.python_version()} | {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} cores | {time.strftime('%Y-%m-%d %H:%M')} | {args.repeats} "
        "repeat(s), systems interleaved | clock: all processes ready to the last trial told"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="dynl2-loop-") as tmp:
        folder = Path(tmp)
        for _ in range(args.repeats):
            for backend in backends:
                for sampler in args.samplers:
                    for workers in args.workers:
                        for system in ("dynl2", "optuna"):
                            with store_scale.scratch_database(
                                backend, args.postgres_url, folder, None
                            ) as (url, _, _):
                                if system == "dynl2":
                                    got = run_dynl2(url, sampler, workers, args, folder)
                                else:
                                    got = run_optuna(url, sampler, workers, args)
                            got.backend = backend
                            results.append(got)
                            print(
                                f"  {system} {backend} {sampler} x{workers}: "
                                f"{got.wall_s:.2f} s {'FAILED' if got.problems else 'ok'}",
                                file=sys.stderr,
                                flush=True,
                            )
                if args.whole:
                    with store_scale.scratch_database(
                        backend, args.postgres_url, folder, None
                    ) as (url, _, _):
                        results.append(run_whole(backend, url, args, folder))
                    with store_scale.scratch_database(
                        backend, args.postgres_url, folder, None
                    ) as (url, _, _):
                        results.append(run_whole_optuna(backend, url, args))
    print_table(results)
    failed = [r for r in results if r.problems]
    for r in failed:
        for problem in r.problems:
            print(f"CHECK FAILED {r.system} {r.backend} {r.sampler} x{r.workers}: {problem}")
    if failed:
        return 1
    print("checks passed: every run has exactly its trials, all COMPLETE")
    return 0


if __name__ == "__main__":
    sys.exit(main())
