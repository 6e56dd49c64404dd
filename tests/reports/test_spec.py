"""What a report reads of a config (:mod:`reports.spec`): the study layer's parsed config
satisfies it, and the tests' stand-in (``synthetic.Unchecked``) reads a valid dict alike."""

from __future__ import annotations

import pytest

from reports.spec import ArmSpec, EvaluateSpec, ExperimentSpec, RangeSpec, SearchSpec
from study.config.experiment import parse_experiment
from tests.reports import synthetic as syn

REPLICATED = syn.config("p")
REPLICATED["search"]["replicates"] = 3
VALID = {
    "classification": syn.config("c"),
    "regression": syn.config("r", dataset="linear", metric="val_loss"),
    "a fixed setting": syn.config("o", arms={"fixed": {"scheme": "fixed", "lam": 1e-3}},
                                  n_trials=7, seeds=5),
    "replicates": REPLICATED,
}  # fmt: skip


@pytest.mark.parametrize("raw", VALID.values(), ids=VALID.keys())
def test_a_parsed_config_and_the_stand_in_are_experiment_specs(raw):
    for config in (parse_experiment(raw), syn.Unchecked(raw)):
        assert isinstance(config, ExperimentSpec)
        assert isinstance(config.search, SearchSpec)
        assert isinstance(config.evaluate, EvaluateSpec)
        for arm in config.arms:
            assert isinstance(arm, ArmSpec)
            assert all(isinstance(r, RangeSpec) for r in config.searched(arm.name).values())


def _read(config: ExperimentSpec) -> dict[str, object]:
    """Every member of the spec, as plain values."""

    def ranges(space):
        return {name: (r.low, r.high, r.log, r.step) for name, r in space.items()}

    s = config.search
    return {
        "name": config.name,
        "direction": config.direction,
        "accuracy": config.accuracy,
        "arms": [(a.name, a.scheme, dict(a.fixed)) for a in config.arms],
        "train_ranges": ranges(config.train_ranges),
        "searched": {a.name: ranges(config.searched(a.name)) for a in config.arms},
        "search": (s.n_trials, s.sampler, s.pruner, s.metric, s.replicates),
        "seeds": config.evaluate.seeds,
    }


@pytest.mark.parametrize("raw", VALID.values(), ids=VALID.keys())
def test_the_stand_in_reads_a_valid_config_as_the_parser_does(raw):
    assert _read(syn.Unchecked(raw)) == _read(parse_experiment(raw))
