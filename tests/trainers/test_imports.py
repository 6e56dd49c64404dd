"""The config modules import no torch (verbs that do not train never pay for it), and the
package's front imports each public name from its module when first asked for."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import trainers

ROOT = Path(__file__).resolve().parents[2]


def test_configs_build_and_round_trip_without_importing_torch() -> None:
    code = (
        "import sys\n"
        "import trainers, trainers.config, trainers.data, trainers.models, trainers.schemes\n"
        "import trainers._fields, trainers.errors\n"
        "from trainers import SCHEMES, ConfigError, TrainConfig\n"
        "raw = {'data': {'dataset': 'digits'}, 'model': {'kind': 'mlp', 'hidden': [8]},\n"
        "       'scheme': {'scheme': 'dynamic', 'alpha': 0.1, 'loss_ema': 0.5}, 'device': 'cpu'}\n"
        "config = TrainConfig.from_dict(raw)\n"
        "assert TrainConfig.from_dict(config.to_dict()) == config\n"
        "assert trainers.config.device_problem(config.device) is None\n"
        "print('torch' in sys.modules)\n"
        "from trainers import train_fused\n"  # and the check can fail: a training name does
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]


def test_every_public_name_comes_from_its_module() -> None:
    assert sorted(trainers._HOME) == sorted(trainers.__all__)
    for name, module in trainers._HOME.items():
        home = importlib.import_module(f"trainers.{module}")
        assert getattr(trainers, name) is getattr(home, name), name
    assert set(trainers.__all__) <= set(dir(trainers))
    with pytest.raises(AttributeError, match="no attribute 'train_fast'"):
        trainers.train_fast  # noqa: B018
