"""The experiment config: one TOML file, validated completely before anything is written.

A config names the data, the model, the training settings shared by every arm (fixed values or
ranges tuned equally in all arms), the search budget, the arms (one regularization scheme each,
with its own fixed values and ranges) and the final evaluation. :func:`load_experiment` reads
and validates it (the file through :mod:`study.config_file`, the one bounded reader); every
mistake raises :class:`ExperimentConfigError` naming the TOML key (``arms.dynamic.floor``), what
was given and what is allowed. Validation builds what the trainer and Optuna would build from it
(each arm's trainer configs at its ranges' ends, its Optuna distributions), so nothing they
would refuse reaches the store; :func:`require_device` checks the machine's devices.

The validated :class:`ExperimentConfig` is frozen and canonical: :meth:`ExperimentConfig.to_dict`
is what the store keeps, and ``parse_experiment(cfg.to_dict()) == cfg``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, Literal

from trainers import SCHEMES, ConfigError, TrainConfig, scheme_parameters
from trainers._fields import describe as _describe
from trainers.config import device_problem
from trainers.data import data_from_dict, data_to_dict
from trainers.models import model_from_dict, model_to_dict

from .config_file import SMALLEST_NORMAL, is_subnormal, read_config
from .config_file import ExperimentConfigError as ExperimentConfigError  # its public home

SAMPLERS = ("tpe", "random", "qmc", "cmaes", "gp")
PRUNERS = ("none", "median", "hyperband")
METRICS: Mapping[str, Literal["maximize", "minimize"]] = types.MappingProxyType(
    {"val_acc": "maximize", "val_loss": "minimize"}
)
SECTIONS = ("experiment", "data", "model", "train", "search", "arms", "evaluate")
REGRESSION_DATASETS = ("linear",)  # datasets with no accuracy: only val_loss applies
MAX_SEED = 2**31 - 1  # numpy-seeded samplers take < 2**32; headroom for seeds derived from it
MAX_TRIALS = 100_000  # [search] n_trials, per arm
MAX_BATCH = 4096  # [search] batch and --batch: trials trained as one fused model
MAX_SEEDS = 1000  # [evaluate] seeds and evaluate --seeds
MAX_REPLICATES = 100  # [search] replicates: independent searches of every arm
MAX_ARMS = 64  # arms of one experiment: one Optuna study each
MAX_WORKERS = 256  # run and evaluate --workers: processes on one machine
MAX_STEPS = 1_000_000_000  # grid points of a range with a step (Optuna counts them in Decimal)
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_NAME_RULE = "1 to 64 letters (A-Z, a-z), digits, '-' or '_'"
_SCHEME_FLAGS = ("apply", "biases")  # scheme settings that are never searched

Kind = Literal["int", "float", "bool", "str"]


# --------------------------------------------------------------------------------------------
# The frozen config objects. Each validates (and canonicalizes) itself in __post_init__, with
# full TOML keys, so a config built in code obeys the same rules as one read from a file.


@dataclass(frozen=True)
class Range:
    """A range Optuna searches: ``trial.suggest_float`` or, when ``integer``, ``suggest_int``."""

    low: float  # smallest value (included)
    high: float  # largest value (included)
    log: bool = False  # sample uniformly in log space (needs low > 0)
    step: float | None = None  # grid spacing from low; None = continuous (integers: 1)
    integer: bool = False  # whole numbers only (a TOML range whose low and high are integers)

    def __post_init__(self) -> None:
        problem = _range_problem(self)
        if problem is not None:
            raise ExperimentConfigError("range", problem)

    def to_dict(self) -> dict[str, object]:
        """``{low, high, log[, step]}``; integer ranges keep integer bounds, so
        :meth:`from_dict` restores ``integer``."""
        out: dict[str, object] = {"low": self.low, "high": self.high, "log": self.log}
        if self.step is not None:
            out["step"] = self.step
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, object], key: str = "range") -> Range:
        """Parse ``{low, high, log = false, step = optional}``; errors name ``key``."""
        if not isinstance(data, Mapping):
            raise ExperimentConfigError(key, f"expected a range table, got {_describe(data)}")
        allowed = ("low", "high", "log", "step")
        for name in data:
            if name not in allowed:
                raise ExperimentConfigError(
                    f"{key}.{name}",
                    f"a range has no setting {name!r}; it takes {', '.join(allowed)}",
                )
        for name in ("low", "high"):
            if name not in data:
                raise ExperimentConfigError(
                    f"{key}.{name}",
                    "missing; a range needs low and high, e.g. { low = 1e-4, high = 1.0, "
                    "log = true }",
                )
        low = _number(f"{key}.low", data["low"])
        high = _number(f"{key}.high", data["high"])
        log = data.get("log", False)
        if not isinstance(log, bool):
            raise ExperimentConfigError(f"{key}.log", f"expected true or false, got {log!r}")
        step = data.get("step")
        if step is not None:
            step = _number(f"{key}.step", step)
        integer = isinstance(low, int) and isinstance(high, int)
        if integer and isinstance(step, float):
            if not step.is_integer():
                raise ExperimentConfigError(
                    f"{key}.step", f"an integer range needs a whole step, got {step!r}"
                )
            step = int(step)
        if not integer:
            low, high = float(low), float(high)
            step = None if step is None else float(step)
        try:
            return cls(low, high, log, step, integer)
        except ExperimentConfigError as exc:
            raise ExperimentConfigError(key, exc.detail) from None


@dataclass(frozen=True)
class ArmConfig:
    """One arm: a regularization scheme with fixed settings and searched ranges."""

    name: str  # letters, digits, '-', '_' (1 to 64): also the Optuna study's suffix
    scheme: str  # a trainers scheme: none, fixed, dynamic, dynamic_l1, awd
    fixed: Mapping[str, object]  # scheme settings held constant (read-only after init)
    ranges: Mapping[str, Range]  # scheme parameters searched (Optuna names: the bare field)

    def __post_init__(self) -> None:
        _check_name("arms", self.name, "arm name")
        prefix = f"arms.{self.name}"
        scheme = _scheme_name(f"{prefix}.scheme", self.scheme)
        both = sorted(set(self.fixed) & set(self.ranges))
        if both:
            raise ExperimentConfigError(
                f"{prefix}.{both[0]}", "given both as a fixed value and as a range"
            )
        fixed, ranges = _params(
            prefix, {**self.fixed, **self.ranges}, _scheme_kinds(scheme), _not_taken(scheme)
        )
        object.__setattr__(self, "fixed", types.MappingProxyType(fixed))
        object.__setattr__(self, "ranges", types.MappingProxyType(ranges))
        _check_floor_ceiling(self)

    def __hash__(self) -> int:  # the mappings are read-only views, so hash the content
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict[str, object]:
        return {
            "scheme": self.scheme,
            **self.fixed,
            **{name: r.to_dict() for name, r in self.ranges.items()},
        }


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
            self, "n_trials", _bounded("search.n_trials", self.n_trials, 1, MAX_TRIALS)
        )
        object.__setattr__(
            self,
            "replicates",
            _bounded("search.replicates", self.replicates, 1, MAX_REPLICATES),
        )
        _choice("search.sampler", self.sampler, SAMPLERS)
        _choice("search.pruner", self.pruner, PRUNERS)
        _choice("search.metric", self.metric, tuple(METRICS))
        if self.batch is not None:
            object.__setattr__(self, "batch", _bounded("search.batch", self.batch, 1, MAX_BATCH))

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
        object.__setattr__(self, "seeds", _bounded("evaluate.seeds", self.seeds, 1, MAX_SEEDS))

    def to_dict(self) -> dict[str, object]:
        return {"seeds": self.seeds}


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment, validated. ``data`` and ``model`` are stored resolved (every option
    with its value); ``arms`` are kept sorted by name, so the stored JSON reads back equal."""

    name: str  # letters, digits, '-', '_' (1 to 64)
    seed: int  # seeds the samplers and the trainer (0 to 2**31-1)
    data: Mapping[str, object]  # {"dataset": NAME, ...its options}
    model: Mapping[str, object]  # {"kind": NAME, ...its options}
    train_fixed: Mapping[str, object]  # TrainConfig settings held constant in every arm
    train_ranges: Mapping[str, Range]  # TrainConfig settings searched in every arm
    search: SearchConfig
    arms: tuple[ArmConfig, ...]
    evaluate: EvaluateConfig

    def __post_init__(self) -> None:
        _check_name("experiment.name", self.name, "experiment name")
        object.__setattr__(self, "seed", _bounded("experiment.seed", self.seed, 0, MAX_SEED))
        data = _trainer_call(lambda: data_to_dict(data_from_dict(self.data, "data")))
        model = _trainer_call(lambda: model_to_dict(model_from_dict(self.model, "model")))
        object.__setattr__(self, "data", _freeze(data))
        object.__setattr__(self, "model", _freeze(model))
        both = sorted(set(self.train_fixed) & set(self.train_ranges))
        if both:
            raise ExperimentConfigError(
                f"train.{both[0]}", "given both as a fixed value and as a range"
            )
        fixed, ranges = _params(
            "train", {**self.train_fixed, **self.train_ranges}, _train_kinds(), _train_unknown
        )
        object.__setattr__(self, "train_fixed", types.MappingProxyType(fixed))
        object.__setattr__(self, "train_ranges", types.MappingProxyType(ranges))
        self._check_arms()
        if self.search.metric == "val_acc" and self.data["dataset"] in REGRESSION_DATASETS:
            raise ExperimentConfigError(
                "search.metric",
                f"val_acc needs a classification dataset, but {self.data['dataset']!r} is a "
                'regression dataset; use metric = "val_loss"',
            )
        for arm in self.arms:
            self._check_corners(arm)
            self._check_optuna(arm)
        if self.search.replicates > 1 and not any(self.searched(a.name) for a in self.arms):
            raise ExperimentConfigError(
                "search.replicates",
                f"{self.search.replicates} replicates of a search, but no arm searches "
                "anything (no ranges in [train] or in an arm); give ranges, or replicates = 1",
            )

    # -- queries ------------------------------------------------------------------------------

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """The Optuna direction of ``search.metric``."""
        return METRICS[self.search.metric]

    @property
    def max_epochs(self) -> int:
        """The most epochs any trial trains (a pruner's maximum resource)."""
        if "epochs" in self.train_ranges:
            return int(self.train_ranges["epochs"].high)
        return int(_number("train.epochs", self.train_fixed.get("epochs", _default("epochs"))))

    def arm(self, name: str) -> ArmConfig:
        """The arm called ``name``."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        known = ", ".join(a.name for a in self.arms)
        raise ExperimentConfigError("arms", f"no arm named {name!r}; the arms are: {known}")

    def searched(self, arm_name: str) -> dict[str, Range]:
        """What Optuna searches in this arm, by parameter name: train ranges, then the arm's."""
        return {**self.train_ranges, **self.arm(arm_name).ranges}

    def train_config(
        self, arm_name: str, sampled: Mapping[str, float | int], seed: int
    ) -> TrainConfig:
        """The trainer config of one run of ``arm_name`` with ``sampled`` values for exactly
        the parameters of :meth:`searched`. A value the trainer rejects raises
        :class:`ExperimentConfigError` keyed by its TOML key (``arms.dynamic.alpha``)."""
        arm = self.arm(arm_name)
        wanted = self.searched(arm_name)
        if set(sampled) != set(wanted):
            raise ValueError(
                f"`sampled` must hold exactly the searched parameters of arm {arm_name!r} "
                f"({', '.join(wanted) or 'none'}), but got {', '.join(sampled) or 'none'}"
            )
        scheme = {"scheme": arm.scheme, **arm.fixed, **{k: sampled[k] for k in arm.ranges}}
        settings: dict[str, object] = {
            "data": self.data,
            "model": self.model,
            "scheme": scheme,
            **self.train_fixed,
            **{k: sampled[k] for k in self.train_ranges},
            "seed": seed,
        }
        try:
            return TrainConfig.from_dict(settings)
        except ConfigError as exc:
            raise ExperimentConfigError(_toml_key(exc.key, arm.name), exc.detail) from None

    def __hash__(self) -> int:  # the mappings are read-only views, so hash the content
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    # -- storage ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON-ready form, shaped like the TOML file."""
        return {
            "experiment": {"name": self.name, "seed": self.seed},
            "data": _thaw(self.data),
            "model": _thaw(self.model),
            "train": {
                **self.train_fixed,
                **{name: r.to_dict() for name, r in self.train_ranges.items()},
            },
            "search": self.search.to_dict(),
            "arms": {arm.name: arm.to_dict() for arm in self.arms},
            "evaluate": self.evaluate.to_dict(),
        }

    def diff(self, other: ExperimentConfig) -> list[str]:
        """The dotted keys whose values differ (a range counts as one value), sorted."""
        out: list[str] = []
        _diff(self.to_dict(), other.to_dict(), "", out)
        return out

    # -- validation ---------------------------------------------------------------------------

    def _check_arms(self) -> None:
        arms = tuple(self.arms)
        if not arms:
            raise ExperimentConfigError(
                "arms", 'needs at least one arm, e.g. [arms.dynamic] with scheme = "dynamic"'
            )
        _check_arm_count(len(arms))
        for arm in arms:
            if not isinstance(arm, ArmConfig):
                raise ExperimentConfigError("arms", f"expected arm configs, got {arm!r}")
        names = [arm.name for arm in arms]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ExperimentConfigError("arms", f"arm {duplicates[0]!r} is given twice")
        object.__setattr__(self, "arms", tuple(sorted(arms, key=lambda a: a.name)))
        for arm in self.arms:
            # Optuna names parameters by their bare field name, so an arm's parameter must not
            # shadow a train range. (The trainer's field names are disjoint today; this keeps it
            # so if either side grows.)
            for name in arm.ranges:
                if name in self.train_ranges:
                    raise ExperimentConfigError(
                        f"arms.{arm.name}.{name}", f"shares its name with the range train.{name}"
                    )

    def _check_corners(self, arm: ArmConfig) -> None:
        """Build the trainer config with every range at its low, then at its high end: the
        trainer's own checks (alpha > 0, momentum < 1, cnn needs sequences...) then hold for
        the whole box the samplers draw from."""
        space = self.searched(arm.name)
        errors: dict[str, ExperimentConfigError] = {}
        corners = {end: {n: getattr(r, end) for n, r in space.items()} for end in ("low", "high")}
        for end, corner in corners.items():
            try:
                self.train_config(arm.name, corner, self.seed)
            except ExperimentConfigError as exc:
                errors[end] = exc
        if not errors:
            return
        end, first = next(iter(errors.items()))
        if len(errors) == 2 and str(errors["low"]) == str(errors["high"]):
            raise first  # the same at both ends: not caused by a range, so no range context
        searched_keys = {_toml_key(name, arm.name) for name in self.train_ranges}
        searched_keys |= {f"arms.{arm.name}.{name}" for name in arm.ranges}
        if first.key in searched_keys:
            context = f"the {end} end of its range"
        else:
            at = ", ".join(f"{name}={value!r}" for name, value in corners[end].items())
            context = f"with the searched values at their {end} ends: {at}"
        raise ExperimentConfigError(first.key, f"{first.detail} ({context})")

    def _check_optuna(self, arm: ArmConfig) -> None:
        """Build the Optuna distributions the arm's study will search, as the study does:
        whatever Optuna refuses is refused here, before anything is written."""
        from .studies import distribution  # it builds on this module

        for name, rng in self.searched(arm.name).items():
            key = f"arms.{arm.name}.{name}" if name in arm.ranges else _toml_key(name, arm.name)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # one line on stderr, never a warning
                    distribution(rng)
            except Exception as exc:
                raise ExperimentConfigError(
                    key, f"Optuna cannot search this range: {exc or type(exc).__name__}"
                ) from None


