"""The experiment config: parsing, the canonical form, trainer configs, and one clear error (with
the TOML key) for each bad input."""

from __future__ import annotations

import copy
import itertools
import json
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from optuna.distributions import FloatDistribution, IntDistribution

from reports.stats import MIN_UNITS
from study.config import experiment
from study.config.experiment import (
    ArmConfig,
    EvaluateConfig,
    ExperimentConfig,
    ExperimentConfigError,
    Range,
    SearchConfig,
    load_experiment,
    parse_experiment,
    require_device,
)
from study.config.ranges import distribution
from study.config.reader import MAX_CONFIG_BYTES, number_problem, read_config
from study.errors import StudyError
from study.search import studies
from trainers import DigitsData, DynamicScheme, FixedScheme, MLPModel, NoneScheme, TrainConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "mnist1d-mlp.toml"
TINY = ROOT / "examples" / "tiny.toml"

BASE: dict[str, Any] = {
    "experiment": {"name": "base", "seed": 7},
    "data": {"dataset": "digits"},
    "model": {"kind": "mlp", "hidden": [16]},
    "train": {
        "optimizer": "adam",
        "lr": {"low": 1e-3, "high": 3e-2, "log": True},
        "epochs": 3,
        "batch_size": 100,
        "device": "cpu",
    },
    "search": {"n_trials": 4, "sampler": "random", "pruner": "none", "metric": "val_acc"},
    "arms": {
        "dynamic": {
            "scheme": "dynamic",
            "alpha": {"low": 1e-4, "high": 1.0, "log": True},
            "floor": {"low": 1e-8, "high": 1e-2, "log": True},
        },
        "fixed": {"scheme": "fixed", "lam": {"low": 1e-6, "high": 1e-1, "log": True}},
        "none": {"scheme": "none"},
    },
    "evaluate": {"seeds": 2},
}

DELETE = object()


def _with(*changes: tuple[str, Any]) -> dict[str, Any]:
    """BASE with each dotted key set to a value (or deleted)."""
    doc = copy.deepcopy(BASE)
    for path, value in changes:
        *parents, last = path.split(".")
        table = doc
        for part in parents:
            table = table.setdefault(part, {})
        if value is DELETE:
            del table[last]
        else:
            table[last] = copy.deepcopy(value)
    return doc


def test_example_parses():
    config = load_experiment(EXAMPLE)
    assert config.name == "mnist1d-mlp"
    assert config.seed == 0
    assert dict(config.data) == {"dataset": "mnist1d", "n_val": 1000, "seed": 0}
    assert dict(config.model) == {"kind": "mlp", "hidden": (100, 100)}
    assert dict(config.train_fixed) == {
        "optimizer": "adam", "epochs": 150, "batch_size": 100, "device": "auto",
    }  # fmt: skip
    assert dict(config.train_ranges) == {"lr": Range(1e-3, 3e-2, log=True)}
    assert config.search == SearchConfig(40, "tpe", "median", "val_acc", batch=None, replicates=3)
    assert config.evaluate == EvaluateConfig(10)
    assert [a.name for a in config.arms] == ["dynamic", "fixed", "none"]
    assert config.arm("dynamic").ranges == {
        "alpha": Range(1e-4, 1.0, log=True),
        "floor": Range(1e-8, 1e-2, log=True),
    }
    assert config.arm("none") == ArmConfig("none", "none", {}, {})
    assert config.direction == "maximize"
    assert config.max_epochs == 150


def test_tiny_example_builds_a_cpu_trainer_config():
    config = load_experiment(TINY)
    assert config.search.n_trials == 4 and config.evaluate.seeds == 2
    # what people copy: the fewest replicates whose verdict has an interval (reports.stats)
    assert config.search.replicates == MIN_UNITS
    assert (config.search.sampler, config.search.pruner) == ("random", "none")
    assert sorted(a.name for a in config.arms) == ["dynamic", "fixed", "none"]
    tc = config.train_config("none", {"lr": 0.01}, seed=1)
    assert tc.device == "cpu" and tc.epochs == 3 and isinstance(tc.data, DigitsData)
    assert tc.model == MLPModel(hidden=(16,))


def test_round_trip_through_json_with_sorted_keys():
    for config in (load_experiment(EXAMPLE), parse_experiment(BASE)):
        stored = json.loads(json.dumps(config.to_dict(), sort_keys=True, allow_nan=False))
        again = parse_experiment(stored)
        assert again == config
        assert again.to_dict() == config.to_dict()
        assert again.diff(config) == []


