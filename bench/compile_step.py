"""Would ``torch.compile`` pay for the fused step? Compile time against step time; run by hand.

    python bench/compile_step.py [--k 32] [--epochs 10] [--device auto]

A fused group of K MNIST-1D MLPs (40-100-100-10, Adam, fixed L2, batch 100, one shared batch
order), trained by :class:`trainers.fused.FusedTrainer` three ways in one process:

1. eager: the engine as it is (the hand-written losses and gradients of
   :mod:`trainers.stacked_mlp`, torch's fused Adam);
2. compiled: the same losses-and-gradients function through ``torch.compile`` (Inductor;
   on a CPU it generates fused C++ loops for the elementwise work around the batched
   products), shapes static;
3. compiled, ``dynamic=True``: what members leaving a group (a stack that shrinks) would need
   to avoid one compilation per group size;
4. on a CUDA device only, compiled with ``mode="reduce-overhead"``: the step replayed as a
   CUDA graph, which saves the launch of each of its small kernels.

Prints, per way: the first epoch's seconds (compilation included), the median step
afterwards, and the steps a study must run before the compile has paid for itself. For scale:
a study of 128 trials x 20 epochs at K = 32 runs 2400 steps. Where compilation is unavailable
(no C++ compiler, say) the way prints the error and the others still run.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import (
    TrainConfig,
    flush_denormals,
    keep_freed_memory,
    load_dataset,
    resolve_device,
    stacked,
    stacked_mlp,
)
from trainers.fused import FusedTrainer


def group_configs(k: int, device: str) -> list[TrainConfig]:
    """K MNIST-1D MLP members, learning rate and λ spread over their ranges (also used by
    ``bench/step_profile.py``)."""

    def config(i: int) -> TrainConfig:
        lr = math.exp(math.log(1e-3) + (math.log(3e-2) - math.log(1e-3)) * (i % 17) / 16)
        lam = math.exp(math.log(1e-6) + (math.log(1e-1) - math.log(1e-6)) * (i % 13) / 12)
        return TrainConfig.from_dict(
            {
                "data": {"dataset": "mnist1d"},
                "model": {"kind": "mlp", "hidden": [100, 100]},
                "scheme": {"scheme": "fixed", "lam": lam},
                "optimizer": "adam",
                "lr": lr,
                "epochs": 20,
                "batch_size": 100,
                "seed": i,
                "device": device,
            }
        )

    return [config(i) for i in range(k)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    name: str,
    grads: Callable[..., object] | None,
    k: int,
    epochs: int,
    device: torch.device,
) -> tuple[float, float] | None:
    """(first epoch's seconds, median step seconds after it), or None when it failed."""
    if grads is not None:
        stacked.losses_and_grads = grads  # type: ignore[assignment]  # what the stack calls
    try:
        configs = group_configs(k, str(device))
        data = load_dataset(configs[0].data, device)
        trainer = FusedTrainer(configs, data, device)
        n = len(data.x_train)
        generator = torch.Generator(device=device)
        generator.manual_seed(0)
        steps = -(-n // 100)
        seconds = []
        for _ in range(epochs + 1):
            order = torch.randperm(n, device=device, generator=generator)
            started = time.perf_counter()
            trainer.train_epoch(order, 100)
            _sync(device)
            seconds.append(time.perf_counter() - started)
    except Exception as exc:  # a way that cannot compile is a finding, not a crash
        print(f"  {name:<28} unavailable: {type(exc).__name__}: {str(exc).splitlines()[0]}")
        return None
    finally:
        stacked.losses_and_grads = stacked_mlp.losses_and_grads
    return seconds[0], statistics.median(seconds[1:]) / steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    flush_denormals()
    keep_freed_memory()
    device = resolve_device(args.device)
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"K = {args.k}, {args.epochs} timed epochs of 30 steps"
    )
    original = stacked_mlp.losses_and_grads
    ways: list[tuple[str, Callable[..., object] | None]] = [
        ("eager", None),
        ("compiled", torch.compile(original, dynamic=False)),
        ("compiled, dynamic=True", torch.compile(original, dynamic=True)),
    ]
    if device.type == "cuda":  # CUDA graphs: fixed shapes, replayed without a launch a kernel
        ways.append(("compiled, reduce-overhead", torch.compile(original, mode="reduce-overhead")))
    results = {}
    for name, grads in ways:
        torch._dynamo.reset()
        outcome = measure(name, grads, args.k, args.epochs, device)
        if outcome is not None:
            results[name] = outcome
    eager = results.get("eager")
    for name, (first, step) in results.items():
        line = f"  {name:<28} first epoch {first:7.2f} s   step {1e3 * step:6.3f} ms"
        if eager is not None and name != "eager":
            saved = eager[1] - step
            extra = first - eager[0]
            line += f"   x{eager[1] / step:4.2f} eager"
            line += f"   pays after {extra / saved:,.0f} steps" if saved > 0 else "   never pays"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
