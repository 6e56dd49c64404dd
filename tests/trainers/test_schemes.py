"""Scheme configs: what a penalty covers, and a list of bad settings, each named by its key."""

from __future__ import annotations

import pytest

from trainers import ConfigError, FixedScheme, NoneScheme, scheme_from_dict


@pytest.mark.parametrize(
    ("scheme", "ndim", "covered"),
    [
        (FixedScheme(lam=1.0), 1, False),  # a bias
        (FixedScheme(lam=1.0), 2, True),  # a weight matrix
        (FixedScheme(lam=1.0), 3, True),  # a conv kernel
        (FixedScheme(lam=1.0, biases=True), 1, True),
        (NoneScheme(biases=True), 1, True),  # "none" covers them too, at λ = 0
    ],
)
def test_penalty_covers_matrices_and_kernels_and_biases_when_asked(scheme, ndim, covered):
    assert scheme.covers(ndim) is covered


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"scheme": "dynamic", "alpha": -1.0}, "scheme.alpha"),
        ({"scheme": "dynamic", "alpha": 0.0}, "scheme.alpha"),
        ({"scheme": "dynamic", "alpha": 1.0, "floor": 2.0, "ceiling": 1.0}, "scheme.floor"),
        ({"scheme": "dynamic", "alpha": 1.0, "loss_ema": 1.0}, "scheme.loss_ema"),
        ({"scheme": "dynamic", "lam": 0.1}, "scheme.lam"),
        ({"scheme": "fixed", "lam": -0.1}, "scheme.lam"),
        ({"scheme": "fixed", "alpha": 0.1}, "scheme.alpha"),
        ({"scheme": "fixed", "lam": "big"}, "scheme.lam"),
        ({"scheme": "fixed", "lam": True}, "scheme.lam"),
        ({"scheme": "fixed", "lam": float("nan")}, "scheme.lam"),
        ({"scheme": "awd", "lam_awd": 0.0}, "scheme.lam_awd"),
        ({"scheme": "none", "apply": "sideways"}, "scheme.apply"),
        ({"scheme": "swd", "lam": -1e-4}, "scheme.lam"),
        ({"scheme": "swd", "lam": 1e-4, "apply": "coupled"}, "scheme.apply"),
        ({"scheme": "swd", "alpha": 0.1}, "scheme.alpha"),
        ({"scheme": "schedule", "lam_start": -1.0}, "scheme.lam_start"),
        ({"scheme": "schedule", "lam_end": float("inf") * 0}, "scheme.lam_end"),
        ({"scheme": "schedule", "shape": "square"}, "scheme.shape"),
        ({"scheme": "schedule", "shape": 1}, "scheme.shape"),
        ({"scheme": "schedule", "lam": 0.1}, "scheme.lam"),
        ({"scheme": "l3"}, "scheme.scheme"),
    ],
)
def test_bad_scheme_settings_name_their_key(data, key):
    with pytest.raises(ConfigError) as info:
        scheme_from_dict(data)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")


def test_swd_serves_adam_only_and_is_decoupled_by_default():
    from trainers import SWDScheme, TrainConfig

    assert SWDScheme().apply == "decoupled"
    TrainConfig(scheme=SWDScheme(lam=1e-3), optimizer="adam")
    with pytest.raises(ConfigError) as info:
        TrainConfig(scheme=SWDScheme(lam=1e-3), optimizer="sgd")
    assert str(info.value) == "optimizer: scheme 'swd' needs optimizer 'adam', got 'sgd'"


def test_a_schedule_searches_its_strengths_and_holds_its_shape():
    from trainers import SCHEMES, scheme_parameters

    assert scheme_parameters("schedule") == ("lam_start", "lam_end")
    assert SCHEMES["schedule"].settings == ("apply", "biases", "shape")
    assert scheme_parameters("swd") == ("lam",)
    data = {"scheme": "schedule", "lam_start": 0.0, "lam_end": 0.01, "shape": "cosine"}
    scheme = scheme_from_dict(data)
    assert scheme_from_dict(scheme.to_dict()) == scheme
    assert scheme.to_dict() == {**data, "apply": "coupled", "biases": False}
