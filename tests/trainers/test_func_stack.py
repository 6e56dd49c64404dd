"""The fused engine for any model (torch.func): each member of a group of a user's own model
computes what its unfused run computes (batch norm's statistics, recurrent layers, every scheme
and optimizer, members leaving early), dropout draws from the group's seeded stream, and a
model that cannot be vmapped trains its members one at a time, saying so once."""

from __future__ import annotations

import dataclasses
import itertools
import math
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

from tests.trainers.histories import result_of, same_history
from trainers import (
    AWDScheme,
    Dataset,
    DigitsData,
    DivergenceError,
    DynamicL1Scheme,
    DynamicScheme,
    FixedScheme,
    MLPModel,
    Mnist1dData,
    ScheduleScheme,
    Scheme,
    SWDScheme,
    TrainConfig,
    build_model,
    load_dataset,
    train,
    train_fused,
)
from trainers.func_stack import FuncStackedModel
from trainers.fused import FusedOutcome, FusedTrainer
from trainers.models import FactoryModel

CPU = torch.device("cpu")
EXAMPLES = str(Path(__file__).resolve().parents[2] / "examples" / "own")


def _factory(name: str, **args: object) -> FactoryModel:
    return FactoryModel(f"models:{name}", args, EXAMPLES)


BN_CNN = _factory("bn_cnn", channels=4, dropout=0.0)
BASE = TrainConfig(data=DigitsData(), model=BN_CNN, epochs=2, batch_size=64, lr=3e-3, device="cpu")


def _reshaped(data: Dataset, *shape: int) -> Dataset:
    return dataclasses.replace(
        data,
        x_train=data.x_train.reshape(-1, *shape),
        x_val=data.x_val.reshape(-1, *shape),
        x_test=data.x_test.reshape(-1, *shape),
    )


@pytest.fixture(scope="module")
def images() -> Dataset:
    """scikit-learn's digits as [N, 1, 8, 8] images."""
    return _reshaped(load_dataset(DigitsData(), CPU), 1, 8, 8)


@pytest.fixture(scope="module")
def sequences() -> Dataset:
    """A few hundred MNIST-1D sequences [N, 40]."""
    data = load_dataset(Mnist1dData(n_val=100), CPU)
    return dataclasses.replace(
        data,
        x_train=data.x_train[:300],
        y_train=data.y_train[:300],
        x_test=data.x_test[:100],
        y_test=data.y_test[:100],
    )


def _matches_solo(
    configs: Sequence[TrainConfig], outcomes: Sequence[FusedOutcome], data: Dataset
) -> None:
    """Every member's history and test numbers are its configuration's unfused run's."""
    n_val, n_test = len(data.y_val), len(data.y_test)
    for config, outcome in zip(configs, outcomes, strict=True):
        fused, alone = result_of(outcome), train(config, data=data)
        same_history(alone.history, fused.history, n_val)
        assert fused.config == config and not fused.stopped
        assert fused.test_loss == pytest.approx(alone.test_loss, rel=1e-4, abs=1e-6)
        assert fused.test_acc is not None and alone.test_acc is not None
        assert abs(fused.test_acc - alone.test_acc) <= 1.5 / n_test


def _varied(scheme: Scheme, k: int) -> Scheme:
    """Member k's own values of the scheme's numbers (what a search would sample)."""
    f = 1.0 + 0.5 * k
    if isinstance(scheme, FixedScheme):
        return dataclasses.replace(scheme, lam=scheme.lam * f)
    if isinstance(scheme, DynamicScheme):  # DynamicL1Scheme too
        return dataclasses.replace(scheme, alpha=scheme.alpha * f, loss_ema=0.5 * (k % 2))
    if isinstance(scheme, AWDScheme):
        return dataclasses.replace(scheme, lam_awd=scheme.lam_awd * f)
    if isinstance(scheme, SWDScheme):
        return dataclasses.replace(scheme, lam=scheme.lam * f)
    if isinstance(scheme, ScheduleScheme):
        return dataclasses.replace(scheme, lam_start=scheme.lam_start * f)
    return scheme


SCHEMES: list[Scheme] = [
    DynamicScheme(alpha=1e-2),
    FixedScheme(lam=1e-3),
    DynamicL1Scheme(alpha=1e-3),
    AWDScheme(lam_awd=1e-2),
    ScheduleScheme(lam_start=3e-2, lam_end=1e-3, shape="cosine"),
]
OPTIMIZERS = [{"optimizer": "adam", "lr": 3e-3}, {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9}]
CASES = [
    pytest.param(dataclasses.replace(scheme, apply=apply), opt, id=f"{scheme.name}-{apply}-{o}")
    for scheme, apply, (o, opt) in itertools.product(
        SCHEMES, ("coupled", "decoupled"), enumerate(OPTIMIZERS)
    )
] + [pytest.param(SWDScheme(lam=1e-2), OPTIMIZERS[0], id="swd-decoupled-0")]