def test_sequential_replicates_and_a_margin_round_trip_and_resume():
    """``replicates = { min, max }`` reads as the first stage's count plus the stages; the
    stored form keeps the table, whatever stage a run reached; a margin is kept as given."""
    from dataclasses import replace

    from study.run.runs import _RAISABLE

    doc = _with(("search.replicates", {"min": 3, "max": 12}), ("evaluate.margin", 0.5))
    config = parse_experiment(doc)
    assert config.search.replicates == 3 and config.search.sequential == (3, 12, 2)
    assert config.search.most == 12 and config.evaluate.margin == 0.5
    stored = config.to_dict()
    assert stored["search"]["replicates"] == {"min": 3, "max": 12, "step": 2}
    assert stored["evaluate"]["margin"] == 0.5
    assert parse_experiment(json.loads(json.dumps(stored))) == config
    later = replace(config, search=replace(config.search, replicates=7))  # stage 3 reached
    assert later.to_dict() == stored and later.diff(config) == []
    with pytest.raises(ExperimentConfigError, match=r"outside min 3 \.\. max 12"):
        replace(config, search=replace(config.search, replicates=13))
    raised = parse_experiment(_with(("search.replicates", {"min": 3, "max": 16}),
                                    ("evaluate.margin", 0.5)))  # fmt: skip
    assert raised.diff(config) == ["search.replicates.max"]
    assert _RAISABLE["search.replicates.max"](raised) > _RAISABLE["search.replicates.max"](config)
    assert parse_experiment(BASE).to_dict()["evaluate"] == {"seeds": 2}  # no margin: as before
    with pytest.raises(ExperimentConfigError, match="needs a dynamic and a fixed arm"):
        parse_experiment(
            _with(("search.replicates", {"min": 3, "max": 5}), ("arms.fixed", DELETE))
        )
    with pytest.raises(ExperimentConfigError, match=r"search\.sequential|no setting"):
        parse_experiment(_with(("search.sequential", [3, 12, 2])))


def test_canonical_form():
    doc = _with(
        ("arms", {"zeta": {"scheme": "none"}, **BASE["arms"]}),
        ("train.lr", 1),  # an int for a float setting
        ("train.epochs", {"low": 2.0, "high": 6.0, "step": 2.0}),  # whole floats: an int range
        ("arms.fixed.lam", {"low": 0, "high": 1}),  # int bounds on a float setting
        ("arms.fixed.apply", "decoupled"),
    )
    config = parse_experiment(doc)
    assert config.train_fixed["lr"] == 1.0 and isinstance(config.train_fixed["lr"], float)
    assert config.train_ranges["epochs"] == Range(2, 6, step=2, integer=True)
    lam = config.arm("fixed").ranges["lam"]
    assert lam == Range(0.0, 1.0) and isinstance(lam.low, float) and isinstance(lam.high, float)
    assert config.arm("fixed").fixed == {"apply": "decoupled"}
    assert [a.name for a in config.arms] == ["dynamic", "fixed", "none", "zeta"]  # sorted
    assert config.data == {"dataset": "digits", "val_fraction": 0.2, "test_fraction": 0.2,
                           "seed": 0}  # fmt: skip
    assert config.to_dict()["train"]["epochs"] == {"low": 2, "high": 6, "log": False, "step": 2}
    assert parse_experiment(config.to_dict()) == config


def test_config_is_read_only():
    config = parse_experiment(BASE)
    with pytest.raises(TypeError):
        config.train_fixed["epochs"] = 9  # type: ignore[index]
    with pytest.raises(TypeError):
        config.arm("dynamic").ranges["alpha"] = Range(1, 2)  # type: ignore[index]
    with pytest.raises(AttributeError):
        config.name = "other"  # type: ignore[misc]
    assert config.model["hidden"] == (16,)
    assert hash(config) == hash(parse_experiment(copy.deepcopy(BASE)))
    assert len({config, parse_experiment(BASE), parse_experiment(_with(("data.seed", 1)))}) == 2


def test_diff_names_the_changed_keys():
    a = parse_experiment(BASE)
    b = parse_experiment(
        _with(
            ("train.epochs", 5),
            ("arms.dynamic.alpha", {"low": 1e-3, "high": 1.0, "log": True}),
            ("arms.fixed.lam", 1e-3),
            ("arms.awd", {"scheme": "awd"}),
            ("search.batch", 2),
            ("data.seed", 1),
        )
    )
    assert a.diff(b) == [
        "arms.awd",
        "arms.dynamic.alpha",
        "arms.fixed.lam",
        "data.seed",
        "search.batch",
        "train.epochs",
    ]
    assert b.diff(a) == a.diff(b)
    assert a.diff(a) == []


