"""``[search]`` and ``[evaluate]``: how each arm is searched, and how often its best
configuration is retrained at the end. Each validates itself, with full TOML keys."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from study.config.ranges import bounded
from study.config.reader import ExperimentConfigError
from trainers._fields import describe

SAMPLERS = ("tpe", "random", "qmc", "cmaes", "gp")
PRUNERS = ("none", "median", "hyperband")
METRICS: Mapping[str, Literal["maximize", "minimize"]] = types.MappingProxyType(
    {"val_acc": "maximize", "val_loss": "minimize"}
)
MAX_TRIALS = 100_000  # [search] n_trials, per arm
MAX_BATCH = 4096  # [search] batch and --batch: trials trained as one fused model
MAX_REPLICATES = 100  # [search] replicates: independent searches of every arm
MAX_SEEDS = 1000  # [evaluate] seeds and evaluate --seeds


@dataclass(frozen=True)
class SearchConfig:
    """How each arm is searched."""

    n_trials: int = 40  # trials per arm
    sampler: str = "tpe"  # tpe | random | qmc | cmaes | gp
    pruner: str = "median"  # none | median | hyperband
    metric: str = "val_acc"  # val_acc (maximized) or val_loss (minimized), on the val split
    batch: int | None = None  # trials trained together (fused); None = chosen by dynl2
    # Independent searches of every arm, each with the full n_trials and its own sampler
    # seed: the verdict's interval then covers the search's randomness (reports.replicates).
    replicates: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "n_trials", bounded("search.n_trials", self.n_trials, 1, MAX_TRIALS)
        )
        object.__setattr__(
            self,
            "replicates",
            bounded("search.replicates", self.replicates, 1, MAX_REPLICATES),
        )
        _choice("search.sampler", self.sampler, SAMPLERS)
        _choice("search.pruner", self.pruner, PRUNERS)
        _choice("search.metric", self.metric, tuple(METRICS))
        if self.batch is not None:
            object.__setattr__(self, "batch", bounded("search.batch", self.batch, 1, MAX_BATCH))

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "n_trials": self.n_trials,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "metric": self.metric,
        }
        if self.batch is not None:  # TOML has no null: absent means None
            out["batch"] = self.batch
        if self.replicates != 1:  # absent means 1: a store from before replicates reads equal
            out["replicates"] = self.replicates
        return out


@dataclass(frozen=True)
class EvaluateConfig:
    """The final re-training of each arm's best configuration."""

    seeds: int = 10  # shared seeds each arm's best configuration is retrained on

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", bounded("evaluate.seeds", self.seeds, 1, MAX_SEEDS))

    def to_dict(self) -> dict[str, object]:
        return {"seeds": self.seeds}


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ExperimentConfigError(
            key, f"must be one of {', '.join(allowed)}, got {describe(value)}"
        )
