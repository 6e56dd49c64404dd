"""Time per fused training step with and without ``keep_freed_memory``; run by hand.

    python bench/freed_memory.py [--k 32] [--epochs 20] [--repeats 5]

Each variant runs in its own fresh process (the malloc setting is process-wide and cannot be
undone), alternating repeat by repeat: K MNIST-1D MLPs (40-100-100-10, Adam, batch 100) trained
as one fused model for ``--epochs`` epochs after 2 warm-up epochs, 2 CPU threads. Prints the
median and spread of milliseconds per step for each, and their ratio measured in this run.
Never run by CI.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import sys, time
import torch
sys.path.insert(0, {root!r})
from trainers import (FixedScheme, MLPModel, Mnist1dData, TrainConfig, flush_denormals,
                      keep_freed_memory, load_dataset)
from trainers.fused import FusedTrainer
flush_denormals()
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(2)
k, epochs = int(sys.argv[2]), int(sys.argv[3])
configs = [
    TrainConfig(data=Mnist1dData(), model=MLPModel(hidden=(100, 100)),
                scheme=FixedScheme(lam=1e-4 * (1 + i)), optimizer="adam",
                lr=1e-3 * (1 + i % 5), epochs=epochs, batch_size=100, seed=i, device="cpu")
    for i in range(k)
]
device = torch.device("cpu")
data = load_dataset(configs[0].data, device)
trainer = FusedTrainer(configs, data, device)
n = len(data.x_train)
order = torch.randperm(n)
for _ in range(2):
    trainer.train_epoch(order, 100)
t0 = time.perf_counter()
for _ in range(epochs):
    trainer.train_epoch(order, 100)
print((time.perf_counter() - t0) / (epochs * -(-n // 100)) * 1000)
"""


def step_ms(mode: str, k: int, epochs: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(root=str(ROOT)), mode, str(k), str(epochs)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"default": [], "keep": []}
    for i in range(args.repeats):
        for mode in times:
            times[mode].append(step_ms(mode, args.k, args.epochs))
        print(f"repeat {i + 1}/{args.repeats}: " + ", ".join(
            f"{mode} {values[-1]:.2f} ms" for mode, values in times.items()
        ))  # fmt: skip
    print(f"\nfused step, K={args.k}, 2 threads (median, min-max over {args.repeats} repeats):")
    med = {mode: statistics.median(values) for mode, values in times.items()}
    for mode, values in times.items():
        print(f"  {mode:<8} {med[mode]:6.2f} ms/step  ({min(values):.2f}-{max(values):.2f})")
    print(f"  keep_freed_memory: x{med['default'] / med['keep']:.2f} faster a step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
