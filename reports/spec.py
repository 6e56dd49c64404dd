"""What a report reads of an experiment's config: typed, read-only protocols.

The study layer parses and validates an experiment's config once (``study.config.experiment``'s
``ExperimentConfig``) and hands it to :func:`reports.build_report_data`. This layer may not
import ``study``, so it names here exactly the members it reads, and nothing else; the frozen
config dataclasses satisfy these protocols as they are (mypy checks it where ``study`` calls
the report). Every member is a read-only property, so a frozen dataclass field fits it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["ArmSpec", "EvaluateSpec", "ExperimentSpec", "RangeSpec", "SearchSpec"]


@runtime_checkable
class RangeSpec(Protocol):
    """A searched range, as the setup section shows it and the sensitivity charts scale it."""

    @property
    def low(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def log(self) -> bool: ...
    @property
    def step(self) -> float | None: ...  # None: continuous


@runtime_checkable
class ArmSpec(Protocol):
    """One arm: its name, its scheme, and the scheme settings it holds fixed."""

    @property
    def name(self) -> str: ...
    @property
    def scheme(self) -> str: ...
    @property
    def fixed(self) -> Mapping[str, object]: ...


@runtime_checkable
class SearchSpec(Protocol):
    """The search settings the report states and measures progress against."""

    @property
    def n_trials(self) -> int: ...  # per arm and replicate
    @property
    def sampler(self) -> str: ...
    @property
    def pruner(self) -> str: ...
    @property
    def metric(self) -> str: ...  # the validation metric searched
    @property
    def replicates(self) -> int: ...  # independent searches of every arm (at this stage)
    @property
    def sequential(self) -> tuple[int, int, int] | None: ...  # (min, max, step) of stages


@runtime_checkable
class EvaluateSpec(Protocol):
    @property
    def seeds(self) -> int: ...  # evaluation seeds asked for
    @property
    def margin(self) -> float | None: ...  # the smallest difference worth having, or None


@runtime_checkable
class ExperimentSpec(Protocol):
    """A validated experiment config, as the report reads it."""

    @property
    def name(self) -> str: ...
    @property
    def direction(self) -> str: ...  # "maximize" or "minimize": the metric's Optuna direction
    @property
    def accuracy(self) -> bool: ...  # a classification dataset: the test metric is accuracy
    @property
    def arms(self) -> Sequence[ArmSpec]: ...  # in the report's order
    @property
    def train_ranges(self) -> Mapping[str, RangeSpec]: ...  # searched in every arm
    @property
    def search(self) -> SearchSpec: ...
    @property
    def evaluate(self) -> EvaluateSpec: ...

    def searched(self, arm_name: str) -> Mapping[str, RangeSpec]:
        """What is searched in the listed arm ``arm_name``: train ranges, then the arm's."""
        ...

    def to_dict(self) -> Mapping[str, Any]:
        """The config as plain data shaped like its TOML file (what the store keeps)."""
        ...
