"""A user's own training loop (trainers.custom): what it receives, what its reports become, how
it stops, how its failures read, and that dynl2 scores the test split itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from trainers import DivergenceError, train_fused
from trainers.config import TrainConfig
from trainers.custom import LoopError, train_custom
from trainers.data import DigitsData
from trainers.models import MLPModel
from trainers.schemes import DynamicScheme

LOOPS = """
import torch
from torch.nn import functional as F

SEEN = []

def plain(ctx, fail_at=0, bad=""):
    SEEN.append((ctx.lr, ctx.seed, ctx.epochs, type(ctx.regularizer.scheme).__name__,
                 tuple(ctx.data.x_train.shape[1:])))
    opt = torch.optim.SGD(ctx.model.parameters(), lr=ctx.lr)
    for epoch in range(1, ctx.epochs + 1):
        if epoch == fail_at:
            raise RuntimeError("the loop broke")
        ctx.model.train()
        out = ctx.model(ctx.data.x_train)
        loss = F.cross_entropy(out, ctx.data.y_train)
        opt.zero_grad()
        loss.backward()
        ctx.regularizer.step(loss)
        opt.step()
        ctx.regularizer.after_step(ctx.lr)
        ctx.model.eval()
        with torch.no_grad():
            val = ctx.model(ctx.data.x_val)
        metrics = dict(train_loss=loss, val_loss=F.cross_entropy(val, ctx.data.y_val),
                       val_acc=(val.argmax(1) == ctx.data.y_val).float().mean())
        if bad == "no_acc":
            del metrics["val_acc"]
        if bad == "nan":
            metrics["val_loss"] = float("nan")
        if bad == "text":
            metrics["val_loss"] = "low"
        if ctx.report(epoch, **metrics):
            return

def silent(ctx):
    pass
"""


@pytest.fixture
def loops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"own_loops_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(LOOPS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return name


def _config(loops: str, root: Path, **changes: object) -> TrainConfig:
    base = TrainConfig(
        data=DigitsData(), model=MLPModel(hidden=(8,)), scheme=DynamicScheme(alpha=0.05),
        optimizer="sgd", lr=0.1, epochs=3, device="cpu", loop=f"{loops}:plain",
        loop_root=str(root), seed=3,
    )  # fmt: skip
    return base.with_(**changes)


def test_the_loop_gets_the_trial_and_its_reports_become_the_history(loops, tmp_path):
    epochs: list[int] = []
    result = train_custom(_config(loops, tmp_path), lambda r: epochs.append(r.epoch) or False)
    module = sys.modules[loops]
    assert module.SEEN == [(0.1, 3, 3, "DynamicScheme", (64,))]  # flattened for the built-in MLP
    assert epochs == [1, 2, 3] and [r.epoch for r in result.history] == [1, 2, 3]
    last = result.history[-1]
    assert last.lam_last == pytest.approx(0.5 * 0.05 / last.train_loss, rel=1e-5)
    assert last.lam_min == last.lam_max == last.lam_last
    assert result.test_acc is not None and 0.0 <= result.test_acc <= 1.0
    assert not result.stopped


def test_the_test_split_is_scored_by_dynl2_on_the_model_the_loop_leaves(loops, tmp_path):
    config = _config(loops, tmp_path, epochs=2)
    a, b = train_custom(config), train_custom(config)
    assert a.test_loss == b.test_loss and a.test_acc == b.test_acc  # a function of the seed
    other = train_custom(config.with_(seed=4))
    assert other.test_loss != a.test_loss


def test_a_callback_that_stops_ends_the_loop(loops, tmp_path):
    result = train_custom(_config(loops, tmp_path), lambda r: r.epoch == 2)
    assert result.stopped and len(result.history) == 2 and result.test_loss is None


@pytest.mark.parametrize(
    ("changes", "error", "fragment"),
    [
        ({"loop": "{m}:plain", "fail_at": 2}, LoopError, "raised RuntimeError: the loop broke"),
        ({"bad": "no_acc"}, LoopError, "lacks val_acc"),
        ({"bad": "text"}, LoopError, "val_loss must be a number"),
        ({"bad": "nan"}, DivergenceError, "val_loss is nan"),
        ({"loop": "{m}:silent"}, LoopError, "without reporting an epoch"),
        ({"loop": "{m}:missing"}, Exception, "no function 'missing'"),
    ],
)
def test_a_loop_that_fails_says_how(loops, tmp_path, monkeypatch, changes, error, fragment):
    import functools

    spec = str(changes.get("loop", "{m}:plain")).format(m=loops)
    config = _config(loops, tmp_path, loop=spec)
    kwargs = {k: v for k, v in changes.items() if k != "loop"}
    if kwargs:  # bind the loop's keyword arguments
        sys.path.insert(0, str(tmp_path))
        module = __import__(loops)
        monkeypatch.setattr(module, "plain", functools.partial(module.plain, **kwargs))
    with pytest.raises(error, match=fragment):
        train_custom(config)


def test_a_group_with_a_loop_trains_each_member_alone(loops, tmp_path):
    configs = [_config(loops, tmp_path, seed=s, epochs=2) for s in (1, 2, 3)]
    outcomes = train_fused(configs)
    alone = [train_custom(c) for c in configs]
    for fused, single in zip(outcomes, alone, strict=True):
        assert not isinstance(fused, Exception)
        assert fused.test_loss == single.test_loss
        assert torch.isfinite(torch.tensor(fused.history[-1].val_loss))


def test_dynl2s_own_trainer_never_runs_a_config_that_names_a_loop(loops, tmp_path):
    from trainers import ConfigError, train

    with pytest.raises(ConfigError, match="its own loop"):
        train(_config(loops, tmp_path))