def require_device(config: ExperimentConfig) -> None:
    """Refuse, before anything is written, a config whose ``train.device`` this machine lacks
    (``cuda`` without CUDA, ``cuda:3`` with two GPUs, ``mps`` off a Mac). The config itself
    only checks the spelling: it is stored, and read on machines that may have the device."""
    problem = device_problem(str(config.train_fixed.get("device", _default("device"))))
    if problem is not None:
        raise ExperimentConfigError("train.device", problem)


# --------------------------------------------------------------------------------------------
# Reading a file or a mapping.


def load_experiment(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read (within :mod:`study.config_file`'s limits) and validate an experiment TOML file."""
    return parse_experiment(read_config(path))


def parse_experiment(mapping: Mapping[str, Any]) -> ExperimentConfig:
    """Validate a parsed TOML document (or :meth:`ExperimentConfig.to_dict`'s output)."""
    if not isinstance(mapping, Mapping):
        raise ExperimentConfigError("config", f"expected a table, got {_describe(mapping)}")
    _no_unknown("", mapping, SECTIONS, "section")
    if "experiment" not in mapping:
        raise ExperimentConfigError(
            "experiment", 'missing; start the file with [experiment] and name = "..."'
        )
    experiment = _section(mapping, "experiment")
    _no_unknown("experiment", experiment, ("name", "seed"), "setting")
    if "name" not in experiment:
        raise ExperimentConfigError("experiment.name", f"missing; a name is {_NAME_RULE}")
    train = _section(mapping, "train")
    train_fixed, train_ranges = _params("train", train, _train_kinds(), _train_unknown)
    return ExperimentConfig(
        name=experiment["name"],
        seed=experiment.get("seed", 0),
        data=_section(mapping, "data"),
        model=_section(mapping, "model"),
        train_fixed=train_fixed,
        train_ranges=train_ranges,
        search=SearchConfig(**_settings(mapping, "search", SearchConfig)),
        arms=_parse_arms(mapping),
        evaluate=EvaluateConfig(**_settings(mapping, "evaluate", EvaluateConfig)),
    )


def _parse_arms(mapping: Mapping[str, Any]) -> tuple[ArmConfig, ...]:
    example = 'e.g. [arms.dynamic] with scheme = "dynamic"'
    if "arms" not in mapping:
        raise ExperimentConfigError("arms", f"missing; add at least one arm, {example}")
    arms = mapping["arms"]
    if not isinstance(arms, Mapping):
        raise ExperimentConfigError(
            "arms", f"expected tables like [arms.dynamic], got {_describe(arms)}"
        )
    if not arms:
        raise ExperimentConfigError("arms", f"needs at least one arm, {example}")
    _check_arm_count(len(arms))
    out = []
    for name, table in arms.items():
        _check_name("arms", name, "arm name")
        key = f"arms.{name}"
        if not isinstance(table, Mapping):
            raise ExperimentConfigError(
                key, f"expected a table of settings, got {_describe(table)}"
            )
        if "scheme" not in table:
            raise ExperimentConfigError(
                f"{key}.scheme", f"missing; every arm names its scheme: {', '.join(SCHEMES)}"
            )
        scheme = _scheme_name(f"{key}.scheme", table["scheme"])
        params = {k: v for k, v in table.items() if k != "scheme"}
        fixed, ranges = _params(key, params, _scheme_kinds(scheme), _not_taken(scheme))
        out.append(ArmConfig(name, scheme, fixed, ranges))
    return tuple(out)


def _check_arm_count(count: int) -> None:
    if count > MAX_ARMS:
        raise ExperimentConfigError(
            "arms", f"at most {MAX_ARMS} arms (one Optuna study each), got {count}"
        )


def _section(mapping: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = mapping.get(name, {})
    if not isinstance(value, Mapping):
        raise ExperimentConfigError(
            name, f"expected a table [{name}] of settings, got {_describe(value)}"
        )
    return value


def _settings(mapping: Mapping[str, Any], name: str, cls: type) -> dict[str, Any]:
    table = _section(mapping, name)
    _no_unknown(name, table, tuple(f.name for f in fields(cls)), "setting")
    return dict(table)


def _no_unknown(
    prefix: str, table: Mapping[str, Any], allowed: tuple[str, ...], what: str
) -> None:
    for key in table:
        if key not in allowed:
            where = f"[{prefix}] has" if prefix else "the config has"
            raise ExperimentConfigError(
                _join(prefix, str(key)),
                f"{where} no {what} {_describe(key)}; allowed: {', '.join(allowed)}",
            )


# --------------------------------------------------------------------------------------------
# Parameters: fixed values and ranges, checked against the trainer's field types.


def _params(
    prefix: str,
    items: Mapping[str, object],
    kinds: Mapping[str, Kind],
    unknown: Callable[[str, str], ExperimentConfigError],
) -> tuple[dict[str, object], dict[str, Range]]:
    """Split ``items`` into canonical fixed values and ranges (a table or a :class:`Range`)."""
    fixed: dict[str, object] = {}
    ranges: dict[str, Range] = {}
    for name, value in items.items():
        key = f"{prefix}.{name}"
        if name not in kinds:
            raise unknown(key, name)
        kind = kinds[name]
        if isinstance(value, (Range, Mapping)):
            if kind not in ("int", "float"):
                wanted = "true or false" if kind == "bool" else "a string"
                raise ExperimentConfigError(
                    key, f"only numeric settings take a range; {name} takes {wanted}"
                )
            rng = value if isinstance(value, Range) else Range.from_dict(value, key)
            ranges[name] = _as_kind(key, name, rng, kind)
        else:
            fixed[name] = _fixed(key, value, kind)
    return fixed, ranges


def _fixed(key: str, value: object, kind: Kind) -> object:
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ExperimentConfigError(key, f"expected true or false, got {_describe(value)}")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise ExperimentConfigError(key, f"expected a string, got {_describe(value)}")
    number = _number(key, value)
    if kind == "int":
        if isinstance(number, float):
            if not number.is_integer():
                raise ExperimentConfigError(key, f"expected a whole number, got {number!r}")
            return int(number)
        return number
    return float(number)


def _as_kind(key: str, name: str, rng: Range, kind: Kind) -> Range:
    """Integer bounds on a float setting make a float range; whole float bounds on an integer
    setting make an integer range; fractional bounds on an integer setting are an error."""
    if kind == "float":
        step = None if rng.step is None else float(rng.step)
        return _rekeyed(key, lambda: Range(float(rng.low), float(rng.high), rng.log, step))
    if rng.integer:
        return rng
    bounds = [rng.low, rng.high] + ([] if rng.step is None else [rng.step])
    if not all(float(b).is_integer() for b in bounds):
        raise ExperimentConfigError(
            key,
            f"{name} takes whole numbers, so its range needs whole low, high (and step), "
            f"got low={rng.low!r}, high={rng.high!r}",
        )
    step = None if rng.step is None else int(rng.step)
    return _rekeyed(key, lambda: Range(int(rng.low), int(rng.high), rng.log, step, True))


def _rekeyed(key: str, make: Callable[[], Range]) -> Range:
    try:
        return make()
    except ExperimentConfigError as exc:
        raise ExperimentConfigError(key, exc.detail) from None


def _range_problem(r: Range) -> str | None:
    """What is wrong with a range, or None."""
    for name in ("low", "high", "step"):
        value = getattr(r, name)
        if value is None and name == "step":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number, got {_describe(value)}"
        if not math.isfinite(value):
            return f"{name} must be a finite number, got {value!r}"
        if isinstance(value, float) and is_subnormal(value):
            return f"{name} {value!r} is below the smallest normal float, which dynl2 reads as 0"
        if r.integer and not isinstance(value, int):
            return f"an integer range needs a whole {name}, got {value!r}"
    if not isinstance(r.log, bool):
        return f"log must be true or false, got {_describe(r.log)}"
    if not r.low < r.high:
        return f"low must be below high, got low={r.low!r}, high={r.high!r}"
    if r.log and r.low <= 0:
        return f"a log range needs low > 0, got low={r.low!r}"
    if r.step is not None:
        if r.log:
            return "step cannot be combined with log = true"
        if not r.step > 0:
            return f"step must be > 0, got {r.step!r}"
        count = (r.high - r.low) / r.step
        if not count <= MAX_STEPS:
            return (
                f"step {r.step!r} makes {count:.3g} steps from low to high; at most {MAX_STEPS} "
                "(leave step out for a continuous range)"
            )
        if abs(count - round(count)) > 1e-9 * max(1.0, count):
            return (
                f"high - low must be a whole number of steps, got low={r.low!r}, "
                f"high={r.high!r}, step={r.step!r}"
            )
    return None


def _check_floor_ceiling(arm: ArmConfig) -> None:
    """Reject any arm where some sampled floor could exceed some sampled ceiling."""
    kinds = _scheme_kinds(arm.scheme)
    if "floor" not in kinds or "ceiling" not in kinds:
        return

    def extreme(name: str, end: Literal["low", "high"]) -> tuple[float | None, str]:
        if name in arm.ranges:
            value = getattr(arm.ranges[name], end)
            return float(value), f"{name}'s {end} {value!r}"
        if name in arm.fixed:
            value = arm.fixed[name]
            return _as_float(value), f"{name} = {value!r}"
        default = _default(name, arm.scheme)
        return (None if default is None else _as_float(default)), f"the default {name} {default!r}"

    top_floor, floor_text = extreme("floor", "high")
    bottom_ceiling, ceiling_text = extreme("ceiling", "low")
    if top_floor is None or bottom_ceiling is None or top_floor <= bottom_ceiling:
        return
    given = "floor" if ("floor" in arm.fixed or "floor" in arm.ranges) else "ceiling"
    raise ExperimentConfigError(
        f"arms.{arm.name}.{given}",
        f"floor must never exceed ceiling, but {floor_text} is above {ceiling_text}",
    )


@functools.cache
def _train_kinds() -> Mapping[str, Kind]:
    """TrainConfig's scalar settings a config may give (not the seeds: [experiment] seed sets
    them, and fused groups set order_seed)."""
    hints = typing.get_type_hints(TrainConfig)
    skip = ("data", "model", "scheme", "seed", "order_seed")
    kinds = {f.name: _kind(hints[f.name]) for f in fields(TrainConfig) if f.name not in skip}
    return types.MappingProxyType(kinds)


@functools.cache
def _scheme_kinds(scheme: str) -> Mapping[str, Kind]:
    """A scheme's settings: its parameters (searchable), then apply and biases (fixed only)."""
    cls = SCHEMES[scheme]
    hints = typing.get_type_hints(cls)
    names = (*scheme_parameters(scheme), *_SCHEME_FLAGS)
    return types.MappingProxyType({name: _kind(hints[name]) for name in names})


def _kind(annotation: Any) -> Kind:
    options = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    assert len(options) == 1, annotation  # the trainer's fields are scalars or Optional
    kinds: dict[Any, Kind] = {bool: "bool", int: "int", float: "float", str: "str"}
    return kinds[options[0]]


def _default(name: str, scheme: str | None = None) -> object:
    """A TrainConfig (or scheme) field's default value."""
    cls: Any = TrainConfig if scheme is None else SCHEMES[scheme]
    field = next(f for f in fields(cls) if f.name == name)
    assert field.default is not MISSING, name
    return field.default


def _train_unknown(key: str, name: str) -> ExperimentConfigError:
    if name == "seed":
        return ExperimentConfigError(
            key, "set the seed once, as [experiment] seed; dynl2 derives each run's seed from it"
        )
    allowed = ", ".join(_train_kinds())
    return ExperimentConfigError(
        key, f"[train] has no setting {_describe(name)}; allowed: {allowed}"
    )


def _not_taken(scheme: str) -> Callable[[str, str], ExperimentConfigError]:
    def error(key: str, name: str) -> ExperimentConfigError:
        takes = ", ".join(_scheme_kinds(scheme))
        return ExperimentConfigError(
            key, f"scheme {scheme!r} does not take {_describe(name)}; it takes {takes}"
        )

    return error


# --------------------------------------------------------------------------------------------
# Small helpers.


def _toml_key(key: str, arm: str) -> str:
    """A trainer config key (``scheme.alpha``, ``lr``, ``data.n_val``) as a TOML key."""
    head, _, rest = key.partition(".")
    if head == "scheme":
        return f"arms.{arm}.{rest}" if rest else f"arms.{arm}"
    if head in ("data", "model"):
        return key
    if head == "seed":
        return "experiment.seed"
    return f"train.{key}"


def _trainer_call(make: Callable[[], dict[str, object]]) -> dict[str, object]:
    try:
        return make()
    except ConfigError as exc:  # keys are already "data.*" / "model.*", as in the TOML file
        raise ExperimentConfigError(exc.key, exc.detail) from None


def _check_name(key: str, value: object, what: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ExperimentConfigError(key, f"an {what} is {_NAME_RULE}, got {_describe(value)}")


def _scheme_name(key: str, value: object) -> str:
    if not isinstance(value, str) or value not in SCHEMES:
        raise ExperimentConfigError(
            key, f"unknown scheme {_describe(value)}; allowed: {', '.join(SCHEMES)}"
        )
    return value


def _choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ExperimentConfigError(
            key, f"must be one of {', '.join(allowed)}, got {_describe(value)}"
        )


def _number(key: str, value: object) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExperimentConfigError(key, f"expected a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise ExperimentConfigError(key, f"expected a finite number, got {value!r}")
    if isinstance(value, float) and is_subnormal(value):
        raise ExperimentConfigError(
            key,
            f"{value!r} is below the smallest normal float ({SMALLEST_NORMAL!r}); dynl2 treats "
            "such numbers as 0, so write 0 or a larger number",
        )
    return value


def _bounded(key: str, value: object, low: int, high: int) -> int:
    number = _number(key, value)
    if isinstance(number, float):
        if not number.is_integer():
            raise ExperimentConfigError(key, f"expected a whole number, got {number!r}")
        number = int(number)
    if not low <= number <= high:
        raise ExperimentConfigError(key, f"must be between {low} and {high}, got {number!r}")
    return number


def _as_float(value: object) -> float:
    assert isinstance(value, (int, float)), value  # validated by _params
    return float(value)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _freeze(value: object) -> Any:
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: object) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


def _is_range(value: object) -> bool:
    return isinstance(value, Mapping) and "low" in value


def _diff(a: object, b: object, prefix: str, out: list[str]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping) and not (_is_range(a) or _is_range(b)):
        for key in sorted(set(a) | set(b)):
            path = _join(prefix, str(key))
            if key not in a or key not in b:
                out.append(path)
            else:
                _diff(a[key], b[key], path, out)
    elif a != b:
        out.append(prefix)
