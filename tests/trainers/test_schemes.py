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
        ({"scheme": "l3"}, "scheme.scheme"),
    ],
)
def test_bad_scheme_settings_name_their_key(data, key):
    with pytest.raises(ConfigError) as info:
        scheme_from_dict(data)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")
