"""``[search]`` and ``[evaluate]``: how each arm is searched, and how often its best
configuration is retrained at the end. Each validates itself, with full TOML keys."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal

from study.config.ranges import bounded, number
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
    # A table ``{ min = 3, max = 12, step = 2 }`` adds replicates in stages until decided
    # (``sequential``; reports.sequential): ``replicates`` is then the stage's count, min at
    # first, and the store says how far a run has come (study.run.stages).
    replicates: int = 1
    sequential: tuple[int, int, int] | None = None  # (min, max, step); None: a fixed count
    # Each trial's parameters a function of its number even for a model-based sampler: trial k
    # sees only the results of trials numbered k - lag or lower, waiting for them if needed
    # (study.search.samplers.reproducible_lag); slower with many workers. tpe, random, qmc.
    reproducible: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "n_trials", bounded("search.n_trials", self.n_trials, 1, MAX_TRIALS)
        )
        if isinstance(self.replicates, Mapping):
            object.__setattr__(self, "sequential", _stages(self.replicates))
            object.__setattr__(self, "replicates", self.replicates.get("min", 0))
        elif self.sequential is not None:
            object.__setattr__(self, "sequential", _stages(_stage_table(self.sequential)))
        object.__setattr__(
            self,
            "replicates",
            bounded("search.replicates", self.replicates, 1, MAX_REPLICATES),
        )
        if self.sequential is not None:
            low, high, _ = self.sequential
            if not low <= self.replicates <= high:
                raise ExperimentConfigError(
                    "search.replicates",
                    f"a stage of {self.replicates} replicates lies outside min {low} .. "
                    f"max {high}",
                )
        _choice("search.sampler", self.sampler, SAMPLERS)
        _choice("search.pruner", self.pruner, PRUNERS)
        _choice("search.metric", self.metric, tuple(METRICS))
        if self.batch is not None:
            object.__setattr__(self, "batch", bounded("search.batch", self.batch, 1, MAX_BATCH))
        _reproducible(self)

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "n_trials": self.n_trials,
            "sampler": self.sampler,
            "pruner": self.pruner,
            "metric": self.metric,
        }
        if self.batch is not None:  # TOML has no null: absent means None
            out["batch"] = self.batch
        if self.sequential is not None:  # the stage reached is the store's to say
            out["replicates"] = _stage_table(self.sequential)
        elif self.replicates != 1:  # absent means 1: a store from before replicates reads equal
            out["replicates"] = self.replicates
        if self.reproducible:  # absent means false: older stores read equal
            out["reproducible"] = True
        return out

    @property
    def most(self) -> int:
        """The most replicates the experiment may search: ``max`` of the sequential form."""
        return self.replicates if self.sequential is None else self.sequential[1]


# The keys a [search] table may hold: ``sequential`` is what the table form of ``replicates``
# becomes, not a key of its own.
SEARCH_KEYS = tuple(f.name for f in fields(SearchConfig) if f.name != "sequential")
SEQUENTIAL_KEYS = ("min", "max", "step")
DEFAULT_STEP = 2  # replicates added per stage of the sequential form


REPRODUCIBLE_SAMPLERS = ("tpe", "random", "qmc")
REPRODUCIBLE_PRUNERS = ("none", "median")


def _reproducible(search: SearchConfig) -> None:
    """``reproducible`` is true or false, and only where it is implemented."""
    value = search.reproducible
    if not isinstance(value, bool):
        raise ExperimentConfigError(
            "search.reproducible", f"must be true or false, got {describe(value)}"
        )
    if value and search.sampler not in REPRODUCIBLE_SAMPLERS:
        raise ExperimentConfigError(
            "search.reproducible",
            f"is implemented for the {', '.join(REPRODUCIBLE_SAMPLERS)} samplers, not "
            f"{search.sampler}; set it to false or choose one of those samplers",
        )
    if value and search.pruner not in REPRODUCIBLE_PRUNERS:
        raise ExperimentConfigError(
            "search.reproducible",
            f"is implemented with the {' and '.join(REPRODUCIBLE_PRUNERS)} pruners, not "
            f"{search.pruner}; set it to false or choose one of those pruners",
        )


def _stage_table(stages: object) -> dict[str, int]:
    if not isinstance(stages, tuple) or len(stages) != 3:
        raise ExperimentConfigError(
            "search.sequential", f"expected (min, max, step), got {describe(stages)}"
        )
    return dict(zip(SEQUENTIAL_KEYS, stages, strict=True))


def _stages(table: Mapping[str, object]) -> tuple[int, int, int]:
    """``{ min, max, step }`` of the sequential form, checked: 2 <= min <= max <= 100."""
    for key in table:
        if key not in SEQUENTIAL_KEYS:
            raise ExperimentConfigError(
                f"search.replicates.{key}",
                f"[search] replicates has no setting {describe(key)}; allowed: "
                f"{', '.join(SEQUENTIAL_KEYS)} (or a whole number of replicates)",
            )
    for key in ("min", "max"):
        if key not in table:
            raise ExperimentConfigError(
                f"search.replicates.{key}",
                "missing; the sequential form is { min = 3, max = 12 } (step optional, "
                f"default {DEFAULT_STEP})",
            )
    low = bounded("search.replicates.min", table["min"], 2, MAX_REPLICATES)
    high = bounded("search.replicates.max", table["max"], 2, MAX_REPLICATES)
    step = bounded("search.replicates.step", table.get("step", DEFAULT_STEP), 1, MAX_REPLICATES)
    if low > high:
        raise ExperimentConfigError(
            "search.replicates",
            f"min {low} is above max {high}; the run starts at min and adds replicates up to max",
        )
    return low, high, step


@dataclass(frozen=True)
class EvaluateConfig:
    """The final re-training of each arm's best configuration."""

    seeds: int = 10  # shared seeds each arm's best configuration is retrained on
    # The smallest difference worth having, in the verdict's units (accuracy points, or test
    # loss): with it a comparison can end "equivalent" (reports.decision). None: no margin.
    margin: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", bounded("evaluate.seeds", self.seeds, 1, MAX_SEEDS))
        if self.margin is not None:
            margin = number("evaluate.margin", self.margin)
            if margin <= 0:
                raise ExperimentConfigError(
                    "evaluate.margin",
                    f"must be above 0 (the smallest difference worth having, in accuracy points "
                    f"or test loss), got {margin!r}",
                )
            object.__setattr__(self, "margin", float(margin))

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"seeds": self.seeds}
        if self.margin is not None:  # absent means none: older stores read equal
            out["margin"] = self.margin
        return out


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ExperimentConfigError(
            key, f"must be one of {', '.join(allowed)}, got {describe(value)}"
        )
