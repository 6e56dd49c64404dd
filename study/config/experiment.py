"""The experiment config: one TOML file, validated completely before anything is written.

A config names the data, the model, the training settings shared by every arm (fixed values or
ranges tuned equally in all arms), the search budget, the arms (one regularization scheme each,
with its own fixed values and ranges) and the final evaluation. :func:`load_experiment` reads
it (the file through :mod:`study.config.reader`, the one bounded reader) and validates it; every
mistake raises :class:`ExperimentConfigError` naming the TOML key (``arms.dynamic.floor``), what
was given and what is allowed. :func:`require_device` checks the machine's devices.

This module is the config's public front: its parts live in :mod:`study.config.ranges` (typed
settings and :class:`Range`), :mod:`study.config.arms` (:class:`ArmConfig`),
:mod:`study.config.search` (``[search]``, ``[evaluate]``) and :mod:`study.config.sections`
(from TOML to the fields of :class:`ExperimentConfig`), and are imported from here.

Validated once, by the frozen dataclasses. Each validates and canonicalizes its own fields in
``__post_init__``, so a config built in Python (a test, a benchmark, a user of the API) obeys
exactly the rules of one read from a file, and parsing does no more than reshape the TOML into
those fields. A setting's type is the trainer's own field annotation and its value is converted
by the trainer's own ``convert``; the trainer's rules (alpha > 0, momentum < 1, cnn needs
sequences...) are applied by building each arm's ``TrainConfig`` at both ends of its ranges,
once, and Optuna's by building its distributions, so nothing either would refuse reaches the
store. Per trial, :meth:`ExperimentConfig.train_config` only adds the sampled values: the
trainer's ``TrainConfig.from_dict`` converts them and checks them together with the rest.

The validated :class:`ExperimentConfig` is frozen and canonical: :meth:`ExperimentConfig.to_dict`
is what the store keeps, and ``parse_experiment(cfg.to_dict()) == cfg``. Nothing here imports
torch: verbs that do not train parse stored configs too.
"""

from __future__ import annotations

import contextvars
import functools
import json
import os
import types
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from study.config.arms import ArmConfig, check_name
from study.config.own import check_loop, check_model, inspected_data, own_data, resolve_paths
from study.config.ranges import Range, bounded, distribution, field_types, split_params
from study.config.reader import ExperimentConfigError, read_config
from study.config.search import (
    MAX_BATCH,
    MAX_REPLICATES,
    MAX_SEEDS,
    MAX_TRIALS,
    METRICS,
    PRUNERS,
    SAMPLERS,
    EvaluateConfig,
    SearchConfig,
)
from study.config.sections import experiment_fields
from trainers._fields import describe
from trainers.config import TrainConfig, device_problem
from trainers.data import data_from_dict, data_to_dict
from trainers.errors import ConfigError
from trainers.models import model_from_dict, model_to_dict, plain

__all__ = [
    "MAX_ARMS",
    "MAX_BATCH",
    "MAX_REPLICATES",
    "MAX_SEED",
    "MAX_SEEDS",
    "MAX_TRIALS",
    "MAX_WORKERS",
    "METRICS",
    "PRUNERS",
    "REGRESSION_DATASETS",
    "SAMPLERS",
    "ArmConfig",
    "EvaluateConfig",
    "ExperimentConfig",
    "ExperimentConfigError",
    "Range",
    "SearchConfig",
    "inspected",
    "load_experiment",
    "parse_experiment",
    "require_device",
]

