"""Trials per minute of one MNIST-1D MLP study budget, trained three ways; run by hand.

    python bench/throughput.py [--trials 128] [--epochs 20] [--repeats 3] [--slow-trials 16]
                               [--ks 8,32,128] [--device auto] [--skip-run] [--skip-batch-1]

The budget: one arm (fixed L2: λ and the learning rate searched by TPE, seeded), MLP
40-100-100-10, Adam, batch 100, ``--epochs`` epochs a trial with a validation pass after each
(reported to Optuna), no pruning, so every way does the same work. In one process and one run,
repeat by repeat, interleaved:

1. baseline: the way Optuna's PyTorch example trains, one trial at a time: ``DataLoader`` over
   a ``TensorDataset``, ``nn.Sequential``, ``torch.optim.Adam(weight_decay=λ)``, an in-memory
   study;
2. dynl2 unfused: ``trainers.train`` per trial (tensors on the device, randperm batches), an
   in-memory study;
3. dynl2 fused: ``trainers.train_fused`` at each K of ``--ks``, K trials asked, trained and told
   together, an in-memory study.

The slow ways (1, 2) train ``--slow-trials`` trials per repeat and the rate is per minute of
those; the fused ways train all ``--trials``. Then, once, the figure a user sees: ``dynl2 run``
(a fresh SQLite store, one worker, the default group size, evaluation of the best trial on the
config's 10 seeds, start-up and bookkeeping included) on the full budget, and the same with
``--batch 1``, each as trials per minute of wall time; on a CUDA device with ``nvidia-smi``,
each also prints how busy the GPU was (utilization sampled every 100 ms: the mean over the
whole command, and over its training phase, from the first to the last sample of at least 5%).
Finally the matmul peak (a 4096² fp32
``torch.mm``, best of 5) against which the fused runs' achieved GFLOP/s (counted analytically:
forward, backward and validation products) are put, and the rate of the hidden layer's
products alone (``torch.bmm`` of 32 members' 100×100 matrices).

The process first calls ``flush_denormals`` and ``keep_freed_memory``, as dynl2's CLI does; the
baseline shares the process and gains from both too, so its ratios err on the low side.

Prints the device, torch version, threads, repeats, median and spread (min to max), and every
ratio against the baseline and dynl2 unfused measured in this same run. Never run by CI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import optuna
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainers import (  # noqa: E402
    Dataset,
    EpochRecord,
    FixedScheme,
    MLPModel,
    Mnist1dData,
    TrainConfig,
    TrainResult,
    flush_denormals,
    keep_freed_memory,
    load_dataset,
    resolve_device,
    train,
    train_fused,
)

HIDDEN = (100, 100)
LR = (1e-3, 3e-2)
LAM = (1e-6, 1e-1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _study(seed: int) -> optuna.Study:
    sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    return optuna.create_study(
        direction="maximize", sampler=sampler, pruner=optuna.pruners.NopPruner()
    )


def _suggest(trial: optuna.trial.BaseTrial) -> tuple[float, float]:
    lr = trial.suggest_float("lr", *LR, log=True)
    lam = trial.suggest_float("lam", *LAM, log=True)
    return lr, lam


def baseline(trials: int, epochs: int, data: Dataset, device: torch.device) -> float:
    """Optuna's PyTorch example's way; returns seconds for ``trials`` trials."""
    x_train, y_train = data.x_train.cpu(), data.y_train.cpu()
    x_val, y_val = data.x_val.cpu(), data.y_val.cpu()

    def objective(trial: optuna.trial.Trial) -> float:
        lr, lam = _suggest(trial)
        model = nn.Sequential(
            nn.Linear(40, HIDDEN[0]),
            nn.ReLU(),
            nn.Linear(HIDDEN[0], HIDDEN[1]),
            nn.ReLU(),
            nn.Linear(HIDDEN[1], 10),
        ).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=lam)
        train_loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x_train, y_train), batch_size=100, shuffle=True
        )
        val_loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x_val, y_val), batch_size=1000
        )
        accuracy = 0.0
        for epoch in range(epochs):
            model.train()
            for xb, yb in train_loader:
                xb, yb = xb.to(device), yb.to(device)
                optimizer.zero_grad()
                loss = nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                optimizer.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for xb, yb in val_loader:
                    pred = model(xb.to(device)).argmax(dim=1)
                    correct += int(pred.eq(yb.to(device)).sum().item())
            accuracy = correct / len(x_val)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    study = _study(0)
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    _sync(device)
    return time.perf_counter() - started


def _config(lr: float, lam: float, epochs: int, seed: int, device: str) -> TrainConfig:
    return TrainConfig(
        data=Mnist1dData(),
        model=MLPModel(hidden=HIDDEN),
        scheme=FixedScheme(lam=lam),
        optimizer="adam",
        lr=lr,
        epochs=epochs,
        batch_size=100,
        seed=seed,
        device=device,
    )


def _reporter(trial: optuna.trial.Trial) -> Callable[[EpochRecord], bool]:
    def report(record: EpochRecord) -> bool:
        assert record.val_acc is not None
        trial.report(record.val_acc, record.epoch)
        return trial.should_prune()

    return report


def unfused(trials: int, epochs: int, data: Dataset, device: str) -> float:
    study = _study(0)
    started = time.perf_counter()
    for _ in range(trials):
        trial = study.ask()
        lr, lam = _suggest(trial)
        result = train(_config(lr, lam, epochs, trial.number, device), _reporter(trial), data)
        assert result.history[-1].val_acc is not None
        study.tell(trial, result.history[-1].val_acc)
    return time.perf_counter() - started


def fused(trials: int, epochs: int, data: Dataset, device: str, k: int) -> tuple[float, float]:
    """Seconds for ``trials`` trials in groups of ``k``, and of those the seconds inside
    ``train_fused`` (the engine, without the sampler's asks and tells)."""
    study = _study(0)
    started = time.perf_counter()
    engine = 0.0
    done = 0
    while done < trials:
        group = [study.ask() for _ in range(min(k, trials - done))]
        configs = [_config(*_suggest(t), epochs, t.number, device) for t in group]

        def tell(
            ended: Sequence[tuple[int, object]], group: list[optuna.trial.Trial] = group
        ) -> None:
            for index, outcome in ended:
                if isinstance(outcome, TrainResult):
                    study.tell(group[index], outcome.history[-1].val_acc)
                else:  # diverged
                    study.tell(group[index], state=optuna.trial.TrialState.FAIL)

        t0 = time.perf_counter()
        train_fused(
            configs,
            on_epoch=[_reporter(t) for t in group],
            data=data,
            shared_order=group[0].number,
            on_ends=tell,
        )
        engine += time.perf_counter() - t0
        done += len(group)
    return time.perf_counter() - started, engine


def training_flops(trials: int, epochs: int, n_train: int, n_val: int, batch: int) -> float:
    """Multiply-adds ×2 of the MLP's products: forward, backward (weight gradients everywhere,
    input gradients past the first layer) for every training example, forward for validation."""
    layers = [(40, HIDDEN[0]), (HIDDEN[0], HIDDEN[1]), (HIDDEN[1], 10)]
    forward = sum(i * o for i, o in layers)
    backward = sum(i * o for i, o in layers) + sum(i * o for i, o in layers[1:])
    per_epoch = 2 * n_train * (forward + backward) + 2 * n_val * forward
    return float(trials * epochs * per_epoch)


def _best_seconds(op: Callable[[], object], device: torch.device, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls of ``op``, after one untimed warm-up call."""
    op()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        op()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: torch.device, n: int = 4096) -> float:
    """GFLOP/s of the best of 5 fp32 ``n × n`` products."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    return 2 * n**3 / _best_seconds(lambda: torch.mm(a, b), device, 5) / 1e9


def member_products(device: torch.device, k: int = 32, n: int = 100) -> float:
    """GFLOP/s of the best of 50 ``torch.bmm`` of K ``n × n`` by ``n × n`` products: the fused
    MLP's hidden layer alone (the ceiling its products could reach without anything around)."""
    a = torch.randn(k, n, n, device=device)
    b = torch.randn(k, n, n, device=device)
    return 2 * k * n**3 / _best_seconds(lambda: torch.bmm(a, b), device, 50) / 1e9


RUN_CONFIG = """
[experiment]
name = "throughput"
seed = 0
[data]
dataset = "mnist1d"
[model]
kind = "mlp"
hidden = [100, 100]
[train]
optimizer = "adam"
lr = {{ low = {lr_low}, high = {lr_high}, log = true }}
epochs = {epochs}
batch_size = 100
device = "{device}"
[search]
n_trials = {trials}
sampler = "tpe"
pruner = "none"
metric = "val_acc"
[arms.fixed]
scheme = "fixed"
lam = {{ low = {lam_low}, high = {lam_high}, log = true }}
"""


BUSY_FROM = 5  # % utilization: the samples from the first to the last at or above it


def busy_sampler(device: str) -> subprocess.Popen[str] | None:
    """``nvidia-smi`` printing the GPU's utilization every 100 ms (the percentage of the last
    sample period in which a kernel ran), or None off CUDA or without nvidia-smi."""
    if not device.startswith("cuda") and not (device == "auto" and torch.cuda.is_available()):
        return None
    if shutil.which("nvidia-smi") is None:
        print("GPU busy: not measured (no nvidia-smi on PATH)")
        return None
    index = torch.device(device if device != "auto" else "cuda").index or 0
    return subprocess.Popen(
        ["nvidia-smi", f"--id={index}", "--query-gpu=utilization.gpu",
         "--format=csv,noheader,nounits", "-lms", "100"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip


def busy_summary(sampler: subprocess.Popen[str], label: str) -> str:
    """One line: the GPU's mean utilization over the whole ``dynl2 run`` (start-up, evaluation
    and report included), and over its training phase, taken as the samples from the first to
    the last at or above :data:`BUSY_FROM` %."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sampler.pid, signal.SIGTERM)  # its group: whatever it started ends too
    out, _ = sampler.communicate(timeout=30)
    samples = [int(x) for x in out.split() if x.strip().isdigit()]
    if not samples:
        return f"GPU busy ({label}): no samples from nvidia-smi"
    active = [i for i, s in enumerate(samples) if s >= BUSY_FROM]
    phase = samples[active[0] : active[-1] + 1] if active else []
    whole = statistics.mean(samples)
    inside = f"{statistics.mean(phase):.0f}% over {len(phase)}" if phase else "no"
    return (
        f"GPU busy ({label}): {whole:.0f}% mean over the whole run ({len(samples)} samples of "
        f"100 ms); training phase (first to last sample >= {BUSY_FROM}%): {inside} samples"
    )


def dynl2_run(trials: int, epochs: int, device: str, extra: list[str]) -> float:
    """Wall seconds of ``dynl2 run`` on a fresh SQLite store, process start included."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "throughput.toml"
        path.write_text(
            RUN_CONFIG.format(
                lr_low=LR[0],
                lr_high=LR[1],
                lam_low=LAM[0],
                lam_high=LAM[1],
                epochs=epochs,
                trials=trials,
                device=device,
            )
        )
        command = [sys.executable, "-m", "study", "run", str(path), "--quiet", *extra]
        command += ["--storage", f"sqlite:///{Path(tmp) / 'store.db'}"]
        started = time.perf_counter()
        # this checkout first, not an installed dynl2; then what PYTHONPATH had (on a GPU
        # machine without network, the folder the carried wheels were installed into)
        path_before = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), path_before]))}
        sampler = busy_sampler(device)
        proc = subprocess.run(
            command, cwd=tmp, env=env, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - started
        if sampler is not None:
            print(busy_summary(sampler, " ".join(extra) or "default group size"), flush=True)
        if proc.returncode != 0:
            raise SystemExit(f"dynl2 run failed ({proc.returncode}): {proc.stderr.strip()}")
        return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow-trials", type=int, default=16)
    parser.add_argument("--ks", default="8,32,128")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--skip-run", action="store_true", help="skip the dynl2 run figures")
    parser.add_argument(
        "--skip-batch-1", action="store_true", help="skip only the dynl2 run --batch 1 figure"
    )
    args = parser.parse_args()
    flush_denormals()  # as dynl2's CLI does; the baseline, in this process, gains from both too
    keep_freed_memory()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = resolve_device(args.device)
    ks = [int(k) for k in args.ks.split(",")]
    data = load_dataset(Mnist1dData(), device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device {device} ({name or platform.machine()}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    )
    print(
        f"budget: {args.trials} trials x {args.epochs} epochs, MLP 40-100-100-10, Adam, "
        f"batch 100, no pruning; {args.repeats} repeats (slow ways: {args.slow_trials} "
        f"trials a repeat)"
    )
    rates: dict[str, list[float]] = {"baseline": [], "dynl2 unfused": []}
    rates.update({f"dynl2 fused K={k}": [] for k in ks})
    engine_rate: dict[str, list[float]] = {f"dynl2 fused K={k}": [] for k in ks}
    flops = training_flops(args.trials, args.epochs, len(data.x_train), len(data.x_val), 100)
    peak = matmul_peak(device)
    # warm-up: first calls allocate and pick kernels
    unfused(1, 1, data, str(device))
    fused(2, 1, data, str(device), 2)  # warm-up
    for repeat in range(args.repeats):
        seconds = baseline(args.slow_trials, args.epochs, data, device)
        rates["baseline"].append(60 * args.slow_trials / seconds)
        seconds = unfused(args.slow_trials, args.epochs, data, str(device))
        rates["dynl2 unfused"].append(60 * args.slow_trials / seconds)
        for k in ks:
            seconds, engine = fused(args.trials, args.epochs, data, str(device), k)
            rates[f"dynl2 fused K={k}"].append(60 * args.trials / seconds)
            engine_rate[f"dynl2 fused K={k}"].append(flops / engine / 1e9)
        print(
            f"repeat {repeat + 1}/{args.repeats}: "
            + ", ".join(f"{n} {r[-1]:.0f}" for n, r in rates.items()),
            flush=True,
        )
    peak = max(peak, matmul_peak(device))  # the better of before and after the ways
    base = statistics.median(rates["baseline"])
    per_trial = flops / args.trials / 1e9  # GFLOP a trial: GFLOP/s = per_trial * trials/s
    print(f"\nmatmul peak (fp32 4096^2 torch.mm, best of 5, before and after): {peak:.1f} GFLOP/s")
    products = member_products(device)
    print(
        f"member products alone (torch.bmm, K=32 of 100x100x100, best of 50): "
        f"{products:.1f} GFLOP/s = {100 * products / peak:.1f}% of peak"
    )
    print(
        "\nGFLOP/s: the MLP's products (forward, backward, validation) over wall time; "
        "engine: over the time inside train_fused only\n"
    )
    print(
        "| way | trials/min (median, min-max) | x baseline | GFLOP/s | % of peak "
        "| engine GFLOP/s | engine % of peak |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, values in rates.items():
        med = statistics.median(values)
        rate = per_trial * med / 60
        engine = " | |"
        if label in engine_rate:
            inside = statistics.median(engine_rate[label])
            engine = f" {inside:.1f} | {100 * inside / peak:.1f}% |"
        print(
            f"| {label} | {med:.1f} ({min(values):.1f}-{max(values):.1f}) "
            f"| {med / base:.2f} | {rate:.1f} | {100 * rate / peak:.1f}% |{engine}"
        )
    if not args.skip_run:
        runs: list[tuple[str, list[str]]] = [("dynl2 run, default group size", [])]
        if not args.skip_batch_1:  # a trial at a time: minutes on a GPU for 512 trials
            runs.append(("dynl2 run --batch 1", ["--batch", "1"]))
        for label, extra in runs:
            seconds = dynl2_run(args.trials, args.epochs, args.device, extra)
            rate = 60 * args.trials / seconds
            gflops = per_trial * rate / 60
            print(
                f"| {label} ({seconds:.1f} s) | {rate:.1f} | {rate / base:.2f} "
                f"| {gflops:.1f} | {100 * gflops / peak:.1f}% | | |"
            )
        print(
            "\n(dynl2 run: one worker, SQLite, evaluation of the best trial on 10 seeds and "
            "the report included, process start included; its GFLOP/s count the search's "
            "FLOPs only)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
