"""Trials per minute of a TPE search with and without ``[search] reproducible``, run by hand.

    python bench/reproducible_tpe.py [--trials 24] [--epochs 3] [--workers 2] [--batch 2] \
        [--repeats 2] [--timeout 600]

Runs ``dynl2 run`` on examples/tiny.toml (digits, a 16-unit MLP, three searched arms, one
replicate), changed to TPE with n_trials ``--trials``, ``--epochs`` epochs and ``[search] batch``
``--batch`` (the lag of the reproducible run), with ``--workers`` worker processes, once as is
(the baseline) and once with ``reproducible = true``, alternating repeat by repeat, each on a
fresh SQLite file. The search's time is read from the store: first trial started to last trial
ended (process start-up and the final evaluation are not counted). Prints the median and the
spread of trials per minute of each, and the median ratio reproducible / baseline of this run.
Timings are never asserted.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def config_text(trials: int, epochs: int, batch: int, reproducible: bool) -> str:
    text = (ROOT / "examples/tiny.toml").read_text()
    search = f'sampler = "tpe"\nbatch = {batch}' + (
        "\nreproducible = true" if reproducible else ""
    )
    for old, new in (
        ('sampler = "random"', search),
        ("n_trials = 4", f"n_trials = {trials}"),
        ("epochs = 3", f"epochs = {epochs}"),
        ("replicates = 3", "replicates = 1"),
        ("seeds = 2", "seeds = 1"),
    ):
        assert old in text, f"examples/tiny.toml no longer has {old!r}"
        text = text.replace(old, new)
    return text


def one_run(directory: Path, args: argparse.Namespace, reproducible: bool) -> float:
    """Trials per minute of one search."""
    import storage

    config = directory / "tiny.toml"
    config.write_text(config_text(args.trials, args.epochs, args.batch, reproducible))
    url = f"sqlite:///{directory / 'dynl2.db'}"
    command = ["dynl2", "run", str(config), "--storage", url, "--quiet"]
    command += ["--workers", str(args.workers)]
    subprocess.run(
        command, cwd=directory, check=True, timeout=args.timeout, stdout=subprocess.DEVNULL
    )
    with storage.open(url, create=False) as store:
        trials = store.trials("tiny")
    assert trials["state"].eq("COMPLETE").all(), trials["state"].value_counts()
    seconds = (trials["datetime_complete"].max() - trials["datetime_start"].min()).total_seconds()
    return 60.0 * len(trials) / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24, help="per arm (three arms)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=2, help="[search] batch: the lag")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=int, default=600, help="seconds per run")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {"baseline": [], "reproducible": []}
    for _ in range(args.repeats):
        for name in rates:
            with tempfile.TemporaryDirectory(prefix="dynl2-bench-") as tmp:
                rates[name].append(one_run(Path(tmp), args, name == "reproducible"))
    torch_version = importlib.metadata.version("torch")
    optuna_version = importlib.metadata.version("optuna")
    print(
        f"TPE search of examples/tiny.toml: 3 arms x {args.trials} trials x {args.epochs} "
        f"epochs, [search] batch {args.batch}, {args.workers} worker processes, SQLite, "
        f"{args.repeats} repeat(s) each, alternating"
    )
    print(
        f"host: {platform.platform()}, {os.cpu_count()} CPUs, python "
        f"{platform.python_version()}, torch {torch_version}, optuna {optuna_version}"
    )
    for name, values in rates.items():
        spread = f"{min(values):.0f} .. {max(values):.0f}"
        print(f"{name:>12}: {statistics.median(values):6.0f} trials/min (range {spread})")
    ratios = [r / b for r, b in zip(rates["reproducible"], rates["baseline"], strict=True)]
    print(
        f"reproducible / baseline: {statistics.median(ratios):.2f} (median of per-repeat ratios)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