REGRESSION_DATASETS = ("linear",)  # datasets with no accuracy: only val_loss applies
_ASK_OPTUNA = contextvars.ContextVar("dynl2_ask_optuna", default=True)  # see parse_experiment
MAX_SEED = 2**31 - 1  # numpy-seeded samplers take < 2**32; headroom for seeds derived from it
MAX_ARMS = 64  # arms of one experiment: one Optuna study each
MAX_WORKERS = 256  # run and evaluate --workers: processes on one machine


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment, validated. ``data`` and ``model`` are stored resolved (every option
    with its value); ``arms`` are kept sorted by name, so the stored JSON reads back equal."""

    name: str  # letters, digits, '-', '_' (1 to 64)
    seed: int  # seeds the samplers and the trainer (0 to 2**31-1)
    data: Mapping[str, object]  # {"dataset": NAME, ...its options}
    model: Mapping[str, object]  # {"kind": NAME, ...its options}
    train_fixed: Mapping[str, object]  # TrainConfig settings held constant in every arm
    # TrainConfig settings searched in every arm: Ranges, or their tables {low, high, ...}
    train_ranges: Mapping[str, Range]
    search: SearchConfig
    arms: tuple[ArmConfig, ...]
    evaluate: EvaluateConfig

    def __post_init__(self) -> None:
        check_name("experiment.name", self.name, "experiment name")
        object.__setattr__(self, "seed", bounded("experiment.seed", self.seed, 0, MAX_SEED))
        data = _trainer_call(lambda: data_to_dict(data_from_dict(self.data, "data")))
        model = _model_with_ranges(self.model)
        object.__setattr__(self, "data", _freeze(data))
        object.__setattr__(self, "model", _freeze(model))
        both = sorted(set(self.train_fixed) & set(self.train_ranges))
        if both:
            raise ExperimentConfigError(
                f"train.{both[0]}", "given both as a fixed value and as a range"
            )
        fixed, ranges = split_params(
            "train", {**self.train_fixed, **self.train_ranges}, _train_fields(), _train_unknown
        )
        object.__setattr__(self, "train_fixed", types.MappingProxyType(fixed))
        object.__setattr__(self, "train_ranges", types.MappingProxyType(ranges))
        self._check_arms()
        if self.search.metric == "val_acc" and self.task == "regression":
            what = (
                f"{self.data['dataset']!r} is a regression dataset"
                if "dataset" in self.data
                else "the data is a regression task (float targets)"
            )
            raise ExperimentConfigError(
                "search.metric",
                f'val_acc needs a classification dataset, but {what}; use metric = "val_loss"',
            )
        for arm in self.arms:
            self._check_corners(arm)
            if _ASK_OPTUNA.get():
                self._check_optuna(arm)
        if self.search.replicates > 1 and not any(self.searched(a.name) for a in self.arms):
            raise ExperimentConfigError(
                "search.replicates",
                f"{self.search.replicates} replicates of a search, but no arm searches "
                "anything (no ranges in [train] or in an arm); give ranges, or replicates = 1",
            )
        if self.search.sequential is not None:
            schemes = {arm.scheme for arm in self.arms}
            if not {"dynamic", "fixed"} <= schemes:
                raise ExperimentConfigError(
                    "search.replicates",
                    "the sequential form { min, max } adds replicates until dynamic against "
                    "fixed is decided, so it needs a dynamic and a fixed arm; give both, or a "
                    "whole number of replicates",
                )
        margin = self.evaluate.margin
        if margin is not None and self.task == "classification" and margin >= 100:
            raise ExperimentConfigError(
                "evaluate.margin",
                f"is in accuracy points for a classification (a difference of at most 100), "
                f"got {margin!r}; write e.g. margin = 0.5 for half a point",
            )

    # -- queries ------------------------------------------------------------------------------

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        """The Optuna direction of ``search.metric``."""
        return METRICS[self.search.metric]

    @property
    def task(self) -> str:
        """classification or regression ("" for a user's data not yet read: see
        :func:`inspected`)."""
        if own_data(self.data):
            return str(self.data.get("task", ""))
        return "regression" if self.data["dataset"] in REGRESSION_DATASETS else "classification"

    @property
    def accuracy(self) -> bool:
        """Whether the dataset has an accuracy (classification); a regression has losses only."""
        return self.task != "regression"

    @property
    def max_epochs(self) -> int:
        """The most epochs any trial trains (a pruner's maximum resource)."""
        if "epochs" in self.train_ranges:
            return int(self.train_ranges["epochs"].high)
        epochs = self.train_fixed.get("epochs", TrainConfig.epochs)
        assert isinstance(epochs, int)  # typed in __post_init__
        return epochs

    def arm(self, name: str) -> ArmConfig:
        """The arm called ``name``."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        known = ", ".join(a.name for a in self.arms)
        raise ExperimentConfigError("arms", f"no arm named {name!r}; the arms are: {known}")

    @property
    def model_ranges(self) -> dict[str, Range]:
        """A factory model's searched arguments (``[model.args]`` ranges), by parameter name
        ``model.NAME``: searched in every arm, like ``[train]``'s ranges."""
        return model_ranges(self.model)

    def searched(self, arm_name: str) -> dict[str, Range]:
        """What Optuna searches in this arm, by parameter name: train ranges, a factory model's
        searched arguments, then the arm's."""
        return {**self.train_ranges, **self.model_ranges, **self.arm(arm_name).ranges}

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
            "model": model_at(self.model, sampled),
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
            "data": plain(self.data),
            "model": plain(self.model),
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
        if len(arms) > MAX_ARMS:
            raise ExperimentConfigError(
                "arms", f"at most {MAX_ARMS} arms (one Optuna study each), got {len(arms)}"
            )
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
        searched_keys |= {_param_key(name) for name in self.model_ranges}
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
        for name, rng in self.searched(arm.name).items():
            key = f"arms.{arm.name}.{name}" if name in arm.ranges else _toml_key(name, arm.name)
            key = _param_key(name) if name in self.model_ranges else key
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # one line on stderr, never a warning
                    distribution(rng)
            except Exception as exc:
                raise ExperimentConfigError(
                    key, f"Optuna cannot search this range: {exc or type(exc).__name__}"
                ) from None


def require_device(config: ExperimentConfig) -> None:
    """Refuse, before anything is written, a config this machine cannot train: its
    ``train.device`` is missing here (``cuda`` without CUDA, ``cuda:3`` with two GPUs, ``mps``
    off a Mac), the code it names does not import here, or its data (a user's file or loader)
    does not hash to the fingerprint it was stored with. The config itself only checks the
    spelling: it is stored, and read on machines that may have the device."""
    problem = device_problem(str(config.train_fixed.get("device", TrainConfig.device)))
    if problem is not None:
        raise ExperimentConfigError("train.device", problem)
    if own_data(config.data) and not config.data.get("fingerprint"):
        raise ExperimentConfigError(
            "data", "the data has not been read yet: load the config with load_experiment, "
            "or pass it through study.inspected"
        )  # fmt: skip
    inspected(config)


def inspected(config: ExperimentConfig) -> ExperimentConfig:
    """``config`` with a user's data read, checked and fingerprinted, a factory model built
    once on two examples and a loop imported (:mod:`study.config.own`); the same config when
    there is nothing to read. Data whose fingerprint differs from a stored one is refused,
    naming both."""
    doc = config.to_dict()
    if own_data(doc["data"]):
        doc["data"] = inspected_data(doc["data"])
    check_model(doc["model"], doc["data"])
    check_loop(doc["train"])
    return config if doc == config.to_dict() else parse_experiment(doc)


def load_experiment(path: str | os.PathLike[str]) -> ExperimentConfig:
    """Read (within :mod:`study.config.reader`'s limits) and validate an experiment TOML file;
    a user's data is read and checked (:func:`inspected`). Paths and code in the file are
    relative to its folder."""
    document = resolve_paths(read_config(path), os.path.dirname(os.path.abspath(path)))
    return inspected(parse_experiment(document))


def parse_experiment(mapping: Mapping[str, Any], *, shown: bool = False) -> ExperimentConfig:
    """Validate a parsed TOML document (or :meth:`ExperimentConfig.to_dict`'s output).
    ``shown``: a stored config read to be shown (``dynl2 status``): Optuna (a fifth of a
    second to import) is not asked again; its ranges still pass Range's own checks, which
    refuse what Optuna refuses (``tests/study/test_experiment.py``)."""
    token = _ASK_OPTUNA.set(not shown)
    try:
        return ExperimentConfig(**experiment_fields(mapping))
    finally:  # the next parse asks again
        _ASK_OPTUNA.reset(token)


# --------------------------------------------------------------------------------------------
# The [train] settings: TrainConfig's own fields.


@functools.cache
def _train_fields() -> Mapping[str, type]:
    """TrainConfig's scalar settings a config may give (not the seeds: [experiment] seed sets
    them, and fused groups set order_seed)."""
    skip = ("data", "model", "scheme", "seed", "order_seed")
    return field_types(TrainConfig, [f.name for f in fields(TrainConfig) if f.name not in skip])


def _train_unknown(key: str, name: str) -> ExperimentConfigError:
    if name == "seed":
        return ExperimentConfigError(
            key, "set the seed once, as [experiment] seed; dynl2 derives each run's seed from it"
        )
    allowed = ", ".join(_train_fields())
    return ExperimentConfigError(
        key, f"[train] has no setting {describe(name)}; allowed: {allowed}"
    )


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


def _param_key(name: str) -> str:
    """A searched model argument's TOML key: ``model.width`` is ``model.args.width``."""
    return f"model.args.{name.removeprefix('model.')}"


def model_ranges(model: Mapping[str, Any]) -> dict[str, Range]:
    """The ranges among a factory model's ``args``, as parameters ``model.NAME``."""
    args = model.get("args") if "factory" in model else None
    if not isinstance(args, Mapping):
        return {}
    return {
        f"model.{name}": Range.from_dict(value, f"model.args.{name}")
        for name, value in args.items()
        if _is_range(value)
    }


def model_at(model: Mapping[str, Any], values: Mapping[str, object]) -> dict[str, Any]:
    """A factory model's table with each searched argument at ``values[model.NAME]``."""
    ranges = model_ranges(model)
    if not ranges:
        return dict(model)
    args = {**model["args"], **{n[len("model.") :]: values[n] for n in ranges}}
    return {**model, "args": args}


def _model_with_ranges(model: Mapping[str, Any]) -> dict[str, object]:
    """The canonical model table: a factory's searched arguments as canonical ranges, its
    other arguments checked as the trainer checks them (with each range at its low end)."""
    if not isinstance(model, Mapping):
        return _trainer_call(lambda: model_to_dict(model_from_dict(model, "model")))
    ranges = {n[len("model.") :]: r for n, r in model_ranges(model).items()}
    lows = model_at(model, {f"model.{n}": r.low for n, r in ranges.items()})
    canonical = _trainer_call(lambda: model_to_dict(model_from_dict(lows, "model")))
    if ranges:
        args = canonical["args"]
        assert isinstance(args, dict)
        canonical["args"] = {**args, **{n: r.to_dict() for n, r in ranges.items()}}
    return canonical


def _trainer_call(make: Callable[[], dict[str, object]]) -> dict[str, object]:
    try:
        return make()
    except ConfigError as exc:  # keys are already "data.*" / "model.*", as in the TOML file
        raise ExperimentConfigError(exc.key, exc.detail) from None


def _freeze(value: object) -> Any:
    """A read-only copy: mappings as read-only views, lists as tuples."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _is_range(value: object) -> bool:
    return isinstance(value, Mapping) and "low" in value


def _diff(a: object, b: object, prefix: str, out: list[str]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping) and not (_is_range(a) or _is_range(b)):
        for key in sorted(set(a) | set(b)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                out.append(path)
            else:
                _diff(a[key], b[key], path, out)
    elif a != b:
        out.append(prefix)
