"""Synthetic stores for report tests: experiments, Optuna trials, epochs and evaluations
written straight through the store's public surface, no training; and the config a report
reads of them (:func:`spec`, or the stand-in :class:`Unchecked`).

This module imports no ``study`` at import time: ``test_imports`` uses it to check that
building a report imports no ``study``."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from storage import Store, best_by_search, study_name

if TYPE_CHECKING:
    from study.config.experiment import ExperimentConfig

LR = {"low": 1e-3, "high": 3e-2, "log": True}
ARMS: dict[str, dict[str, Any]] = {
    "dynamic": {"scheme": "dynamic", "alpha": {"low": 1e-4, "high": 1.0, "log": True},
                "floor": {"low": 1e-8, "high": 1e-2, "log": True}},
    "fixed": {"scheme": "fixed", "lam": {"low": 1e-6, "high": 1e-1, "log": True}},
    "none": {"scheme": "none"},
}  # fmt: skip


def config(
    name: str,
    arms: Mapping[str, Any] = ARMS,
    metric: str = "val_acc",
    dataset: str = "digits",
    n_trials: int = 4,
    seeds: int = 3,
) -> dict[str, Any]:
    return {
        "experiment": {"name": name, "seed": 0},
        "data": {"dataset": dataset, "seed": 0},
        "model": {"kind": "mlp", "hidden": [16]},
        "train": {"optimizer": "adam", "lr": LR, "epochs": 3, "batch_size": 100,
                  "device": "cpu"},
        "search": {"n_trials": n_trials, "sampler": "random", "pruner": "none",
                   "metric": metric},
        "arms": dict(arms),
        "evaluate": {"seeds": seeds},
    }  # fmt: skip


def create(store: Store, name: str, **kwargs: Any) -> dict[str, Any]:
    cfg = config(name, **kwargs)
    store.create_experiment(name, cfg)
    return cfg


def spec(store: Store, name: str) -> ExperimentConfig:
    """The stored config of experiment ``name``, parsed and validated as the study layer
    does before it builds a report: what :func:`reports.build_report_data` is given."""
    from study.config.experiment import parse_experiment  # at call time: see the module's note

    return parse_experiment(store.get_experiment(name).config)


def _direction(cfg: Mapping[str, Any]) -> str:
    return "maximize" if cfg["search"]["metric"] == "val_acc" else "minimize"


def _ranges(table: Mapping[str, Any]) -> dict[str, Range]:
    return {k: Range(**v) for k, v in table.items() if isinstance(v, dict)}


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    step: float | None = None


@dataclass(frozen=True)
class Arm:
    name: str
    scheme: str
    fixed: Mapping[str, object]


@dataclass(frozen=True)
class Search:
    n_trials: int
    sampler: str
    pruner: str
    metric: str
    replicates: int = 1
    sequential: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Evaluate:
    seeds: int
    margin: float | None = None


@dataclass(frozen=True)
class Unchecked:
    """A :class:`reports.ExperimentSpec` read straight from a config dict like
    :func:`config`'s, checked by nothing and made without ``study``. For the two reports a
    parsed config cannot give: one of names no valid config may carry (markup as experiment,
    arm, scheme or parameter names: the page must escape its spec too), and one built in a
    process that must not import ``study``. Every other test reads a parsed config
    (:func:`spec`); ``test_spec`` checks that both read a valid dict alike."""

    raw: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.raw["experiment"]["name"])

    @property
    def direction(self) -> str:
        return _direction(self.raw)

    @property
    def accuracy(self) -> bool:
        return self.raw["data"]["dataset"] != "linear"

    @property
    def arms(self) -> tuple[Arm, ...]:
        return tuple(
            Arm(name, body["scheme"], {k: v for k, v in body.items()
                                       if k != "scheme" and not isinstance(v, dict)})
            for name, body in self.raw["arms"].items()
        )  # fmt: skip

    @property
    def train_ranges(self) -> dict[str, Range]:
        return _ranges(self.raw["train"])

    @property
    def search(self) -> Search:
        return Search(**self.raw["search"])

    @property
    def evaluate(self) -> Evaluate:
        return Evaluate(**self.raw["evaluate"])

    def searched(self, arm_name: str) -> dict[str, Range]:
        return {**self.train_ranges, **_ranges(self.raw["arms"][arm_name])}

    def to_dict(self) -> Mapping[str, Any]:
        return self.raw


def _distributions(cfg: Mapping[str, Any], arm: str) -> dict[str, FloatDistribution]:
    searched = Unchecked(cfg).searched(arm)
    return {k: FloatDistribution(r.low, r.high, log=r.log) for k, r in searched.items()}


def add_trials(
    store: Store,
    cfg: Mapping[str, Any],
    arm: str,
    values: Sequence[float | None],
    *,
    state: TrialState = TrialState.COMPLETE,
    fail_reason: str | None = None,
    epochs: int = 0,
    seed: int = 0,
    replicate: int = 1,
) -> optuna.Study:
    """Add one trial per value (``None`` for FAIL trials), with random params in range."""
    name = cfg["experiment"]["name"]
    study = optuna.create_study(
        storage=store.optuna_storage(),
        study_name=study_name(name, arm, replicate),
        direction=_direction(cfg),
        load_if_exists=True,
    )
    dists = _distributions(cfg, arm)
    rng = random.Random(seed)
    for value in values:
        params = {}
        for key, d in dists.items():
            lo, hi = (math.log(d.low), math.log(d.high)) if d.log else (d.low, d.high)
            x = rng.uniform(lo, hi)
            params[key] = min(max(math.exp(x) if d.log else x, d.low), d.high)
        attrs: dict[str, Any] = {"config": {"device": "cpu"}}
        if fail_reason is not None:
            attrs["fail_reason"] = fail_reason
        if state == TrialState.COMPLETE:
            attrs["best_epoch"] = max(epochs, 1)
        study.add_trial(
            optuna.trial.create_trial(
                params=params, distributions=dists, value=value, state=state, user_attrs=attrs
            )
        )
        if epochs:
            trial_id = study.get_trials(deepcopy=False)[-1]._trial_id
            store.record_epochs(
                trial_id,
                [
                    {"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e,
                     "train_acc": 1 - 0.5 / e, "val_acc": 1 - 0.6 / e,
                     "lam_mean": 0.0 if arm == "none" else 1e-3 * e, "weight_norm": 2.0 + e}
                    for e in range(1, epochs + 1)
                ],
            )  # fmt: skip
    return study


def finish_search(store: Store, cfg: Mapping[str, Any]) -> None:
    """``n_trials`` complete trials for every searched arm that has none yet."""
    name = cfg["experiment"]["name"]
    for arm in cfg["arms"]:
        if "/" in arm:  # a name no study can carry (tests of hostile names)
            continue
        if _distributions(cfg, arm) and store.trials(name, arm).empty:
            n = cfg["search"]["n_trials"]
            add_trials(store, cfg, arm, [0.5 + 0.01 * i for i in range(n)], seed=len(arm))


def best_params(store: Store, name: str, arm: str, replicate: int = 1) -> dict[str, Any]:
    """The params of the best trial of ``arm``'s search ``replicate`` (``{}`` without one):
    what dynl2 evaluates."""
    cfg = store.get_experiment(name).config
    best = best_by_search(store.trials(name), _direction(cfg))
    return dict(best[(arm, replicate)]["params"]) if (arm, replicate) in best else {}


def add_evaluations(
    store: Store,
    name: str,
    arm: str,
    accs: Sequence[float | None],
    loss: bool = False,
    params: Mapping[str, Any] | None = None,
    replicate: int = 1,
) -> None:
    """Evaluations of ``params`` (default: the arm's best trial's, as dynl2 evaluates). A
    searched arm without trials first gets a finished search (:func:`finish_search`): dynl2
    evaluates what a finished search chose."""
    if params is None:
        finish_search(store, store.get_experiment(name).config)
    evaluated = best_params(store, name, arm, replicate) if params is None else dict(params)
    for seed, acc in enumerate(accs):
        store.record_evaluation(
            name, arm, seed, evaluated, replicate=replicate,
            test_loss=(acc if loss else 1.0 - acc) if acc is not None else None,
            test_acc=None if loss else acc,
            seconds=0.5,
        )  # fmt: skip
