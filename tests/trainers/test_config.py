"""TrainConfig: round trips and a list of bad settings, each named by its key."""

from __future__ import annotations

import json

import pytest

from trainers import ConfigError, DynamicScheme, LinearData, MLPModel, TrainConfig


def test_round_trip_through_json():
    config = TrainConfig(
        data=LinearData(n_train=10), model=MLPModel(hidden=(7, 5)),
        scheme=DynamicScheme(alpha=0.3, ceiling=2.0), optimizer="sgd", lr=0.05, epochs=3,
    )  # fmt: skip
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_defaults_parse_from_an_empty_mapping():
    assert TrainConfig.from_dict({}) == TrainConfig()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": "10"}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("inf")}, "lr"),
        ({"batch_size": -1}, "batch_size"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"momentum": 1.0}, "momentum"),
        ({"nesterov": True}, "nesterov"),  # Adam has no Nesterov momentum
        ({"device": "gpu"}, "device"),
        ({"seed": -1}, "seed"),
        ({"colour": "red"}, "colour"),
        ({"model": {"kind": "mlp", "hidden": []}}, "model.hidden"),
        ({"model": {"kind": "mlp", "hidden": [10, "x"]}}, "model.hidden[1]"),
        ({"model": {"kind": "mlp", "depth": 3}}, "model.depth"),
        ({"model": {"kind": "transformer"}}, "model.kind"),
        ({"model": "mlp"}, "model"),
        ({"data": {"dataset": "digits"}, "model": {"kind": "cnn"}}, "model.kind"),
        ({"scheme": {"scheme": "dynamic", "alpha": -1.0}}, "scheme.alpha"),
    ],
)
def test_bad_settings_name_their_key(data, key):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict(data)
    assert info.value.key == key


def test_penalize_all_covers_every_parameter_and_reads_back():
    from trainers.schemes import FixedScheme

    weights = TrainConfig(scheme=FixedScheme(lam=0.1))
    assert "penalize" not in weights.to_dict()  # stored configs from before read back the same
    assert not weights.scheme.covers(1) and weights.scheme.covers(2)
    every = TrainConfig(scheme=FixedScheme(lam=0.1), penalize="all")
    assert every.scheme.covers(1) and every.scheme.biases
    assert TrainConfig.from_dict(every.to_dict()) == every
    with pytest.raises(ConfigError, match="penalize"):
        TrainConfig(penalize="biases")