@pytest.mark.parametrize(("scheme", "opt"), CASES)
def test_bn_cnn_members_equal_their_solo_runs(
    scheme: Scheme, opt: dict[str, object], images: Dataset
) -> None:
    """Batch norm's running statistics are each member's own: evaluation reads them."""
    configs = [
        BASE.with_(scheme=_varied(scheme, k), seed=10 + k, order_seed=4, **opt) for k in range(3)
    ]
    configs[1] = configs[1].with_(lr=configs[1].lr * 2)
    _matches_solo(configs, train_fused(configs, data=images, shared_order=4), images)


def test_members_with_their_own_batch_orders_equal_their_solo_runs(images: Dataset) -> None:
    """Without a shared order each member reads its own batch, ``[K, B, 1, 8, 8]``."""
    configs = [BASE.with_(scheme=FixedScheme(lam=1e-3, biases=True), seed=s) for s in (1, 2, 3)]
    _matches_solo(configs, train_fused(configs, data=images), images)


def test_residual_mlp_members_equal_their_solo_runs(images: Dataset) -> None:
    model = _factory("residual_mlp", width=16)
    configs = [
        BASE.with_(model=model, scheme=DynamicScheme(alpha=1e-2 * (k + 1)), seed=k, order_seed=1)
        for k in range(3)
    ]
    _matches_solo(configs, train_fused(configs, data=images, shared_order=1), images)


def test_gru_members_equal_their_solo_runs(sequences: Dataset) -> None:
    """nn.GRU runs under vmap as its recurrence written out."""
    base = TrainConfig(
        data=Mnist1dData(n_val=100), model=_factory("gru", hidden=8), epochs=1, batch_size=50,
        lr=1e-2, scheme=FixedScheme(lam=1e-3), device="cpu",
    )  # fmt: skip
    configs = [base.with_(seed=k, order_seed=2, lr=1e-2 * (k + 1)) for k in range(2)]
    trainer = FusedTrainer(configs, sequences, CPU)
    assert trainer.vmap_problem is None  # fused, not one by one
    _matches_solo(configs, train_fused(configs, data=sequences, shared_order=2), sequences)


def test_built_in_models_read_flattened_images(images: Dataset) -> None:
    configs = [BASE.with_(model=MLPModel(hidden=(16,)), seed=k, order_seed=3) for k in range(2)]
    _matches_solo(configs, train_fused(configs, data=images, shared_order=3), images)


def test_members_stopping_early_leave_the_others_unchanged(images: Dataset) -> None:
    configs = [
        BASE.with_(scheme=FixedScheme(lam=1e-3 * (k + 1)), seed=k, order_seed=6, epochs=3)
        for k in range(4)
    ]
    stops = {1: 1, 3: 2}

    def stop_at(k: int):  # type: ignore[no-untyped-def]
        return lambda record: record.epoch == stops.get(k)

    outcomes = train_fused(
        configs, on_epoch=[stop_at(k) for k in range(4)], data=images, shared_order=6
    )
    _matches_solo([configs[0], configs[2]], [outcomes[0], outcomes[2]], images)
    for k, epochs in stops.items():
        stopped = result_of(outcomes[k])
        assert stopped.stopped and stopped.test_loss is None
        same_history(train(configs[k], data=images).history[:epochs], stopped.history, 360)


def test_a_stack_starts_where_each_member_starts_and_keeps_its_buffers() -> None:
    model = _factory("bn_cnn", channels=3)
    stack = FuncStackedModel(model, [5, 6, 7], 64, 10, (1, 8, 8), CPU)
    assert stack.names == ["0.weight", "1.weight", "1.bias", "5.weight", "5.bias"]
    assert stack.size == 3 and not stack.handwritten
    solo = [build_model(model, 64, 10, False, s, (1, 8, 8)) for s in (5, 6, 7)]
    for k, member in enumerate(solo):
        state = stack.member_state(k)
        assert state.keys() == member.state_dict().keys()
        for name, value in member.state_dict().items():
            assert torch.equal(state[name], value), name
    x = torch.randn(6, 1, 8, 8)
    stack.train()
    out = stack.forward(x)  # dropout 0.1: masks differ from a member's own; shapes agree
    assert out.shape == (3, 6, 10)
    stack.eval()
    solo[2].train()
    solo[2](x)  # a member's running statistics after the same batch
    stack.keep(torch.tensor([2]))
    solo[2].eval()
    kept = stack.member_state(0)
    torch.testing.assert_close(kept["1.running_var"], solo[2].state_dict()["1.running_var"])
    torch.testing.assert_close(stack.forward(x)[0], solo[2](x), rtol=1e-5, atol=1e-6)
    assert int(kept["1.num_batches_tracked"]) == 1