def test_searched_and_train_config():
    config = parse_experiment(
        _with(("arms.dynamic.ceiling", 0.5), ("arms.dynamic.apply", "decoupled"))
    )
    assert config.searched("dynamic") == {
        "lr": Range(1e-3, 3e-2, log=True),
        "alpha": Range(1e-4, 1.0, log=True),
        "floor": Range(1e-8, 1e-2, log=True),
    }
    assert config.searched("none") == {"lr": Range(1e-3, 3e-2, log=True)}
    tc = config.train_config("dynamic", {"lr": 0.02, "alpha": 0.3, "floor": 1e-5}, seed=11)
    assert tc == TrainConfig(
        data=DigitsData(),
        model=MLPModel(hidden=(16,)),
        scheme=DynamicScheme(apply="decoupled", alpha=0.3, floor=1e-5, ceiling=0.5),
        optimizer="adam",
        lr=0.02,
        epochs=3,
        batch_size=100,
        seed=11,
        device="cpu",
    )
    tc = config.train_config("fixed", {"lr": 0.005, "lam": 1e-4}, seed=0)
    assert tc.scheme == FixedScheme(lam=1e-4) and tc.lr == 0.005
    assert config.train_config("none", {"lr": 0.01}, seed=0).scheme == NoneScheme()


def test_train_config_integer_ranges_and_key_mapping():
    config = parse_experiment(_with(("train.batch_size", {"low": 16, "high": 256, "log": True})))
    assert config.train_ranges["batch_size"].integer
    tc = config.train_config("fixed", {"lr": 0.01, "batch_size": 64, "lam": 0.0}, seed=0)
    assert tc.batch_size == 64
    with pytest.raises(ExperimentConfigError) as info:  # a sampled value the trainer rejects
        config.train_config("dynamic", {"lr": 0.01, "batch_size": 64, "alpha": -1.0,
                                        "floor": 0.0}, seed=0)  # fmt: skip
    assert info.value.key == "arms.dynamic.alpha"
    with pytest.raises(ValueError, match="exactly the searched parameters"):
        config.train_config("fixed", {"lr": 0.01}, seed=0)


def test_metric_direction_and_unknown_arm():
    config = parse_experiment(_with(("search.metric", "val_loss")))
    assert config.direction == "minimize"
    with pytest.raises(ExperimentConfigError, match="no arm named 'awd'; the arms are: dynamic"):
        config.arm("awd")


def test_error_is_a_study_error_and_pickles():
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiment(_with(("search.n_trials", 0)))
    exc = info.value
    assert isinstance(exc, StudyError) and isinstance(exc, ValueError)
    assert str(exc) == "search.n_trials: must be between 1 and 100000, got 0"
    again = pickle.loads(pickle.dumps(exc))
    assert (again.key, again.detail, str(again)) == (exc.key, exc.detail, str(exc))


def test_direct_construction_is_validated():
    arm = ArmConfig("fixed", "fixed", {}, {"lam": Range(1e-6, 1e-1, log=True)})
    with pytest.raises(ExperimentConfigError) as info:
        ExperimentConfig(
            "x", 0, {}, {}, {}, {"lr": Range(0.0, 1.0)}, SearchConfig(), (arm,), EvaluateConfig()
        )
    assert info.value.key == "train.lr"  # lr = 0 at the range's low end
    with pytest.raises(ExperimentConfigError, match=r"^range: low must be below high"):
        Range(2.0, 1.0)
    with pytest.raises(ExperimentConfigError) as info:
        ArmConfig("fixed", "fixed", {"lam": 0.1}, {"lam": Range(0.0, 1.0)})
    assert info.value.key == "arms.fixed.lam"


