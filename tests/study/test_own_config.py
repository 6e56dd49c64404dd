"""A user's own data, model and loop in experiment and suite files (study.config.own): paths and
code relative to the file, searched model arguments, the fingerprint stored, which code an
``--allow-code`` list admits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from study.config.experiment import (
    ExperimentConfigError,
    inspected,
    load_experiment,
    parse_experiment,
)
from study.config.own import code_named, code_problem, module_allowed
from study.config.suite import load_suite
from study.search.fused import group_sizes, unfusable
from tests.tiny import tiny_config

ROOT = Path(__file__).resolve().parents[2]
FACTORY = "from torch import nn\n\ndef make(in_shape, n_outputs, width=4):\n" + (
    "    return nn.Sequential(nn.Flatten(), nn.Linear(in_shape[0], width), nn.ReLU(),\n"
    "                         nn.Linear(width, n_outputs))\n"
)


def _data(folder: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(folder / "d.npz", x=rng.standard_normal((100, 5)), y=np.arange(100) % 2)


def _config_text(model: str, train: str = "") -> str:
    text = tiny_config("own-cfg", epochs=1, n_trials=4, seeds=1, arms=["fixed"])
    text = text.replace('[data]\ndataset = "digits"\n', '[data]\npath = "data/d.npz"\n')
    text = text.replace('[model]\nkind = "mlp"\nhidden = [16]\n', model)
    return text.replace("[train]\n", "[train]\n" + train)


def test_paths_and_code_are_relative_to_the_file_not_the_working_directory(tmp_path, monkeypatch):
    folder = tmp_path / "exp"
    (folder / "data").mkdir(parents=True)
    _data(folder / "data")
    (folder / "own_cfg_models.py").write_text(FACTORY)
    path = folder / "e.toml"
    path.write_text(_config_text('[model]\nfactory = "own_cfg_models:make"\n'))
    monkeypatch.chdir(tmp_path)  # elsewhere
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    config = load_experiment(path)
    assert config.data["path"] == str(folder / "data" / "d.npz")
    assert config.model["root"] == str(folder)
    assert config.data["task"] == "classification" and config.data["shape"] == (5,)
    assert config.data["fingerprint"].startswith("sha256:")
    again = parse_experiment(config.to_dict())  # what a worker reads back from the store
    assert again == config and inspected(again) == again


def test_model_arguments_are_searched_in_every_arm_and_keep_groups_apart(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    _data(tmp_path / "data")
    (tmp_path / "own_cfg_models2.py").write_text(FACTORY)
    monkeypatch.setattr("sys.path", list(__import__("sys").path))
    model = (
        '[model]\nfactory = "own_cfg_models2:make"\n[model.args]\nwidth = { low = 2, high = 8 }\n'
    )
    path = tmp_path / "e.toml"
    path.write_text(_config_text(model))
    config = load_experiment(path)
    assert set(config.searched("fixed")) == {"lr", "lam", "model.width"}
    assert config.model_ranges["model.width"].integer
    sampled = {"lr": 0.01, "lam": 0.001, "model.width": 3}
    run = config.train_config("fixed", sampled, seed=1)
    assert dict(run.model.args) == {"width": 3}  # type: ignore[union-attr]
    assert "model.width" in str(unfusable(config, "fixed"))
    assert group_sizes(config, "cpu", 4) == {"fixed": 1}
    path.write_text(_config_text(model.replace("low = 2, high = 8", "low = 8, high = 2")))
    with pytest.raises(ExperimentConfigError, match=r"model\.args\.width"):
        load_experiment(path)


def test_a_loop_must_import_before_anything_is_written(tmp_path):
    (tmp_path / "data").mkdir()
    _data(tmp_path / "data")
    path = tmp_path / "e.toml"
    path.write_text(_config_text('[model]\nkind = "mlp"\nhidden = [4]\n', 'loop = "nowhere:f"\n'))
    with pytest.raises(ExperimentConfigError, match=r"train\.loop: cannot import module"):
        load_experiment(path)


def test_a_suite_reads_its_members_data_relative_to_the_suite_file(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    _data(tmp_path / "data")
    suite = (ROOT / "examples" / "tiny-suite.toml").read_text()
    suite = suite.replace('dataset = "digits"', 'path = "data/d.npz"')
    (tmp_path / "s.toml").write_text(suite)
    monkeypatch.chdir(ROOT)
    loaded = load_suite(tmp_path / "s.toml")
    prints = {m.config.data["fingerprint"] for m in loaded.experiments}
    assert len(loaded.experiments) == 2 and len(prints) == 1 and "" not in prints


def test_which_code_an_allow_list_admits():
    assert module_allowed("lab:f", ["lab"]) and module_allowed("lab.models:f", ["lab"])
    assert not module_allowed("laboratory:f", ["lab"])
    assert not module_allowed("lab:f", [])
    doc = {"data": {"loader": "lab.data:load"}, "model": {"factory": "zoo:make"}, "train": {}}
    assert code_named(doc) == ["lab.data:load", "zoo:make"]
    problem = code_problem(doc, ["lab"])
    assert problem is not None and "zoo:make" in problem and "lab.data" not in problem
    assert code_problem(doc, ["lab", "zoo"]) is None
    assert code_problem({"data": {"dataset": "digits"}}, []) is None