def test_with_dropout_a_group_trains_members_differ_and_a_group_repeats(
    images: Dataset,
) -> None:
    """Identical members differ only by their dropout masks, drawn from the group's stream;
    the stream is seeded, so the same group trains the same numbers again."""
    config = BASE.with_(model=_factory("bn_cnn", channels=4, dropout=0.3), seed=3, epochs=2)
    twins = [result_of(o) for o in train_fused([config, config], data=images, shared_order=8)]
    for result in twins:
        assert all(math.isfinite(r.train_loss) for r in result.history)
        assert result.history[-1].train_loss < result.history[0].train_loss
        assert result.test_acc is not None and result.test_acc > 0.5
    assert twins[0].history[0].train_loss != twins[1].history[0].train_loss
    once, again = (result_of(train_fused([config], data=images)[0]) for _ in range(2))
    assert [r.train_loss for r in once.history] == [r.train_loss for r in again.history]
    assert (once.test_loss, once.test_acc) == (again.test_loss, again.test_acc)
    before = torch.get_rng_state()
    train_fused([config], data=images)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is left alone


UNVMAPPABLE = """
import torch
from torch import nn

class Branchy(nn.Module):
    def __init__(self, features, n_outputs):
        super().__init__()
        self.a = nn.Linear(features, n_outputs)
        self.b = nn.Linear(features, n_outputs)

    def forward(self, x):
        x = x.flatten(1)
        if x.sum() > 0:
            return self.a(x) + self.b(x)
        return self.a(x) - self.b(x)

class Itemy(Branchy):
    def forward(self, x):
        x = x.flatten(1)
        return self.a(x) + self.b(x) * self.b.weight.abs().max().item()

def branchy(in_shape, n_outputs):
    return Branchy(int(torch.tensor(in_shape).prod()), n_outputs)

def itemy(in_shape, n_outputs):
    return Itemy(int(torch.tensor(in_shape).prod()), n_outputs)
"""


@pytest.fixture(scope="module")
def unvmappable(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("own")
    (root / "dynl2_unvmappable.py").write_text(textwrap.dedent(UNVMAPPABLE))
    return str(root)


@pytest.mark.parametrize("name", ["branchy", "itemy"])
def test_a_model_that_cannot_be_vmapped_trains_each_member_alone(
    name: str, unvmappable: str, images: Dataset
) -> None:
    model = FactoryModel(f"dynl2_unvmappable:{name}", {}, unvmappable)
    base = BASE.with_(model=model, scheme=FixedScheme(lam=1e-3), epochs=3, optimizer="sgd")
    configs = [base.with_(seed=k, order_seed=k, lr=0.01 * (k + 1)) for k in range(3)]
    configs.append(base.with_(seed=9, lr=10.0, scheme=FixedScheme(lam=50.0)))  # diverges
    notes: list[str] = []
    heard: list[tuple[int, int]] = []
    ended: list[list[int]] = []
    outcomes = train_fused(
        configs,
        on_epoch=[None, lambda r: r.epoch == 2, None, None],
        data=images,
        shared_order=5,
        on_ends=lambda together: ended.append([k for k, _ in together]),
        on_epochs=lambda records: heard.extend((k, r.epoch) for k, r in records),
        note=notes.append,
    )
    assert len(notes) == 1 and "\n" not in notes[0]
    assert f"dynl2_unvmappable:{name}" in notes[0] and "one at a time" in notes[0]
    assert ended == [[0], [1], [2], [3]]
    assert isinstance(outcomes[3], DivergenceError)
    assert heard[:6] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (2, 1)]
    solo = [train(c.with_(order_seed=5), data=images) for c in configs[:3]]
    stopped = result_of(outcomes[1])
    assert stopped.stopped and stopped.config == configs[1] and len(stopped.history) == 2
    same_history(solo[1].history[:2], stopped.history, 360)
    for k in (0, 2):
        result = result_of(outcomes[k])
        assert result.config == configs[k]
        same_history(solo[k].history, result.history, 360)
        assert result.test_loss == solo[k].test_loss


def test_the_probe_tells_a_good_model_from_a_bad_one(unvmappable: str, images: Dataset) -> None:
    good = FusedTrainer([BASE.with_(model=_factory("bn_cnn", channels=2))], images, CPU)
    assert good.vmap_problem is None
    state = [b.clone() for b in good.model.buffers]  # type: ignore[union-attr]
    bad = BASE.with_(model=FactoryModel("dynl2_unvmappable:branchy", {}, unvmappable))
    problem = FusedTrainer([bad, bad.with_(seed=1)], images, CPU).vmap_problem
    assert problem is not None and "\n" not in problem
    assert all(torch.equal(a, b) for a, b in zip(state, good.model.buffers, strict=True))  # type: ignore[union-attr]
