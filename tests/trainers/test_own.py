"""A user's own data (trainers.own, trainers.datasets): files and loaders read, checked, split
and fingerprinted; a factory model built and checked (trainers.networks)."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch

from trainers.data import FileData, LoaderData, data_from_dict, data_to_dict
from trainers.datasets import load_dataset
from trainers.errors import ConfigError
from trainers.models import FactoryModel, model_from_dict, model_to_dict
from trainers.networks import build_model, check_model
from trainers.own import inspect_data, read_arrays

CPU = torch.device("cpu")


def _arrays(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2, 3)).astype(np.float32), np.arange(n) % 3


def test_an_npz_is_read_inspected_and_split(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    config = inspect_data(FileData(path=str(tmp_path / "d.npz"), val_fraction=0.25))
    assert (config.task, config.shape, config.classes) == ("classification", (2, 3), 3)
    assert config.fingerprint.startswith("sha256:") and len(config.fingerprint) == 71
    data = load_dataset(config, CPU)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (66, 30, 24)
    assert data.in_shape == (2, 3) and data.n_classes == 3 and not data.sequence
    assert data.y_train.dtype == torch.int64
    # standardized with the training split's statistics: mean 0 there
    assert torch.allclose(data.x_train.mean(0), torch.zeros(2, 3), atol=1e-5)
    # the splits are disjoint and cover every example
    rows = torch.cat([data.x_train, data.x_val, data.x_test]).flatten(1)
    assert len(torch.unique(rows, dim=0)) == 120


def test_the_files_own_splits_are_kept(tmp_path):
    x, y = _arrays()
    xv, yv = _arrays(40, seed=1)
    xt, yt = _arrays(30, seed=2)
    np.savez(tmp_path / "d.npz", x=x, y=y, x_val=xv, y_val=yv, x_test=xt, y_test=yt)
    config = inspect_data(FileData(path=str(tmp_path / "d.npz"), standardize=False))
    data = load_dataset(config, CPU)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (120, 40, 30)
    assert torch.equal(data.x_test, torch.as_tensor(xt))  # not standardized, in file order


def test_the_fingerprint_follows_the_arrays_not_the_file(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "b.npz", x=x, y=y)  # other bytes on disk, same arrays
    a = inspect_data(FileData(path=str(tmp_path / "a.npz")))
    b = inspect_data(FileData(path=str(tmp_path / "b.npz")))
    assert a.fingerprint == b.fingerprint
    y2 = y.copy()
    y2[0] = (y2[0] + 1) % 3
    np.savez(tmp_path / "c.npz", x=x, y=y2)
    c = inspect_data(FileData(path=str(tmp_path / "c.npz")))
    assert c.fingerprint != a.fingerprint
    stale = dataclasses.replace(c, fingerprint=a.fingerprint)  # a store made on other data
    with pytest.raises(ConfigError, match=r"data\.fingerprint") as caught:
        load_dataset(stale, CPU)
    assert a.fingerprint in str(caught.value) and c.fingerprint in str(caught.value)


def test_a_csv_regression_with_named_features(tmp_path):
    rows = "".join(f"{i},{i % 4},{2.5 * i}\n" for i in range(60))
    (tmp_path / "t.csv").write_text("a,b,target\n" + rows)
    config = inspect_data(FileData(path=str(tmp_path / "t.csv"), target="target", features=("b",)))
    assert (config.task, config.shape, config.n_outputs) == ("regression", (1,), 1)
    arrays, _ = read_arrays(config)
    assert arrays["x"].shape == (60, 1) and arrays["y"][3] == 7.5
    assert config.sequence_like  # one feature: a 1-d signal as far as the cnn knows


def test_integer_targets_are_classes_unless_the_task_says_regression(tmp_path):
    rows = "".join(f"{i},{100 + i % 7}\n" for i in range(60))
    (tmp_path / "t.csv").write_text("a,label\n" + rows)
    path = str(tmp_path / "t.csv")
    with pytest.raises(ConfigError, match="class 0 never appears"):
        inspect_data(FileData(path=path, target="label"))
    config = inspect_data(FileData(path=path, target="label", task="regression"))
    assert config.task == "regression"
    data = load_dataset(config, CPU)
    assert data.y_train.dtype == torch.float32


def test_a_pt_file_of_tensors(tmp_path):
    x, y = _arrays()
    torch.save({"x": torch.as_tensor(x), "y": torch.as_tensor(y)}, tmp_path / "d.pt")
    config = inspect_data(FileData(path=str(tmp_path / "d.pt")))
    assert config.classes == 3 and config.shape == (2, 3)


def test_a_pt_file_never_unpickles_objects(tmp_path):
    class Boom:
        def __reduce__(self):  # what a hostile pickle would run
            return (print, ("unpickled!",))

    torch.save({"x": Boom()}, tmp_path / "d.pt")
    with pytest.raises(ConfigError, match="cannot read"):
        inspect_data(FileData(path=str(tmp_path / "d.pt")))


def test_a_loader_with_arguments_and_torch_tensors(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "own_loader_a.py").write_text(
        "import torch\n\ndef load(n=50):\n"
        "    g = torch.Generator().manual_seed(0)\n"
        "    return {'x': torch.randn(n, 4, generator=g), 'y': torch.arange(n) % 2}\n"
    )
    config = LoaderData(loader="own_loader_a:load", args={"n": 80}, root=str(tmp_path))
    inspected = inspect_data(config)
    assert inspected.classes == 2 and inspected.shape == (4,)
    other = inspect_data(dataclasses.replace(config, args={"n": 81}))
    assert other.fingerprint != inspected.fingerprint  # the arguments are part of the data
    stored = data_to_dict(inspected)
    assert data_from_dict(stored) == inspected  # a stored config reads back the same
    assert stored["args"] == {"n": 80} and stored["loader"] == "own_loader_a:load"


def test_configs_of_own_data_and_models_read_back():
    model = model_from_dict({"factory": "lab.models:make", "args": {"width": 32, "act": "relu"}})
    assert isinstance(model, FactoryModel)
    assert model_from_dict(model_to_dict(model)) == model
    with pytest.raises(ConfigError, match=r"model\.args\.bad-name"):
        model_from_dict({"factory": "a:b", "args": {"bad-name": 1}})
    with pytest.raises(ConfigError, match=r"data\.loader"):
        data_from_dict({"loader": "a:b", "path": "x.npz"})


def test_a_factory_model_is_built_seeded_and_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "own_models_a.py").write_text(
        "from torch import nn\n\n"
        "def make(in_shape, n_outputs, width=8, out=0):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[0] * in_shape[1], width),\n"
        "                         nn.ReLU(), nn.Linear(width, out or n_outputs))\n"
    )
    config = FactoryModel("own_models_a:make", {"width": 5}, str(tmp_path))
    a = build_model(config, 6, 3, False, seed=7, in_shape=(2, 3))
    b = build_model(config, 6, 3, False, seed=7, in_shape=(2, 3))
    c = build_model(config, 6, 3, False, seed=8, in_shape=(2, 3))
    assert a[1].weight.shape == (5, 6)
    assert torch.equal(a[1].weight, b[1].weight) and not torch.equal(a[1].weight, c[1].weight)
    check_model(config, None, (2, 3), 3)  # runs on two examples
    wrong = FactoryModel("own_models_a:make", {"out": 2}, str(tmp_path))
    with pytest.raises(ConfigError, match=r"must return \[batch, 3\]"):
        check_model(wrong, None, (2, 3), 3)


def test_a_file_that_changes_is_read_again(tmp_path):
    x, y = _arrays()
    np.savez(tmp_path / "d.npz", x=x, y=y)
    before = inspect_data(FileData(path=str(tmp_path / "d.npz"))).fingerprint
    np.savez(tmp_path / "d.npz", x=x[:-1], y=y[:-1])  # the same name, other data
    after = inspect_data(FileData(path=str(tmp_path / "d.npz"))).fingerprint
    assert after != before


def test_a_parquet_table_reads_as_the_same_csv(tmp_path, monkeypatch):
    import pandas as pd

    pytest.importorskip("pyarrow")  # the 'parquet' extra
    frame = pd.DataFrame(
        {"a": np.arange(60) % 7, "b": np.arange(60) * 0.5, "label": np.arange(60) % 2}
    )
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    csv = inspect_data(FileData(path=str(tmp_path / "t.csv"), target="label"))
    parquet = inspect_data(FileData(path=str(tmp_path / "t.parquet"), target="label"))
    assert parquet.fingerprint == csv.fingerprint and parquet.classes == 2


def test_a_parquet_table_without_an_engine_is_one_line(tmp_path, monkeypatch):
    import pandas as pd

    def no_engine(*args: object, **kwargs: object) -> None:
        raise ImportError("Unable to find a usable engine")

    monkeypatch.setattr(pd, "read_parquet", no_engine)
    (tmp_path / "u.parquet").write_bytes(b"PAR1")  # never read: no engine
    with pytest.raises(ConfigError, match="needs pyarrow"):
        inspect_data(FileData(path=str(tmp_path / "u.parquet"), target="label"))