GOOD = [
    pytest.param(_with(("data", DELETE), ("model", DELETE)), id="defaults: mnist1d mlp"),
    pytest.param(_with(("train", DELETE), ("search", DELETE), ("evaluate", DELETE)), id="few"),
    pytest.param(_with(("arms.dynamic.ceiling", 1e-2)), id="floor high == ceiling"),
    pytest.param(_with(("arms.dynamic.ceiling", {"low": 0.1, "high": 10.0})), id="ceiling range"),
    pytest.param(_with(("train.momentum", {"low": 0.0, "high": 0.9, "step": 0.1})), id="step"),
    pytest.param(_with(("data", {"dataset": "linear"}), ("search.metric", "val_loss")), id="lin"),
    pytest.param(_with(("experiment.name", "A-b_9" * 12 + "abcd")), id="64-char name"),
    pytest.param(_with(("data.val_fraction", 0.02), ("data.test_fraction", 0.02)), id="2%"),
    pytest.param(_with(("train.device", "cuda:0")), id="cuda:0 is spelled right anywhere"),
    pytest.param(_with(("arms", {f"a{i}": {"scheme": "none"} for i in range(64)})), id="64 arms"),
    pytest.param(_with(("model.hidden", [16] * 64)), id="64 layers"),
    pytest.param(_with(("train.lr.low", 2.2250738585072014e-308)), id="smallest normal"),
    pytest.param(
        _with(
            ("arms.swd", {"scheme": "swd", "lam": {"low": 1e-5, "high": 1e-1, "log": True}}),
            (
                "arms.schedule",
                {
                    "scheme": "schedule",
                    "shape": "cosine",
                    "lam_start": 0.0,
                    "lam_end": {"low": 1e-5, "high": 1e-1, "log": True},
                },
            ),
        ),
        id="the comparators: swd and a cosine schedule",
    ),
]


@pytest.mark.parametrize("doc", GOOD)
def test_good_configs(doc):
    config = parse_experiment(doc)
    assert parse_experiment(config.to_dict()) == config


