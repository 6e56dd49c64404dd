"""Datasets on the device: shapes, disjoint deterministic splits, train-only standardization,
the cache."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from trainers import BreastCancerData, DigitsData, LinearData, Mnist1dData, load_dataset
from trainers.datasets import cache_dir, partition

CPU = torch.device("cpu")

SHAPES = [
    # config, (train, val, test), features, classes
    (Mnist1dData(), (3000, 1000, 1000), 40, 10),
    (Mnist1dData(n_val=500), (3500, 500, 1000), 40, 10),
    (DigitsData(), (1079, 359, 359), 64, 10),
    (BreastCancerData(), (341, 114, 114), 30, 2),
    (LinearData(n_train=20, n_val=30, n_test=40, n_features=200), (20, 30, 40), 200, 0),
]


@pytest.mark.parametrize(("config", "sizes", "features", "classes"), SHAPES)
def test_shapes_and_types(config, sizes, features, classes):
    d = load_dataset(config, CPU)
    assert (len(d.x_train), len(d.x_val), len(d.x_test)) == sizes
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == sizes
    assert d.n_features == features
    assert d.n_classes == classes
    assert d.x_train.dtype == torch.float32
    if classes:
        assert d.task == "classification"
        assert d.y_train.dtype == torch.int64
        assert int(d.y_train.max()) == classes - 1
    else:
        assert d.task == "regression"
        assert d.y_train.dtype == torch.float32


@pytest.mark.parametrize(("config", "sizes", "features", "classes"), SHAPES)
def test_splits_are_disjoint(config, sizes, features, classes):
    d = load_dataset(config, CPU)
    rows = [{tuple(r) for r in x.tolist()} for x in (d.x_train, d.x_val, d.x_test)]
    assert [len(r) for r in rows] == list(sizes)  # no duplicate rows inside a split
    assert not rows[0] & rows[1]
    assert not rows[0] & rows[2]
    assert not rows[1] & rows[2]


def test_partition_is_disjoint_complete_and_seeded():
    parts = partition(100, (10, 20), seed=3)
    assert [len(p) for p in parts] == [10, 20, 70]
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    again = partition(100, (10, 20), seed=3)
    assert all((a == b).all() for a, b in zip(parts, again, strict=True))
    other = partition(100, (10, 20), seed=4)
    assert not (parts[0] == other[0]).all()


def test_splits_depend_on_the_split_seed_only():
    a = load_dataset(DigitsData(seed=0), CPU)
    b = load_dataset(DigitsData(seed=0), CPU)
    c = load_dataset(DigitsData(seed=1), CPU)
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(a.x_val, c.x_val)


def test_standardization_uses_the_training_split_only():
    from sklearn.datasets import load_digits

    raw = load_digits().data
    d = load_dataset(DigitsData(), CPU)
    _test_idx, val_idx, train_idx = partition(len(raw), (359, 359), 0)
    mean, std = raw[train_idx].mean(0), raw[train_idx].std(0)
    std = np.where(std > 1e-12, std, 1.0)
    expected_val = torch.tensor((raw[val_idx] - mean) / std, dtype=torch.float32)
    torch.testing.assert_close(d.x_val, expected_val)
    varying = raw[train_idx].std(0) > 1e-12
    train_mean = d.x_train.mean(0).numpy()
    assert np.abs(train_mean).max() < 1e-5
    assert np.allclose(d.x_train.std(0, unbiased=False).numpy()[varying], 1.0, atol=1e-4)
    assert np.abs(d.x_val.mean(0).numpy()).max() > 1e-3  # statistics were not refitted


def test_linear_allows_fewer_examples_than_features():
    d = load_dataset(LinearData(n_train=10, n_features=500), CPU)
    assert d.x_train.shape == (10, 500)


def test_mnist1d_is_generated_once_then_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("DYNL2_CACHE", str(tmp_path))
    first = load_dataset(Mnist1dData(), CPU)
    files = list(cache_dir().glob("mnist1d-*.npz"))
    assert len(files) == 1
    second = load_dataset(Mnist1dData(), CPU)
    assert torch.equal(first.x_test, second.x_test)
    files[0].write_bytes(b"garbage")  # a corrupt cache is regenerated, not trusted
    third = load_dataset(Mnist1dData(), CPU)
    assert torch.equal(first.x_test, third.x_test)


@pytest.mark.parametrize("kind", ["fifo", "folder", "link"])
def test_a_cache_path_that_is_no_file_is_neither_read_nor_replaced(monkeypatch, tmp_path, kind):
    """A FIFO where the cache goes would block a read forever; a folder or a link is not the
    cache's to replace. The data is generated, and the thing stays what it was."""
    monkeypatch.setenv("DYNL2_CACHE", str(tmp_path))
    load_dataset(Mnist1dData(), CPU)  # the cache's name
    (cached,) = cache_dir().glob("mnist1d-*.npz")
    expected = load_dataset(Mnist1dData(), CPU)
    cached.unlink()
    if kind == "fifo":
        os.mkfifo(cached)
    elif kind == "folder":
        cached.mkdir()
    else:
        (tmp_path / "elsewhere.npz").write_bytes(b"the user's file")
        cached.symlink_to(tmp_path / "elsewhere.npz")
    got = load_dataset(Mnist1dData(), CPU)
    assert torch.equal(got.x_test, expected.x_test)
    mode = os.lstat(cached).st_mode
    assert {"fifo": stat.S_ISFIFO, "folder": stat.S_ISDIR, "link": stat.S_ISLNK}[kind](mode)
    if kind == "link":
        assert (tmp_path / "elsewhere.npz").read_bytes() == b"the user's file"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".npz")) == sorted(
        {cached.name} | ({"elsewhere.npz"} if kind == "link" else set())
    )  # no temporary file left
