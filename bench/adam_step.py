"""One stacked Adam step, torch's fused kernel against the elementwise ops, run by hand.

    python bench/adam_step.py [--ks 1,8,32,128] [--repeats 7] [--steps 200]

The MNIST-1D MLP's parameters (40-100-100-10) stacked K times, random gradients, both paths of
:class:`trainers.stacked_optim.StackedAdam` timed in one process, alternated repeat by repeat;
prints the median time per step of each and elementwise / fused. Not part of the test suite:
timings are never asserted.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import flush_denormals, keep_freed_memory
from trainers.stacked_optim import StackedAdam

SHAPES = [(40, 100), (100,), (100, 100), (100,), (100, 10), (10,)]


def seconds_per_step(k: int, fused: bool, steps: int) -> float:
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(k, *s, generator=g) for s in SHAPES]
    grads = [torch.randn(k, *s, generator=g) for s in SHAPES]
    opt = StackedAdam(torch.linspace(1e-3, 1e-2, k))
    opt.fused = fused
    for _ in range(5):  # the state, allocated at the first step
        opt.step(params, grads)
    started = time.perf_counter()
    for _ in range(steps):
        opt.step(params, grads)
    return (time.perf_counter() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ks", default="1,8,32,128")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    flush_denormals()
    keep_freed_memory()
    print(
        f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"{args.repeats} repeats alternated, {args.steps} steps each"
    )
    print("| K | elementwise ms/step | fused ms/step | elementwise / fused |")
    print("| --- | --- | --- | --- |")
    for k in (int(x) for x in args.ks.split(",")):
        times: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for fused in (False, True):
                times[fused].append(seconds_per_step(k, fused, args.steps))
        slow, fast = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {k} | {slow * 1e3:.3f} | {fast * 1e3:.3f} | {slow / fast:.2f} |")


if __name__ == "__main__":
    main()