# (changes to BASE, the key the error names, a fragment of its message)
# fmt: off
BAD: list[tuple[str, tuple[tuple[str, Any], ...], str, str]] = [
    # sections and keys
    ("unknown section", (("extra", {}),), "extra", "allowed: experiment, data"),
    ("unknown experiment key", (("experiment.owner", "me"),), "experiment.owner", "name, seed"),
    ("missing experiment", (("experiment", DELETE),), "experiment", "missing"),
    ("experiment not a table", (("experiment", "x"),), "experiment", "expected a table"),
    ("missing name", (("experiment.name", DELETE),), "experiment.name", "missing"),
    ("unknown train key", (("train.lr_decay", 0.1),), "train.lr_decay", "allowed: optimizer"),
    ("train seed", (("train.seed", 1),), "train.seed", "[experiment] seed"),
    ("unknown search key", (("search.trials", 4),), "search.trials", "allowed: n_trials"),
    ("unknown evaluate key", (("evaluate.runs", 4),), "evaluate.runs", "allowed: seeds"),
    ("search not a table", (("search", 4),), "search", "expected a table [search]"),
    ("unknown data option", (("data.n_val", 100),), "data.n_val", "no setting 'n_val'"),
    ("unknown model option", (("model.depth", 3),), "model.depth", "no setting 'depth'"),
    # names
    ("name with slash", (("experiment.name", "a/b"),), "experiment.name", "letters"),
    ("name with dots", (("experiment.name", ".."),), "experiment.name", "'..'"),
    ("name with space", (("experiment.name", "a b"),), "experiment.name", "digits, '-' or '_'"),
    ("name with html", (("experiment.name", "<b>x</b>"),), "experiment.name", "'<b>x</b>'"),
    ("name with quote", (("experiment.name", 'a"b'),), "experiment.name", "letters"),
    ("unicode name", (("experiment.name", "lambda-λ"),), "experiment.name", "letters"),
    ("empty name", (("experiment.name", ""),), "experiment.name", "1 to 64"),
    ("65-char name", (("experiment.name", "a" * 65),), "experiment.name", "1 to 64"),
    ("name not a string", (("experiment.name", 3),), "experiment.name", "got 3"),
    ("arm name", (("arms", {"a b": {"scheme": "none"}}),), "arms", "got 'a b'"),
    # types
    ("bool is not a number", (("train.lr", True),), "train.lr", "expected a number, got True"),
    ("string for number", (("train.epochs", "ten"),), "train.epochs", "expected a number"),
    ("fractional epochs", (("train.epochs", 2.5),), "train.epochs", "whole number, got 2.5"),
    ("nan fixed", (("train.lr", float("nan")),), "train.lr", "finite"),
    ("inf range", (("train.lr.high", float("inf")),), "train.lr.high", "finite"),
    ("bool seed", (("experiment.seed", True),), "experiment.seed", "expected a number"),
    ("negative seed", (("experiment.seed", -1),), "experiment.seed", "between 0 and"),
    ("huge seed", (("experiment.seed", 2**40),), "experiment.seed", "2147483647"),
    ("number for string", (("train.optimizer", 1),), "train.optimizer", "expected a string"),
    ("range for a string", (("train.device", {"low": 0, "high": 1}),), "train.device", "string"),
    ("range for apply", (("arms.fixed.apply", {"low": 0, "high": 1}),), "arms.fixed.apply",
     "only numeric settings take a range"),
    ("string for biases", (("arms.fixed.biases", "yes"),), "arms.fixed.biases", "true or false"),
    # ranges
    ("low == high", (("train.lr.low", 3e-2),), "train.lr", "low must be below high"),
    ("low > high", (("arms.fixed.lam.low", 1.0),), "arms.fixed.lam", "low=1.0, high=0.1"),
    ("log touching 0", (("arms.fixed.lam.low", 0.0),), "arms.fixed.lam", "log range needs low"),
    ("log negative", (("arms.fixed.lam.low", -1e-3),), "arms.fixed.lam", "low > 0"),
    ("missing high", (("train.lr.high", DELETE),), "train.lr.high", "missing"),
    ("unknown range key", (("train.lr.mid", 1e-2),), "train.lr.mid", "low, high, log, step"),
    ("log not bool", (("train.lr.log", "yes"),), "train.lr.log", "true or false"),
    ("step with log", (("train.lr.step", 1e-3),), "train.lr", "step cannot be combined"),
    ("step not dividing", (("train.epochs", {"low": 1, "high": 10, "step": 4}),),
     "train.epochs", "whole number of steps"),
    ("fractional int range", (("train.epochs", {"low": 1.5, "high": 4.0}),), "train.epochs",
     "takes whole numbers"),
    ("zero step", (("train.momentum", {"low": 0.0, "high": 0.5, "step": 0.0}),),
     "train.momentum", "step must be > 0"),
    # arms
    ("no arms key", (("arms", DELETE),), "arms", "missing"),
    ("no arms", (("arms", {}),), "arms", "at least one arm"),
    ("arm not a table", (("arms.none", "none"),), "arms.none", "expected a table"),
    ("missing scheme", (("arms.none.scheme", DELETE),), "arms.none.scheme", "missing"),
    ("unknown scheme", (("arms.none.scheme", "l3"),), "arms.none.scheme", "unknown scheme 'l3'"),
    ("param the scheme lacks", (("arms.fixed.alpha", 0.1),), "arms.fixed.alpha",
     "scheme 'fixed' does not take 'alpha'; it takes lam"),
    ("param for none", (("arms.none.lam", 0.1),), "arms.none.lam", "it takes apply, biases"),
    ("alpha range at 0", (("arms.dynamic.alpha", {"low": 0.0, "high": 1.0}),),
     "arms.dynamic.alpha",
     'must be a number > 0 or "lr" (the learning rate), got 0.0 (the low end of its range)'),
    ("fixed alpha negative", (("arms.dynamic.alpha", -1.0),), "arms.dynamic.alpha", "> 0"),
    ("unknown apply", (("arms.fixed.apply", "both"),), "arms.fixed.apply", "coupled"),
    ("swd with sgd", (("train.optimizer", "sgd"), ("arms.swd", {"scheme": "swd"})),
     "train.optimizer", "scheme 'swd' needs optimizer 'adam', got 'sgd'"),
    ("swd coupled", (("arms.swd", {"scheme": "swd", "apply": "coupled"}),), "arms.swd.apply",
     "decoupled by definition"),
    ("shape searched", (("arms.s", {"scheme": "schedule", "shape": {"low": 0, "high": 1}}),),
     "arms.s.shape", "only numeric settings take a range; shape takes a string"),
    ("unknown shape", (("arms.s", {"scheme": "schedule", "shape": "step"}),), "arms.s.shape",
     "linear, cosine"),
    ("negative lam_end",
     (("arms.s", {"scheme": "schedule", "lam_end": {"low": -1.0, "high": 1.0}}),),
     "arms.s.lam_end", ">= 0"),
    # floor and ceiling
    ("fixed floor > ceiling", (("arms.dynamic.floor", 0.1), ("arms.dynamic.ceiling", 0.01)),
     "arms.dynamic.floor", "floor = 0.1 is above ceiling = 0.01"),
    ("floor high > ceiling", (("arms.dynamic.ceiling", 1e-3),), "arms.dynamic.floor",
     "floor's high 0.01 is above ceiling = 0.001"),
    ("floor > ceiling low", (("arms.dynamic.floor", 1e-3),
                             ("arms.dynamic.ceiling", {"low": 1e-4, "high": 1.0})),
     "arms.dynamic.floor", "above ceiling's low 0.0001"),
    ("default floor > ceiling", (("arms.dynamic.floor", DELETE),
                                 ("arms.dynamic.ceiling", {"low": 1e-10, "high": 1.0})),
     "arms.dynamic.ceiling", "the default floor 1e-08"),
    # trainer checks at the corners
    ("cnn on digits", (("model", {"kind": "cnn"}),), "model.kind", "cnn needs sequence data"),
    ("unknown dataset", (("data.dataset", "cifar"),), "data.dataset", "unknown dataset"),
    ("unknown model", (("model.kind", "rnn"),), "model.kind", "unknown model"),
    ("momentum reaching 1", (("train.momentum", {"low": 0.5, "high": 1.0}),), "train.momentum",
     "the high end of its range"),
    ("nesterov, momentum 0", (("train.optimizer", "sgd"), ("train.nesterov", True),
                              ("train.momentum", {"low": 0.0, "high": 0.9})),
     "train.nesterov", "with the searched values at their low ends"),
    ("lr too high", (("train.lr.high", 20.0),), "train.lr", "(0, 10]"),
    ("bad device", (("train.device", "gpu"),), "train.device", "auto, cpu"),
    ("zero epochs", (("train.epochs", 0),), "train.epochs", "between 1 and"),
    ("bad optimizer", (("train.optimizer", "lbfgs"),), "train.optimizer", "adam"),
    # search and evaluate
    ("unknown sampler", (("search.sampler", "grid"),), "search.sampler", "tpe, random, qmc"),
    ("unknown pruner", (("search.pruner", "asha"),), "search.pruner", "none, median, hyperband"),
    ("unknown metric", (("search.metric", "test_acc"),), "search.metric", "val_acc, val_loss"),
    ("accuracy on regression", (("data", {"dataset": "linear"}),), "search.metric",
     "regression"),
    ("zero trials", (("search.n_trials", 0),), "search.n_trials", "between 1 and 100000"),
    ("too many trials", (("search.n_trials", 100_001),), "search.n_trials", "got 100001"),
    ("bool trials", (("search.n_trials", True),), "search.n_trials", "expected a number"),
    ("zero batch", (("search.batch", 0),), "search.batch", "between 1 and 4096"),
    ("huge batch", (("search.batch", 4097),), "search.batch", "between 1 and 4096"),
    ("zero seeds", (("evaluate.seeds", 0),), "evaluate.seeds", "between 1 and 1000"),
    ("too many seeds", (("evaluate.seeds", 1001),), "evaluate.seeds", "got 1001"),
    # issue 17: what only the trainer, Optuna or the float parser would have refused, late
    ("device with a newline", (("train.device", "cpu\n"),), "train.device", "'cpu\\n'"),
    ("device in Arabic digits", (("train.device", "cuda:\u0663"),), "train.device", "auto, cpu"),
    ("device cpu:0", (("train.device", "cpu:0"),), "train.device", "auto, cpu"),
    ("data seed -1", (("data.seed", -1),), "data.seed", "between 0 and 2**63-1"),
    ("one validation example", (("data.val_fraction", 0.001),), "data.val_fraction",
     "at least 10"),
    ("mnist1d n_val 9", (("data", {"dataset": "mnist1d", "n_val": 9}),), "data.n_val",
     "between 10 and 3999"),
    ("subnormal low", (("train.lr.low", 5e-324),), "train.lr.low", "smallest normal float"),
    ("subnormal fixed", (("arms.dynamic.floor", 1e-310),), "arms.dynamic.floor",
     "smallest normal float"),
    ("step 1e-300", (("train.lr", {"low": 1e-3, "high": 3e-2, "step": 1e-300}),), "train.lr",
     "at most 1000000000"),
    ("infinitely many steps", (("train.momentum", {"low": -1e308, "high": 1e308, "step": 1.0}),),
     "train.momentum", "inf steps"),
    ("65 arms", (("arms", {f"a{i}": {"scheme": "none"} for i in range(65)}),), "arms",
     "at most 64 arms"),
    ("65 layers", (("model.hidden", [16] * 65),), "model.hidden", "at most 64 layers"),
    ("10^9 parameters", (("model.hidden", [30_000, 30_000]),), "model.hidden",
     "at most 10000000"),
    ("linear data of 10^11 numbers", (("data", {"dataset": "linear", "n_features": 100_000,
                                                "n_train": 1_000_000}),),
     "data.n_features", "at most 50000000"),
]
# fmt: on


