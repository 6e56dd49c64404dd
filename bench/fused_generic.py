"""Trials per minute of the fused engine's generic path (any model, ``torch.func``) against the
hand-written one and against training one trial at a time; run by hand, never by CI.

    DYNL2_THREADS=1 python bench/fused_generic.py [--trials 64] [--epochs 10] [--repeats 3]
                                                  [--slow-trials 16] [--cnn-trials 32]

(about 80 s with one thread on this project's 2-core CPU)

Two budgets, each trained several ways in one process, repeat by repeat, interleaved:

1. the MNIST-1D MLP (40-100-100-10, Adam, fixed L2 with λ and the learning rate spread over
   their ranges, batch 100, ``--epochs`` epochs, a shared batch order), ``--trials`` trials:
   (a) fused, the built-in ``MLPModel`` (the hand-written stacked MLP,
   :mod:`trainers.stacked_mlp`);
   (b) fused, the same network as a ``FactoryModel`` (:func:`mlp` below, which builds exactly
   the built-in's ``nn.Sequential``), through ``FuncStackedModel``: vmap + functional_call +
   autograd; (c) unfused, ``trainers.train`` one trial after another (``--slow-trials`` of
   them, the rate per minute of those);
2. the batch-norm CNN of ``examples/own/models.py`` (``bn_cnn``, 8 channels, dropout 0.1) on
   scikit-learn's digits as 8x8 images, ``--cnn-trials`` trials: fused (one group) against
   unfused one by one (``--slow-trials`` of them).

A fused way trains all its trials as one group. Every way is warmed up once first (the first
call's costs are not the engine's), and the data is on the device before the clock starts.
Threads: ``$DYNL2_THREADS`` (default 1), as a worker process takes them. Prints the device,
torch version and threads, each way's median trials/min with its range, and each median's
ratio to the unfused way measured in this same run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainers import (  # noqa: E402
    Dataset,
    DigitsData,
    FixedScheme,
    MLPModel,
    Mnist1dData,
    TrainConfig,
    flush_denormals,
    keep_freed_memory,
    load_dataset,
    train,
    train_fused,
)
from trainers.models import FactoryModel  # noqa: E402

HIDDEN = (100, 100)


def mlp(in_shape: Sequence[int], n_outputs: int, hidden: Sequence[int] = HIDDEN) -> nn.Module:
    """The built-in MLP's network, layer for layer: the same weights for the same seed."""
    layers: list[nn.Module] = []
    width = math.prod(in_shape)
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_outputs))
    return nn.Sequential(*layers)


def _configs(base: TrainConfig, trials: int) -> list[TrainConfig]:
    """``trials`` configs spread over the learning rate and λ ranges, one shared order."""
    configs = []
    for i in range(trials):
        lr = math.exp(math.log(1e-3) + (math.log(3e-2) - math.log(1e-3)) * (i % 17) / 16)
        lam = math.exp(math.log(1e-6) + (math.log(1e-1) - math.log(1e-6)) * (i % 13) / 12)
        configs.append(base.with_(lr=lr, scheme=FixedScheme(lam=lam), seed=i, order_seed=0))
    return configs


def fused(configs: Sequence[TrainConfig], data: Dataset) -> float:
    started = time.perf_counter()
    train_fused(configs, data=data, shared_order=0)
    return time.perf_counter() - started


def unfused(configs: Sequence[TrainConfig], data: Dataset) -> float:
    started = time.perf_counter()
    for config in configs:
        train(config, data=data)
    return time.perf_counter() - started


Way = tuple[str, int, Callable[[], float]]  # name, trials, run -> seconds
UNFUSED = "(c) unfused, one by one"


