"""Time per training step of the MNIST-1D MLP (40-100-100-10, Adam, batch 100), run by hand.

    python bench/step_time.py [--repeats 15] [--epochs-per-repeat 10] [--device cpu]

Measures, in one process and one run, with the variants interleaved repeat by repeat:
  * dynl2's loop with scheme none, fixed (lam 1e-4) and dynamic (alpha 0.01);
  * the same model and optimizer fed through torch.utils.data.DataLoader, the way Optuna's
    PyTorch example trains (weight decay through torch.optim.Adam's weight_decay).
Prints the median and spread per step, and the ratios dynamic ÷ fixed, fixed ÷ none and
DataLoader ÷ dynl2 fixed. Not part of the test suite: timings are never asserted.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import (
    DynamicScheme,
    FixedScheme,
    Mnist1dData,
    NoneScheme,
    TrainConfig,
    Trainer,
    flush_denormals,
    load_dataset,
    resolve_device,
)
from trainers.loop import data_loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dynl2_variant(config: TrainConfig, device: torch.device) -> tuple[Callable[[], None], int]:
    data = load_dataset(config.data, device)
    trainer = Trainer(config, data, device)
    n = len(data.x_train)
    gen = torch.Generator(device=device)
    gen.manual_seed(0)

    def epoch() -> None:
        order = torch.randperm(n, device=device, generator=gen)
        trainer.train_epoch(order, config.batch_size)

    return epoch, -(-n // config.batch_size)


def dataloader_variant(
    config: TrainConfig, device: torch.device
) -> tuple[Callable[[], None], int]:
    """One epoch the way Optuna's PyTorch example trains: DataLoader, optim weight decay."""
    data = load_dataset(config.data, device)
    x, y = data.x_train.cpu(), data.y_train.cpu()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, y), batch_size=config.batch_size, shuffle=True
    )
    trainer = Trainer(config.with_(scheme=NoneScheme()), data, device)
    model = trainer.model
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=1e-4)

    def epoch() -> None:
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            opt.zero_grad()
            loss = data_loss(model(xb), yb, True)
            loss.backward()
            opt.step()

    return epoch, len(loader)


def main() -> None:
    flush_denormals()  # as dynl2's CLI does, before the first torch op
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs-per-repeat", type=int, default=10)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    base = TrainConfig(data=Mnist1dData(), optimizer="adam", lr=1e-2, batch_size=100)
    variants = {
        "none": dynl2_variant(base.with_(scheme=NoneScheme()), device),
        "fixed": dynl2_variant(base.with_(scheme=FixedScheme(lam=1e-4)), device),
        "dynamic": dynl2_variant(base.with_(scheme=DynamicScheme(alpha=1e-2)), device),
        "dataloader": dataloader_variant(base, device),
    }
    for run, _ in variants.values():  # warm-up: allocator, kernels, lazy init
        for _ in range(3):
            run()
    _sync(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (run, steps) in variants.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.epochs_per_repeat):
                run()
            _sync(device)
            times[name].append((time.perf_counter() - t0) / (steps * args.epochs_per_repeat))
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(
        f"dynl2 step time: MNIST-1D MLP 40-100-100-10, Adam, batch 100 | device {device} | "
        f"torch {torch.__version__} | {platform.processor() or platform.machine()} | "
        f"threads {torch.get_num_threads()} | {args.repeats} repeats x "
        f"{args.epochs_per_repeat} epochs (30 steps each), interleaved"
    )
    print(f"{'variant':<12}{'median us/step':>16}{'min':>10}{'max':>10}")
    for name, ts in times.items():
        print(f"{name:<12}{1e6 * med[name]:>16.1f}{1e6 * min(ts):>10.1f}{1e6 * max(ts):>10.1f}")
    print(f"ratio dynamic / fixed        {med['dynamic'] / med['fixed']:.3f}  (target <= 1.05)")
    print(f"ratio fixed / none           {med['fixed'] / med['none']:.3f}")
    print(f"ratio dataloader / dynl2 fixed {med['dataloader'] / med['fixed']:.2f}")


if __name__ == "__main__":
    main()