@pytest.mark.parametrize(
    ("changes", "key", "fragment"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
def test_bad_config(changes, key, fragment):
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiment(_with(*changes))
    assert info.value.key == key, str(info.value)
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{key}: ")


BAD_FILES = [
    ("syntax error", b'[experiment]\nname = "x\n', "invalid TOML", "line 2"),
    ("duplicate key", b"[experiment]\nseed = 1\nseed = 2\n", "invalid TOML", "line 3"),
    ("not utf-8", b'[experiment]\nname = "\xff"\n', "not UTF-8", "byte"),
]


@pytest.mark.parametrize(
    ("content", "fragment", "where"), [pytest.param(*c[1:], id=c[0]) for c in BAD_FILES]
)
def test_bad_toml_file(tmp_path, content, fragment, where):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ExperimentConfigError) as info:
        load_experiment(path)
    assert info.value.key == str(path)
    assert fragment in info.value.detail and where in info.value.detail


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ExperimentConfigError) as info:
        load_experiment(tmp_path / "nope.toml")
    assert (info.value.key, info.value.detail) == (str(tmp_path / "nope.toml"), "no such file")
    with pytest.raises(ExperimentConfigError, match="is a directory"):
        load_experiment(tmp_path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    with pytest.raises(ExperimentConfigError) as info:
        load_experiment(path)
    assert info.value.key == "experiment"
    assert "missing" in info.value.detail


# Valid TOML the reader's scan must follow exactly as tomllib does (it only measures).
VALID_TOML = [
    'a = """x ""y"" z""""\nb = \'\'\'it\'\'s\'\'\'\'\nc = "q\\"uote"\nd = \'C:\\path\'\n',
    'a = [1, # one\n  2,  # two\n]\nb = [ ]\nc = [[1, 2], ["x", {k = 1}]]\n',
    "[t]\r\nx = 1\r\n[[arr.of]]\r\ny = 2\r\n[[arr.of]]\r\ny = 3\r\n",
    '"quoted.key" = 1\nsite."google.com" = true\na . b = { c.d = 1, e = [] }\n',
    "x = 0xDEAD_BEEF\ny = 0o17\nz = 0b101\nw = -9_223_372_036_854_775_808\n",
    "x = inf\ny = -nan\nz = 1e-300\nw = 0.0e-999\nv = 2.2250738585072014e-308\n",
    "d = 1979-05-27 07:32:00Z\nt = 07:32:00\nl = 1979-05-27T00:32:00.999999-07:00\n",
    'x = "#not a comment"  # a comment\n# [not.a.table]\n',
]


@pytest.mark.parametrize("text", VALID_TOML)
def test_reader_reads_valid_toml_as_tomllib_does(tmp_path, text):
    import tomllib

    path = tmp_path / "c.toml"
    path.write_text(text, newline="")
    assert repr(read_config(path)) == repr(tomllib.loads(text))  # repr: nan != nan


def test_reader_reads_the_examples_as_tomllib_does():
    import tomllib

    for path in sorted((ROOT / "examples").glob("*.toml")):
        assert read_config(path) == tomllib.loads(path.read_text()), path


@pytest.mark.parametrize(
    ("token", "fragment"),
    [
        ("5e-324", "smallest normal"),
        ("1e-400", "smallest normal"),
        ("-4.9e-324", "smallest normal"),
        ("9223372036854775808", "64-bit"),
        ("-9223372036854775809", "64-bit"),
        ("9" * 5000, "5000 digits"),
        ("0x1_0000_0000_0000_0000", "64-bit"),
    ],
)
def test_numbers_as_written(token, fragment):
    assert fragment in (number_problem(token) or "")


@pytest.mark.parametrize(
    "token", ["0.0", "-0e10", "1e-300", "9223372036854775807", "0x7fff_ffff_ffff_ffff", "inf"]
)
def test_numbers_as_written_fine(token):
    assert number_problem(token) is None


def test_reader_size_cap(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b"#" * MAX_CONFIG_BYTES)
    assert read_config(path) == {}
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES + 1))
    with pytest.raises(ExperimentConfigError, match="at most 262144 bytes"):
        read_config(path)


