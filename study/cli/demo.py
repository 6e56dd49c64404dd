"""``dynl2 demo``: a built-in MNIST-1D study on the embedded SQLite store, then its report."""

from __future__ import annotations

import argparse
import tomllib
from typing import Any

from study.cli.args import workers_flag
from study.cli.experiments import note_line, print_run, say_line
from study.config.experiment import parse_experiment

# Sized to finish in about four minutes on 2 CPU cores (much faster on a GPU): three
# independent searches (replicates) of 20 trials per arm, 100 epochs with median pruning, then
# each search's best retrained on 10 shared seeds: a verdict that covers the search's randomness.
DEMO_TOML = """
[experiment]
name = "demo"
seed = 0

[data]
dataset = "mnist1d"

[model]
kind = "mlp"
hidden = [100, 100]

[train]
optimizer = "adam"
lr = { low = 1e-3, high = 3e-2, log = true }
epochs = 100
batch_size = 100
device = "auto"

[search]
n_trials = 20
replicates = 3
sampler = "tpe"
pruner = "median"
metric = "val_acc"

[arms.dynamic]
scheme = "dynamic"
alpha = { low = 1e-4, high = 1.0, log = true }
floor = { low = 1e-8, high = 1e-2, log = true }

[arms.dynamic_as_written]       # the source's own reading: alpha is the learning rate
scheme = "dynamic"
alpha = "lr"

[arms.fixed]
scheme = "fixed"
lam = { low = 1e-6, high = 1e-1, log = true }

[arms.none]
scheme = "none"

[evaluate]
seeds = 10
"""


def add_parser(verbs: Any) -> None:
    p = verbs.add_parser(
        "demo",
        help="run the built-in MNIST-1D study (dynamic, as written, fixed, none) and write its "
        "report",
        description="Run a built-in experiment on the embedded SQLite store in the current "
        "directory: MNIST-1D, the MLP, arms dynamic (alpha searched) / dynamic_as_written (alpha "
        "is the learning rate, as the scheme's source wrote it) / fixed / none, 3 independent "
        "searches of "
        "20 trials per arm, 10 evaluation seeds; then write the HTML report and print where "
        "it is.",
    )
    workers_flag(p, default=2)
    p.add_argument("--storage", metavar="URL", help="database URL (default: embedded SQLite)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from study.api import experiments as api  # Optuna, SciPy: not for the parser

    config = parse_experiment(tomllib.loads(DEMO_TOML))
    result = api.run_experiment(
        config,
        storage=args.storage,
        workers=args.workers,
        say=say_line(args.quiet),
        note=note_line,
    )
    return print_run(result)
