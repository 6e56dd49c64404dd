"""Where a fused step's time goes: torch.profiler over a K-member MNIST-1D MLP; run by hand.

    python bench/step_profile.py [--k 32] [--epochs 3] [--rows 15]

K members (40-100-100-10, Adam, fixed L2, learning rate and λ spread over their ranges, batch
100, one shared batch order: ``bench/compile_step.py``'s group) trained by
:class:`trainers.fused.FusedTrainer`: after 3 warm-up epochs, the median step of 10 timed
epochs with its GFLOP/s (the MLP's forward and backward products) and its share of the matmul
peak (a 4096² fp32 ``torch.mm``, best of 5) measured in the same run, then the profiler's
table of ``--epochs`` more epochs, sorted by each op's own time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from compile_step import group_configs  # this folder: the same K members
from throughput import matmul_peak, training_flops  # the same peak and FLOP count

from trainers import flush_denormals, keep_freed_memory, load_dataset
from trainers.fused import FusedTrainer

CPU = torch.device("cpu")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args()
    flush_denormals()
    keep_freed_memory()
    configs = group_configs(args.k, "cpu")
    data = load_dataset(configs[0].data, CPU)
    trainer = FusedTrainer(configs, data, CPU)
    n = len(data.x_train)
    steps = -(-n // 100)
    generator = torch.Generator()
    generator.manual_seed(0)

    def epoch() -> float:
        order = torch.randperm(n, generator=generator)
        started = time.perf_counter()
        trainer.train_epoch(order, 100)
        return (time.perf_counter() - started) / steps

    for _ in range(3):
        epoch()
    step = statistics.median(epoch() for _ in range(10))
    peak = matmul_peak(CPU)
    rate = args.k * training_flops(1, 1, 100, 0, 100) / step / 1e9  # a batch of 100 a member
    print(
        f"K = {args.k}, {torch.get_num_threads()} threads, torch {torch.__version__}: step "
        f"{1e3 * step:.3f} ms (median of 10 epochs), {rate:.1f} GFLOP/s = "
        f"{100 * rate / peak:.1f}% of the matmul peak {peak:.1f} GFLOP/s"
    )
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.epochs):
            epoch()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