def agree(builtin: Sequence[TrainConfig], generic: Sequence[TrainConfig], data: Dataset) -> None:
    """Print how far apart (a) and (b) end, one epoch of a few trials: float rounding only."""
    ones = [[c.with_(epochs=1) for c in group] for group in (builtin, generic)]
    a, b = (train_fused(group, data=data, shared_order=0) for group in ones)
    gap = max(
        abs(x.history[-1].val_loss - y.history[-1].val_loss)  # type: ignore[union-attr]
        for x, y in zip(a, b, strict=True)
    )
    print(f"(a) and (b) after one epoch of {len(a)} trials: val losses differ by <= {gap:.2e}")


def measure(ways: Sequence[Way], repeats: int) -> dict[str, list[float]]:
    """Each way's trials/min, repeat by repeat, the ways interleaved; one warm-up each."""
    for _, _, run in ways:
        run()
    rates: dict[str, list[float]] = {name: [] for name, _, _ in ways}
    for _ in range(repeats):
        for name, trials, run in ways:
            rates[name].append(60.0 * trials / run())
    return rates


def report(title: str, rates: dict[str, list[float]], baseline: str) -> None:
    base = statistics.median(rates[baseline])
    print(f"\n{title}")
    print("| way | trials/min (median) | range | vs unfused |")
    print("| --- | --- | --- | --- |")
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median:.1f} | {min(values):.1f} - {max(values):.1f} "
            f"| {median / base:.2f}x |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=64, help="MLP trials per fused group")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow-trials", type=int, default=16, help="trials of the unfused ways")
    parser.add_argument("--cnn-trials", type=int, default=32, help="BN CNN trials per group")
    args = parser.parse_args()

    flush_denormals()
    keep_freed_memory()
    torch.set_num_threads(int(os.environ.get("DYNL2_THREADS", "1")))
    cpu = torch.device("cpu")
    print(
        f"device cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {args.repeats} repeats, "
        f"{args.epochs} epochs a trial"
    )

    sequences = load_dataset(Mnist1dData(), cpu)
    here = str(Path(__file__).resolve().parent)
    base = TrainConfig(
        data=Mnist1dData(), model=MLPModel(hidden=HIDDEN), optimizer="adam",
        epochs=args.epochs, batch_size=100, device="cpu",
    )  # fmt: skip
    builtin = _configs(base, args.trials)
    generic = [c.with_(model=FactoryModel("fused_generic:mlp", {}, here)) for c in builtin]
    agree(builtin[:4], generic[:4], sequences)
    slow = builtin[: args.slow_trials]
    rates = measure(
        [
            (UNFUSED, len(slow), lambda: unfused(slow, sequences)),
            ("(a) fused, hand-written MLP", args.trials, lambda: fused(builtin, sequences)),
            ("(b) fused, FactoryModel (func)", args.trials, lambda: fused(generic, sequences)),
        ],
        args.repeats,
    )
    report(
        f"MNIST-1D MLP 40-100-100-10, {len(sequences.x_train)} training examples, "
        f"groups of {args.trials}",
        rates,
        UNFUSED,
    )

    digits = load_dataset(DigitsData(), cpu)
    images = dataclasses.replace(
        digits,
        x_train=digits.x_train.reshape(-1, 1, 8, 8),
        x_val=digits.x_val.reshape(-1, 1, 8, 8),
        x_test=digits.x_test.reshape(-1, 1, 8, 8),
    )
    own = str(ROOT / "examples" / "own")
    cnn = FactoryModel("models:bn_cnn", {"channels": 8, "dropout": 0.1}, own)
    cnn_base = base.with_(data=DigitsData(), model=cnn, batch_size=64)
    cnn_configs = _configs(cnn_base, args.cnn_trials)
    cnn_slow = cnn_configs[: args.slow_trials]
    rates = measure(
        [
            (UNFUSED, len(cnn_slow), lambda: unfused(cnn_slow, images)),
            ("fused via torch.func", args.cnn_trials, lambda: fused(cnn_configs, images)),
        ],
        args.repeats,
    )
    report(
        f"BN CNN (bn_cnn, 8 channels) on 8x8 digits, {len(images.x_train)} training examples, "
        f"groups of {args.cnn_trials}",
        rates,
        UNFUSED,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
