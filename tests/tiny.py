"""The tiny study config the end-to-end and reliability tests write: digits, a 16-unit MLP,
random search, no pruning; a trial of E epochs takes about 0.05*E s on a CPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

HEAD = """
[experiment]
name = "{name}"
seed = 0

[data]
dataset = "digits"

[model]
kind = "mlp"
hidden = [16]

[train]
optimizer = "adam"
lr = {{ low = 1e-3, high = 3e-2, log = true }}
epochs = {epochs}
batch_size = 100
device = "cpu"

[search]
n_trials = {n_trials}
sampler = "random"
pruner = "none"
metric = "val_acc"
"""

ARM_BLOCKS = {
    "dynamic": (
        '\n[arms.dynamic]\nscheme = "dynamic"\nalpha = { low = 1e-4, high = 1.0, log = true }\n'
    ),
    # the scheme as its source's code runs it: alpha is the learning rate
    "dynamic_as_written": '\n[arms.dynamic_as_written]\nscheme = "dynamic"\nalpha = "lr"\n',
    "fixed": '\n[arms.fixed]\nscheme = "fixed"\nlam = { low = 1e-6, high = 1e-1, log = true }\n',
    "none": '\n[arms.none]\nscheme = "none"\n',
    "swd": '\n[arms.swd]\nscheme = "swd"\nlam = { low = 1e-5, high = 1e-1, log = true }\n',
    "schedule": (
        '\n[arms.schedule]\nscheme = "schedule"\nshape = "cosine"\n'
        "lam_start = { low = 1e-6, high = 1e-2, log = true }\n"
        "lam_end = { low = 1e-5, high = 1e-1, log = true }\n"
    ),
}


def tiny_config(name: str, *, epochs: int, n_trials: int, seeds: int, arms: Sequence[str]) -> str:
    """The config's TOML text, with the named arms (of ``ARM_BLOCKS``)."""
    head = HEAD.format(name=name, epochs=epochs, n_trials=n_trials)
    return head + "".join(ARM_BLOCKS[arm] for arm in arms) + f"\n[evaluate]\nseeds = {seeds}\n"


def write_tiny(
    directory: Path, name: str, *, epochs: int, n_trials: int, seeds: int, arms: Sequence[str]
) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(tiny_config(name, epochs=epochs, n_trials=n_trials, seeds=seeds, arms=arms))
    return path
