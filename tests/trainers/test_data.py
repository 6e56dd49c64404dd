"""Dataset configs: a list of bad settings, each named by its key."""

from __future__ import annotations

import pytest

from trainers import ConfigError, data_from_dict


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"dataset": "cifar"}, "data.dataset"),
        ({"dataset": "mnist1d", "n_val": 0}, "data.n_val"),
        ({"dataset": "mnist1d", "n_val": 4000}, "data.n_val"),
        ({"dataset": "mnist1d", "n_train": 5}, "data.n_train"),
        ({"dataset": "digits", "val_fraction": 1.5}, "data.val_fraction"),
        ({"dataset": "digits", "val_fraction": 0.5, "test_fraction": 0.45}, "data.test_fraction"),
        ({"dataset": "linear", "noise": -1.0}, "data.noise"),
        ({"dataset": "linear", "n_features": 0}, "data.n_features"),
        ({"dataset": "linear", "n_train": 2.5}, "data.n_train"),
    ],
)
def test_bad_data_settings_name_their_key(data, key):
    with pytest.raises(ConfigError) as info:
        data_from_dict(data)
    assert info.value.key == key