def test_optuna_is_asked_before_anything_is_written(monkeypatch):
    def refuse(r):
        raise ValueError("no such range")

    monkeypatch.setattr(experiment, "distribution", refuse)
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiment(BASE)
    assert info.value.key == "train.lr"  # the first searched range of the first arm
    assert "Optuna cannot search this range: no such range" in info.value.detail


def test_a_config_read_back_to_be_shown_does_not_ask_optuna(monkeypatch):
    def refuse(r):
        raise ValueError("no such range")

    monkeypatch.setattr(experiment, "distribution", refuse)
    shown = parse_experiment(BASE, shown=True)  # dynl2 status: the stored config, shown
    assert shown.searched("dynamic")
    with pytest.raises(ExperimentConfigError, match="Optuna cannot search"):
        parse_experiment(BASE)  # and the next parse asks again


@pytest.mark.parametrize("integer", [False, True])
def test_every_range_dynl2_accepts_optuna_accepts(integer):
    """What lets a shown config skip Optuna: Range's own checks refuse all Optuna refuses."""
    bounds = [-3, -1, 0, 1, 2, 10] if integer else [-2.5, -1e-3, 0.0, 1e-6, 0.5, 1.0, 3.0]
    steps = [None, 1, 2, 3] if integer else [None, 1e-3, 0.25, 1.0, 5.0]
    accepted = 0
    for low, high, log, step in itertools.product(bounds, bounds, (False, True), steps):
        try:
            r = Range(low, high, log=log, step=step, integer=integer)
        except ExperimentConfigError:
            continue
        accepted += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna moves a high off the step grid, and warns
            distribution(r)  # raises if Optuna refuses it
    assert accepted > 20  # the grid holds ranges both sides of every rule


