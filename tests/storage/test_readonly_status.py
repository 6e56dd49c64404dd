""":mod:`storage.readonly_status` reads what ``dynl2 status`` shows without Optuna: it must be
written for this code's schema (else every store goes the slow way), and decode a parameter as
Optuna does. Its rows against the store's own are in ``tests/study/test_status.py``."""

from __future__ import annotations

import json
import math

import pytest
from optuna.distributions import (
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)

import storage
from storage import migrations, readonly_status
from storage.schema import SCHEMA_VERSION


def test_it_reads_the_schema_this_code_writes() -> None:
    head = (migrations.head(), SCHEMA_VERSION)
    assert head == (readonly_status.REVISION, readonly_status.SCHEMA)


DISTRIBUTIONS = [
    (FloatDistribution(1e-4, 1.0, log=True), [1e-4, 0.0123456789, 1.0]),
    (FloatDistribution(0.0, 1.0, step=0.25), [0.0, 0.75]),
    (IntDistribution(1, 64, log=True), [1.0, 17.0, 64.0]),
    (IntDistribution(0, 10, step=2), [0.0, 4.0]),
    (CategoricalDistribution(["adam", "sgd", None, True, 3, 0.5]), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]),
]


@pytest.mark.parametrize(("distribution", "internals"), DISTRIBUTIONS)
def test_a_parameter_decodes_as_optuna_decodes_it(distribution, internals) -> None:
    text = distribution_to_json(distribution)
    for internal in internals:
        value = readonly_status.external(text, internal)
        expected = distribution.to_external_repr(internal)
        assert (value, type(value)) == (expected, type(expected))


@pytest.mark.parametrize(
    ("distribution", "internal"),
    [
        ('{"name": "UniformDistribution", "attributes": {"low": 0, "high": 1}}', 0.5),
        ('{"type": "float", "low": 0, "high": 1}', 0.5),  # Optuna's short form
        (
            '{"name": "FloatDistribution", "attributes": {"low": 2, "high": 1, "log": false, '
            '"step": null}}',
            1.5,
        ),
        (
            '{"name": "FloatDistribution", "attributes": {"low": 0, "high": 1, "log": true, '
            '"step": null}}',
            0.5,
        ),
        ('{"name": "CategoricalDistribution", "attributes": {"choices": []}}', 0.0),
        ('{"name": "CategoricalDistribution", "attributes": {"choices": ["a"]}}', 1.0),
        ('{"name": "CategoricalDistribution", "attributes": {"choices": [["a"]]}}', 0.0),
        ("not json", 0.0),
        (json.dumps(None), 0.0),
    ],
)
def test_what_it_cannot_vouch_for_is_left_to_optuna(distribution: str, internal: float) -> None:
    with pytest.raises((readonly_status._Unusual, ValueError)):
        readonly_status.external(distribution, internal)


def test_a_categorical_index_that_is_no_number_is_left_to_optuna() -> None:
    text = distribution_to_json(CategoricalDistribution(["a", "b"]))
    with pytest.raises((readonly_status._Unusual, ValueError)):
        readonly_status.external(text, math.nan)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:1/test",  # no server on port 1: refused
        "sqlite:///{tmp}/not-a-database.db",
    ],
)
def test_a_store_it_cannot_reach_is_named_as_storage_open_names_it(tmp_path, url: str) -> None:
    url = url.format(tmp=tmp_path)
    (tmp_path / "not-a-database.db").write_bytes(b"plain text, not SQLite" * 100)
    with pytest.raises(storage.StorageUnavailable) as quick:
        storage.read_status(url, "e", result_attr="r", holder_attrs=())
    with pytest.raises(storage.StorageUnavailable) as full:
        storage.open(url, create=False)
    assert str(quick.value) == str(full.value)
