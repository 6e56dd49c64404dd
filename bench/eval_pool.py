"""``dynl2 evaluate --workers N`` of two checkouts side by side, in one run: wall time and the
CPU the whole machine spent; run by hand, never by CI.

    git worktree add /tmp/before <commit>
    python bench/eval_pool.py --before /tmp/before [--workers 2] [--seeds 16] [--repeats 3]

What changes between the two is how the evaluation's pool processes start (each importing
torch and dynl2 anew, or forked from a server that imported them once), so the figure is the
pool's start-up on top of a small evaluation. Set-up, once: the tiny study of the tests (digits,
a 16-unit MLP, two arms, 2 trials of 20 epochs each) searched and evaluated on its config's 8
seeds by ``dynl2 run --workers 1`` with this checkout. Each measurement then copies that store
and evaluates ``--seeds`` seeds (the seeds past 8: (seeds - 8) x 2 runs) with ``--workers``
pool processes, in a fresh ``python -m study`` with ``PYTHONPATH`` set to one checkout, the
two alternating repeat by repeat. CPU: the machine's busy time from ``/proc/stat`` (user, nice,
system, irq, softirq) from the command's start to a second after it ended (a fork server ends
after its parent; its CPU is not counted in the parent's own rusage), so run it on an otherwise
idle machine. Checks that both evaluations wrote the same test metrics. Prints medians,
ranges, and after / before.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.tiny import tiny_config  # noqa: E402


def _busy_jiffies() -> int:
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return user + nice + system + irq + softirq


def _dynl2(tree: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree), "DYNL2_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "study", *args], cwd=tree, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"dynl2 {args[0]} failed ({done.returncode}): {done.stderr.strip()}")


def _metrics(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as connection:
        return sorted(
            connection.execute("select arm, seed, test_loss, test_acc from dynl2_evaluations")
        )


def measure(
    tree: Path, store: Path, seeds: int, workers: int, scratch: Path
) -> tuple[float, float, list[tuple[object, ...]]]:
    """(wall seconds, CPU seconds of the machine, the evaluation's test metrics)."""
    copy = scratch / "evaluated.db"
    shutil.copy(store, copy)
    tick = os.sysconf("SC_CLK_TCK")
    before = _busy_jiffies()
    started = time.perf_counter()
    _dynl2(tree, "evaluate", "ev", "--seeds", str(seeds), "--workers", str(workers),
           "--storage", f"sqlite:///{copy}")  # fmt: skip
    wall = time.perf_counter() - started
    time.sleep(1.0)  # the fork server ends when its parent has
    cpu = (_busy_jiffies() - before) / tick
    return wall, cpu, _metrics(copy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.seeds <= 8:
        parser.error("--seeds must be above 8, the seeds the set-up run evaluates")
    trees = {"before": args.before.resolve(), "after": ROOT}
    print(
        f"dynl2 evaluate --seeds {args.seeds} --workers {args.workers}: before {trees['before']}"
        f", after {ROOT} | Python {platform.python_version()} | {os.cpu_count()} CPUs | "
        f"{args.repeats} repeats, alternated"
    )
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        config = scratch / "ev.toml"
        config.write_text(tiny_config("ev", epochs=20, n_trials=2, seeds=8,
                                      arms=("dynamic", "fixed")))  # fmt: skip
        store = scratch / "searched.db"
        _dynl2(ROOT, "run", str(config), "--workers", "1", "--quiet", "--storage",
               f"sqlite:///{store}")  # fmt: skip
        metrics: dict[str, list[tuple[object, ...]]] = {}
        for repeat in range(args.repeats):
            for name, tree in trees.items():
                wall, cpu, metrics[name] = measure(tree, store, args.seeds, args.workers, scratch)
                results[name].append((wall, cpu))
                line = f"repeat {repeat + 1} {name}: {wall:.2f} s wall, {cpu:.2f} s CPU"
                print(line, flush=True)
        if metrics["before"] != metrics["after"]:
            raise SystemExit("the two checkouts evaluated different test metrics")
    print("\n| checkout | wall s (median, range) | CPU s (median, range) |\n| --- | --- | --- |")
    medians = {}
    for name, values in results.items():
        walls, cpus = [v[0] for v in values], [v[1] for v in values]
        medians[name] = (statistics.median(walls), statistics.median(cpus))
        print(
            f"| {name} | {medians[name][0]:.2f} ({min(walls):.2f}-{max(walls):.2f}) "
            f"| {medians[name][1]:.2f} ({min(cpus):.2f}-{max(cpus):.2f}) |"
        )
    wall_ratio = medians["after"][0] / medians["before"][0]
    cpu_ratio = medians["after"][1] / medians["before"][1]
    print(f"\nafter / before: wall {wall_ratio:.2f}, CPU {cpu_ratio:.2f}; the same test metrics")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