def test_validation_builds_the_distributions_the_studies_search():
    config = parse_experiment(_with(("train.epochs", {"low": 2, "high": 8, "step": 2})))
    for arm in config.arms:
        built = {name: distribution(r) for name, r in config.searched(arm.name).items()}
        assert built == studies.distributions(config, arm.name)
    space = studies.distributions(config, "none")
    assert space["epochs"] == IntDistribution(2, 8, step=2)
    assert space["lr"] == FloatDistribution(1e-3, 3e-2, log=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_device_this_machine_lacks_parses_but_is_required_in_vain():
    config = parse_experiment(_with(("train.device", "cuda")))  # status reads it anywhere
    with pytest.raises(ExperimentConfigError) as info:
        require_device(config)
    assert info.value.key == "train.device"
    assert "no CUDA device" in info.value.detail
    require_device(parse_experiment(BASE))  # cpu


def test_device_indices_are_checked_against_the_machines_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with two GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for device in ("auto", "cpu", "cuda", "cuda:0", "cuda:1"):
        require_device(parse_experiment(_with(("train.device", device))))
    for device in ("cuda:2", "cuda:99999999999999999999999"):
        with pytest.raises(ExperimentConfigError) as info:
            require_device(parse_experiment(_with(("train.device", device))))
        assert info.value.key == "train.device"
        assert "CUDA devices are cuda:0 to cuda:1" in info.value.detail


def test_reading_a_config_never_imports_torch():
    """Verbs that do not train (status, trials, sql, report) read stored configs: reading one,
    and building a trial's trainer config from it, must not pay seconds for torch."""
    code = (
        "import sys, study.config.experiment as e\n"
        f"config = e.load_experiment({str(TINY)!r})\n"
        "config.train_config('fixed', {'lr': 0.01, 'lam': 1e-3}, seed=0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_not_a_mapping():
    with pytest.raises(ExperimentConfigError) as info:
        parse_experiment([1, 2])  # type: ignore[arg-type]
    assert info.value.key == "config"


@pytest.mark.parametrize("bom", ["\ufeff", ""], ids=["with a BOM", "without"])
def test_a_config_may_start_with_a_byte_order_mark(bom: str, tmp_path: Path) -> None:
    """Some Windows editors start UTF-8 files with a BOM; it was refused as "Invalid
    statement". The config reader (experiment and suite files, submitted bodies) drops it; a
    BOM anywhere else is still not TOML."""
    from tests.tiny import tiny_config

    text = tiny_config("bom", epochs=2, n_trials=2, seeds=1, arms=("fixed",))
    path = tmp_path / "bom.toml"
    path.write_text(bom + text, encoding="utf-8")
    assert load_experiment(path).name == "bom"
    path.write_text(text + "\n\ufeff", encoding="utf-8")
    with pytest.raises(StudyError):
        load_experiment(path)
