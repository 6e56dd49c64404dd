"""Two checkouts of dynl2 side by side, in one run: the fused engine's trials per minute at
each K, and ``dynl2 run`` end to end; run by hand, never by CI.

    git worktree add /tmp/before <commit>
    python bench/engine_ab.py --before /tmp/before [--ks 1,8,32,128] [--repeats 3]
                              [--trials 128] [--epochs 20] [--skip-run]

Each measurement runs in a fresh process with ``PYTHONPATH`` set to one checkout, the two
checkouts alternating repeat by repeat (before, after, before, after, ...) so that a machine
whose speed drifts slows both alike. The engine: ``--trials`` MNIST-1D MLP trials (40-100-100-10,
Adam, fixed L2, batch 100, ``--epochs`` epochs, learning rates and λ spread over their
ranges) trained in groups of K with ``trainers.train_fused``, no study, so only the engine is
timed; the data is loaded once before the clock starts. ``dynl2 run``: the same budget as one
arm with the learning rate and λ searched by random search on a fresh SQLite store, one
worker, the default group size and ``--batch 1``, evaluation (3 seeds) and report included,
process start included. Prints the median and range of each, and after / before.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ENGINE = """
import sys, time, math
import torch
from trainers import (TrainConfig, flush_denormals, keep_freed_memory, load_dataset,
                      resolve_device, train_fused)
import os, trainers
assert os.path.realpath(trainers.__file__).startswith(sys.argv[4]), trainers.__file__
flush_denormals(); keep_freed_memory()
k, trials, epochs = (int(a) for a in sys.argv[1:4])
def config(i):
    lr = math.exp(math.log(1e-3) + (math.log(3e-2) - math.log(1e-3)) * (i % 17) / 16)
    lam = math.exp(math.log(1e-6) + (math.log(1e-1) - math.log(1e-6)) * (i % 13) / 12)
    return TrainConfig.from_dict({
        "data": {"dataset": "mnist1d"}, "model": {"kind": "mlp", "hidden": [100, 100]},
        "scheme": {"scheme": "fixed", "lam": lam}, "optimizer": "adam", "lr": lr,
        "epochs": epochs, "batch_size": 100, "seed": i, "device": "cpu"})
configs = [config(i) for i in range(trials)]
data = load_dataset(configs[0].data, resolve_device("cpu"))
train_fused(configs[:k], data=data)  # warm up: first-call costs are not the engine's
started = time.perf_counter()
for g in range(0, trials, k):
    train_fused(configs[g:g + k], data=data)
print(time.perf_counter() - started)
"""

RUN_TOML = """
[experiment]
name = "ab"
seed = 0
[data]
dataset = "mnist1d"
[model]
kind = "mlp"
hidden = [100, 100]
[train]
optimizer = "adam"
lr = {{ low = 1e-3, high = 3e-2, log = true }}
epochs = {epochs}
batch_size = 100
device = "cpu"
[search]
n_trials = {trials}
sampler = "random"
pruner = "none"
[arms.fixed]
scheme = "fixed"
lam = {{ low = 1e-6, high = 1e-1, log = true }}
[evaluate]
seeds = 3
"""


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree)}


def engine_seconds(tree: Path, k: int, trials: int, epochs: int) -> float:
    # from a neutral folder: ``python -c`` puts the working folder first on sys.path, which
    # would import whichever checkout this is run from instead of ``tree``
    out = subprocess.run(
        [sys.executable, "-c", ENGINE, str(k), str(trials), str(epochs), os.path.realpath(tree)],
        env=_env(tree), cwd=tempfile.gettempdir(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def run_seconds(tree: Path, trials: int, epochs: int, batch: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "ab.toml"
        config.write_text(RUN_TOML.format(trials=trials, epochs=epochs))
        command = [sys.executable, "-m", "study", "run", str(config), "--quiet"]
        command += ["--storage", f"sqlite:///{tmp}/ab.db"]
        if batch is not None:
            command += ["--batch", str(batch)]
        started = time.perf_counter()
        subprocess.run(command, env=_env(tree), cwd=tmp, check=True, capture_output=True)
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--ks", default="1,8,32,128")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--skip-run", action="store_true", help="the engine only")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        commit = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        print(f"{name}: {tree} (HEAD {commit or '?'})")
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"python {platform.python_version()}, {args.repeats} repeats alternated, "
        f"{args.trials} trials x {args.epochs} epochs"
    )
    rows: list[tuple[str, str, float]] = []  # (what, tree, trials per minute)
    ks = [int(k) for k in args.ks.split(",") if k]  # --ks "": dynl2 run only
    runs: list[tuple[str, int | None]] = [] if args.skip_run else [("run", None), ("run", 1)]
    for _ in range(args.repeats):
        for name, tree in trees.items():
            for k in ks:
                seconds = engine_seconds(tree, k, args.trials, args.epochs)
                rows.append((f"engine K={k}", name, 60 * args.trials / seconds))
            for _, batch in runs:
                seconds = run_seconds(tree, args.trials, args.epochs, batch)
                what = "dynl2 run" + ("" if batch is None else f" --batch {batch}")
                rows.append((what, name, 60 * args.trials / seconds))
    print("\n| what | before trials/min | after trials/min | after / before |")
    print("| --- | --- | --- | --- |")
    for what in dict.fromkeys(w for w, _, _ in rows):
        cells = []
        medians = {}
        for name in trees:
            values = [v for w, n, v in rows if w == what and n == name]
            medians[name] = statistics.median(values)
            cells.append(f"{medians[name]:.1f} ({min(values):.1f}-{max(values):.1f})")
        print(f"| {what} | {cells[0]} | {cells[1]} | {medians['after'] / medians['before']:.2f} |")


if __name__ == "__main__":
    main()
