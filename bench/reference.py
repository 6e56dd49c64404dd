"""The MNIST-1D reference, run by hand: MLP 40-100-100-10, Adam lr 1e-2, batch 100, 150 epochs.

    python bench/reference.py [--seeds 3] [--epochs 150] [--device auto]
        [--lams 1e-4,1e-3,1e-2] [--alphas 1e-3,1e-2,1e-1]

Trains no regularization, each fixed λ and each dynamic α over the same seeds. The λ and α
reported as "helping" are chosen by mean *validation* accuracy (never by test); the table prints
test accuracy mean ± sample standard deviation, and the time per epoch. The MNIST-1D paper's
table gives 68% test accuracy for this MLP without regularization.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainers import (
    DynamicScheme,
    FixedScheme,
    NoneScheme,
    Scheme,
    TrainConfig,
    flush_denormals,
    load_dataset,
    resolve_device,
    train,
)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main() -> None:
    flush_denormals()  # as dynl2's CLI does, before the first torch op
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--lams", type=_floats, default=[1e-4, 1e-3, 1e-2])
    parser.add_argument("--alphas", type=_floats, default=[1e-3, 1e-2, 1e-1])
    args = parser.parse_args()
    device = resolve_device(args.device)
    base = TrainConfig(epochs=args.epochs, device=str(device))
    data = load_dataset(base.data, device)
    arms: list[tuple[str, Scheme]] = [("none", NoneScheme())]
    arms += [(f"fixed lam={lam:g}", FixedScheme(lam=lam)) for lam in args.lams]
    arms += [(f"dynamic alpha={a:g}", DynamicScheme(alpha=a)) for a in args.alphas]
    print(
        f"MNIST-1D MLP 40-100-100-10, Adam lr 1e-2, batch 100, {args.epochs} epochs, "
        f"{args.seeds} seeds | device {device} | torch {torch.__version__}"
    )
    print(f"{'arm':<22}{'val acc':>16}{'test acc':>16}{'s/epoch':>10}")
    rows = {}
    started = time.perf_counter()
    for label, scheme in arms:
        val, test, per_epoch = [], [], []
        for seed in range(args.seeds):
            r = train(base.with_(scheme=scheme, seed=seed), data=data)
            val.append(100 * (r.history[-1].val_acc or 0.0))
            test.append(100 * (r.test_acc or 0.0))
            per_epoch.append(statistics.median(h.seconds for h in r.history))
        rows[label] = (statistics.mean(val), statistics.mean(test))
        sd = statistics.stdev(test) if len(test) > 1 else 0.0
        vsd = statistics.stdev(val) if len(val) > 1 else 0.0
        print(
            f"{label:<22}{statistics.mean(val):>9.2f} ± {vsd:<4.2f}"
            f"{statistics.mean(test):>9.2f} ± {sd:<4.2f}{statistics.median(per_epoch):>10.4f}",
            flush=True,
        )
    for prefix in ("fixed", "dynamic"):
        best = max((k for k in rows if k.startswith(prefix)), key=lambda k: rows[k][0])
        print(f"best {prefix} by validation: {best} -> test {rows[best][1]:.2f}%")
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
