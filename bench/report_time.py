"""Time to build and render a large report, run by hand.

    python bench/report_time.py [--trials 500] [--repeats 5]

A synthetic experiment (3 arms × N trials, 150 epochs on each arm's best trial, 10 evaluation
seeds) in a temporary SQLite store; prints the median and spread of ``build_report_data`` and
``render_html`` and the page size, with the cost of building a report of a 40-trial experiment
measured in the same run as the baseline (the ratio shows how the cost grows with trials).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna

import reports
import storage
from tests.reports import synthetic as syn


def make(store: storage.Store, name: str, trials: int) -> None:
    cfg = syn.create(store, name, n_trials=trials)
    for i, arm in enumerate(("dynamic", "fixed", "none")):
        syn.add_trials(store, cfg, arm, [0.9 - 0.001 * i], epochs=150, seed=i)
        syn.add_trials(store, cfg, arm, [0.5 + 0.3 * k / trials for k in range(trials - 1)],
                       seed=10 + i)  # fmt: skip
        syn.add_evaluations(store, name, arm, [0.85 + 0.001 * k for k in range(10)])


def timed(store: storage.Store, name: str, repeats: int) -> tuple[list[float], list[float], int]:
    build, render, size = [], [], 0
    spec = syn.spec(store, name)  # what the study layer parses once and hands the report
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = reports.build_report_data(store, spec)
        t1 = time.perf_counter()
        html = reports.render_html(data)
        t2 = time.perf_counter()
        build.append(t1 - t0)
        render.append(t2 - t1)
        size = len(html.encode())
    return build, render, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, storage.open(f"sqlite:///{tmp}/r.db") as store:
        make(store, "baseline", 40)
        make(store, "big", args.trials)
        print(
            f"dynl2 report time: 3 arms | {platform.processor() or platform.machine()} | "
            f"Python {platform.python_version()} | {args.repeats} repeats"
        )
        print(f"{'experiment':<12}{'trials/arm':>11}{'build s':>10}{'render s':>10}"
              f"{'total s':>10}{'MB':>7}")  # fmt: skip
        totals = {}
        for name, n in (("baseline", 40), ("big", args.trials)):
            build, render, size = timed(store, name, args.repeats)
            total = [b + r for b, r in zip(build, render, strict=True)]
            totals[name] = statistics.median(total)
            print(
                f"{name:<12}{n:>11}{statistics.median(build):>10.2f}"
                f"{statistics.median(render):>10.2f}{totals[name]:>10.2f}{size / 1e6:>7.1f}"
                f"   (total min {min(total):.2f}, max {max(total):.2f})"
            )
        print(f"ratio big / baseline: {totals['big'] / totals['baseline']:.2f}")


if __name__ == "__main__":
    main()
