"""A dynamic scheme's ``alpha = "lr"``: λ_t = clamp(0.5·η_t / L̂_t, floor, ceiling) with η_t the
run's learning rate, in both engines, the drop-in (following an LR scheduler), a user's loop,
and the config that stores it; and the bad values, each refused with its key."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tests.trainers.histories import result_of, same_history
from trainers import (
    ALPHA_LR,
    ConfigError,
    DigitsData,
    DynamicL1,
    DynamicL1Scheme,
    DynamicL2,
    DynamicScheme,
    FixedScheme,
    MLPModel,
    TrainConfig,
    Trainer,
    build_model,
    from_scheme,
    fuse_problem,
    load_dataset,
    make_regularizer,
    scheme_from_dict,
    train,
    train_fused,
)
from trainers._fields import convert
from trainers.custom import train_custom
from trainers.datasets import Dataset
from trainers.fused import FusedTrainer
from trainers.loop import make_optimizer
from trainers.regularizers import make_stacked_regularizer
from trainers.schemes import ALPHA_RULE

CPU = torch.device("cpu")
SMALL = TrainConfig(
    data=DigitsData(), model=MLPModel(hidden=(16,)), epochs=2, batch_size=64, device="cpu"
)
# rates far from the default alpha (1e-2), so a run that used it instead would be caught
RATES = {"adam": 3e-3, "sgd": 0.05}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(SMALL.data, CPU)


def expected_lams(
    losses: Tensor, lr: float, floor: float, ceiling: float | None, loss_ema: float
) -> Tensor:
    """λ_t of each step from that step's loss, by the scheme's formula, in float64 on the host."""
    out, ema = [], None
    for loss in losses.double().tolist():
        ema = loss if ema is None else loss_ema * ema + (1 - loss_ema) * loss
        lam = max(0.5 * lr / ema, floor)
        out.append(lam if ceiling is None else min(lam, ceiling))
    return torch.tensor(out, dtype=torch.float64)


def _scheme(kind: type[DynamicScheme], apply: str, lr: float, smoothed: bool) -> DynamicScheme:
    """alpha "lr", plain, or with a loss EMA and a ceiling that the late steps reach."""
    if smoothed:
        return kind(alpha=ALPHA_LR, apply=apply, loss_ema=0.5, ceiling=0.25 * lr)
    return kind(alpha=ALPHA_LR, apply=apply)


CASES = [
    pytest.param(kind, apply, optimizer, smoothed, id=f"{kind.name}-{apply}-{optimizer}-{tag}")
    for kind in (DynamicScheme, DynamicL1Scheme)
    for apply in ("coupled", "decoupled")
    for optimizer in ("adam", "sgd")
    for smoothed, tag in ((False, "raw"), (True, "ema-ceiling"))
]


def _check(lams: Tensor, losses: Tensor, lr: float, scheme: DynamicScheme) -> None:
    want = expected_lams(losses, lr, scheme.floor, scheme.ceiling, scheme.loss_ema)
    torch.testing.assert_close(lams.double(), want, rtol=2e-6, atol=0.0)
    if scheme.ceiling is not None:  # the case reaches its ceiling, and is below it too
        assert bool(want.eq(scheme.ceiling).any()) and bool(want.lt(scheme.ceiling).any())


@pytest.mark.parametrize(("kind", "apply", "optimizer", "smoothed"), CASES)
def test_each_step_of_a_run_takes_alpha_from_its_learning_rate(
    kind: type[DynamicScheme], apply: str, optimizer: str, smoothed: bool, digits: Dataset
) -> None:
    lr = RATES[optimizer]
    scheme = _scheme(kind, apply, lr, smoothed)
    config = SMALL.with_(scheme=scheme, optimizer=optimizer, lr=lr, epochs=1)
    trainer = Trainer(config, digits, CPU)
    order = torch.randperm(len(digits.x_train), generator=torch.Generator().manual_seed(1))
    losses, lams, _ = trainer.train_epoch(torch.cat([order, order]), 64)  # 2 passes of steps
    _check(lams, losses, lr, scheme)


@pytest.mark.parametrize(("kind", "apply", "optimizer", "smoothed"), CASES)
def test_each_step_of_each_fused_member_takes_alpha_from_its_own_rate(
    kind: type[DynamicScheme], apply: str, optimizer: str, smoothed: bool, digits: Dataset
) -> None:
    rates = [RATES[optimizer] * f for f in (1.0, 2.0, 0.5)]
    schemes = [_scheme(kind, apply, lr, smoothed) for lr in rates]
    configs = [
        SMALL.with_(scheme=s, optimizer=optimizer, lr=lr, seed=k)
        for k, (s, lr) in enumerate(zip(schemes, rates, strict=True))
    ]
    trainer = FusedTrainer(configs, digits, CPU)
    order = torch.randperm(len(digits.x_train), generator=torch.Generator().manual_seed(1))
    losses, lams, _ = trainer.train_epoch(torch.cat([order, order]), 64)
    for k, (scheme, lr) in enumerate(zip(schemes, rates, strict=True)):
        _check(lams[:, k], losses[:, k], lr, scheme)


def test_fused_members_equal_their_runs_alone_with_rates_and_alphas_mixed(
    digits: Dataset,
) -> None:
    """Members with alpha "lr" at three rates, and one with a numeric alpha, share a group;
    each equals its run alone."""
    configs = [
        SMALL.with_(scheme=DynamicScheme(alpha=ALPHA_LR), lr=lr, seed=k)
        for k, lr in enumerate((2e-3, 5e-3, 1.2e-2))
    ]
    configs.append(SMALL.with_(scheme=DynamicScheme(alpha=4e-2), lr=5e-3, seed=9))
    configs.append(SMALL.with_(scheme=DynamicL1Scheme(alpha=ALPHA_LR), lr=8e-3, seed=4))
    assert fuse_problem(configs[:4]) is None  # alpha, numeric or "lr", is per member
    assert fuse_problem(configs) == "members differ in their scheme"
    fused = train_fused(configs[:4], data=digits)
    for config, outcome in zip(configs[:4], fused, strict=True):
        alone = train(config, data=digits)
        same_history(alone.history, result_of(outcome).history, len(digits.y_val))
    # and the λ reported follows each member's own α: λ·L ≈ α/2 member by member
    first = [result_of(o).history[0] for o in fused]
    ratios = [r.lam_last / first[0].lam_last for r in first[:3]]
    assert ratios[1] > 1.5 and ratios[2] > 3.0  # its own rate, not the first member's


class _HostRead(AssertionError):
    pass


def _refuse(*args: object, **kwargs: object) -> None:
    raise _HostRead("a tensor was read back to the host inside a step")


def _no_host_reads(patch: pytest.MonkeyPatch) -> None:
    for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        patch.setattr(Tensor, name, _refuse)


def test_no_step_of_either_engine_reads_a_tensor_back(
    digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SMALL.with_(scheme=DynamicScheme(alpha=ALPHA_LR, loss_ema=0.9), optimizer="sgd")
    run = Trainer(config, digits, CPU)
    stack = FusedTrainer([config, config.with_(lr=0.02, seed=1)], digits, CPU)
    order = torch.randperm(len(digits.x_train))
    run.train_epoch(order, 64)  # first steps create the optimizers' state
    stack.train_epoch(order, 64)
    with monkeypatch.context() as patch:
        _no_host_reads(patch)
        run.train_epoch(order, 64)
        stack.train_epoch(order, 64)
        with pytest.raises(_HostRead):  # the guard is live
            order.sum().item()


def test_a_regularizer_for_alpha_lr_needs_the_rate() -> None:
    with pytest.raises(ValueError, match="pass lr="):
        make_regularizer(DynamicScheme(alpha=ALPHA_LR), CPU)
    with pytest.raises(ValueError, match="one rate per member, 2"):
        make_stacked_regularizer([DynamicScheme(alpha=ALPHA_LR)] * 2, CPU, lr=[0.1])
    reg = make_regularizer(DynamicScheme(alpha=ALPHA_LR), CPU, lr=0.2)
    assert float(reg.lam(torch.tensor(0.5), [], [])) == pytest.approx(0.2)  # 0.5·0.2 / 0.5
    reg.set_lr(0.05)
    assert float(reg.lam(torch.tensor(0.5), [], [])) == pytest.approx(0.05)
    fixed = make_regularizer(DynamicScheme(alpha=0.3), CPU, lr=0.2)
    fixed.set_lr(0.05)  # a numeric alpha: the rate is never read
    assert float(fixed.lam(torch.tensor(0.5), [], [])) == pytest.approx(0.3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_neither_engine_nor_the_drop_in_syncs() -> None:  # pragma: no cover
    gpu = torch.device("cuda")
    config = SMALL.with_(device="cuda", scheme=DynamicScheme(alpha=ALPHA_LR), lr=4e-3)
    data = load_dataset(config.data, gpu)
    run = Trainer(config, data, gpu)
    stack = FusedTrainer([config, config.with_(lr=8e-3, seed=1)], data, gpu)
    model = nn.Linear(64, 10).to(gpu)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    reg = DynamicL2(model, alpha="lr", optimizer=opt)
    order = torch.randperm(len(data.x_train), device=gpu)
    run.train_epoch(order, 64)
    stack.train_epoch(order, 64)
    torch.cuda.set_sync_debug_mode("error")
    try:
        _, lams, _ = run.train_epoch(order, 64)
        stack.train_epoch(order, 64)
        for _ in range(3):
            loss = F.cross_entropy(model(data.x_train), data.y_train)
            opt.zero_grad()
            loss.backward()
            reg.step(loss)
            opt.step()
            scheduler.step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert reg.lam == pytest.approx(0.5 * 0.025 / float(loss.detach()), rel=1e-5)
    assert bool(lams.gt(0).all())


# ---------------------------------------------------------------------------------------------
# The drop-in regularizer.


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


@pytest.mark.parametrize("cls", [DynamicL2, DynamicL1])
@pytest.mark.parametrize("apply", ["coupled", "decoupled"])
def test_the_drop_in_follows_a_step_lr_scheduler(
    cls: type[DynamicL2], apply: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model()
    x, y = torch.randn(64, 6), torch.randint(0, 3, (64,))
    opt = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.25)
    reg = cls(model, alpha="lr", optimizer=opt, floor=1e-4, apply=apply)
    losses, lams, rates = [], [], []
    for _ in range(10):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        rate = opt.param_groups[0]["lr"]
        with monkeypatch.context() as patch:
            _no_host_reads(patch)
            lams.append(reg.step(loss))
            opt.step()
            reg.after_step(rate)
        scheduler.step()
        losses.append(loss.detach())
        rates.append(rate)
    assert rates == pytest.approx([0.2] * 3 + [0.05] * 3 + [0.0125] * 3 + [0.003125])
    want = [max(0.5 * r / float(loss), 1e-4) for r, loss in zip(rates, losses, strict=True)]
    assert [float(lam) for lam in lams] == pytest.approx(want, rel=1e-6)
    assert reg.lam == pytest.approx(want[-1], rel=1e-6)


def test_the_drop_in_equals_the_built_in_trainer_at_a_constant_rate(digits: Dataset) -> None:
    config = SMALL.with_(scheme=DynamicScheme(alpha=ALPHA_LR, apply="decoupled"), lr=4e-3)
    trainer = Trainer(config, digits, CPU)
    model = build_model(config.model, digits.n_features, digits.n_classes, False, config.seed)
    opt = make_optimizer(config, list(model.parameters()))
    reg = DynamicL2(model, opt, alpha="lr", apply="decoupled")
    order = torch.randperm(len(digits.x_train), generator=torch.Generator().manual_seed(2))
    _, want, _ = trainer.train_epoch(order, 64)
    got = []
    for idx in order.split(64):
        loss = F.cross_entropy(model(digits.x_train[idx]), digits.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        got.append(reg.step(loss))
        opt.step()
        reg.after_step(config.lr)
    torch.testing.assert_close(torch.stack(got), want, rtol=1e-6, atol=1e-10)


def test_a_numeric_alpha_never_reads_the_optimizer() -> None:
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    reg = DynamicL2(model, opt, alpha=0.04)
    loss = F.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 3, (8,)))
    loss.backward()
    opt.param_groups[0]["lr"] = "not read"
    assert float(reg.step(loss)) == pytest.approx(0.02 / float(loss.detach()), rel=1e-6)


def _two_groups(model: nn.Sequential, first: float, second: object) -> torch.optim.Optimizer:
    """SGD with the model's first layer in one group, at ``first``, its last in another."""
    groups: list[dict[str, Any]] = [
        {"params": model[0].parameters(), "lr": first},
        {"params": model[2].parameters()},
    ]
    opt = torch.optim.SGD(groups, lr=0.1)
    opt.param_groups[1]["lr"] = second
    return opt


def test_groups_outside_the_penalty_may_differ_but_the_penalized_ones_may_not() -> None:
    model = _model()
    opt = torch.optim.SGD(
        [
            {"params": [model[0].weight, model[2].weight], "lr": 0.1},
            {"params": [model[0].bias, model[2].bias], "lr": 0.7},  # biases: not penalized
        ]
    )
    reg = DynamicL2(model, alpha="lr", optimizer=opt)
    loss = torch.tensor(2.0)
    assert float(reg.step(loss)) == pytest.approx(0.5 * 0.1 / 2.0)
    opt.param_groups[0]["lr"] = 0.3  # written in place, as a scheduler does
    assert float(reg.step(loss)) == pytest.approx(0.5 * 0.3 / 2.0)
    two = _two_groups(model, 0.1, 0.1)
    reg = DynamicL2(model, alpha="lr", optimizer=two)
    two.param_groups[1]["lr"] = 0.2  # a scheduler that moves one group only
    with pytest.raises(ConfigError, match=r"one learning rate .* \[0\.1, 0\.2\]") as caught:
        reg.step(loss)
    assert caught.value.key == "alpha"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda m: DynamicL2(m, alpha="lr"), "optimizer=opt .* got neither"),
        (lambda m: DynamicL1(m, alpha="lr", apply="decoupled"), "got neither"),
        (lambda m: from_scheme(m, DynamicScheme(alpha="lr")), "got neither"),
        (
            lambda m: from_scheme(
                m, DynamicScheme(alpha="lr"), optimizer=torch.optim.SGD(m.parameters()), lr=0.1
            ),
            "got both",
        ),
        (lambda m: DynamicL2(m, {"lr": 0.1}, alpha="lr"), "is not a torch optimizer"),  # type: ignore[arg-type]
        (
            lambda m: DynamicL2(m, torch.optim.SGD(nn.Linear(2, 2).parameters()), alpha="lr"),
            "holds none of the penalized parameters",
        ),
        (
            lambda m: DynamicL2(
                m, torch.optim.Adam(m.parameters(), lr=torch.tensor(0.1)), alpha="lr"
            ),
            "a Python number, got Tensor",
        ),
        (lambda m: DynamicL2(m, _two_groups(m, 0.1, 0.2), alpha="lr"), "one learning rate"),
        (lambda m: DynamicL2(m, _two_groups(m, 0.1, None), alpha="lr"), "got NoneType"),
        (lambda m: DynamicL2(m, alpha="LR"), 'must be a number > 0 or "lr"'),  # type: ignore[arg-type]
    ],
)
def test_a_drop_in_that_cannot_find_its_rate_is_refused(make, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=words) as caught:
        make(_model())
    assert caught.value.key == "alpha"
    assert "\n" not in str(caught.value)


# ---------------------------------------------------------------------------------------------
# A user's own loop, and the config.

LOOP = """
import torch
from torch.nn import functional as F

SEEN = []

def fast(ctx):
    opt = torch.optim.SGD(ctx.model.parameters(), lr=3 * ctx.lr)  # not the rate alpha follows
    for epoch in range(1, ctx.epochs + 1):
        loss = F.cross_entropy(ctx.model(ctx.data.x_train), ctx.data.y_train)
        opt.zero_grad()
        loss.backward()
        SEEN.append((float(loss.detach()), float(ctx.regularizer.step(loss)), ctx.lr))
        opt.step()
        ctx.regularizer.after_step(3 * ctx.lr)
        with torch.no_grad():
            val = ctx.model(ctx.data.x_val)
        ctx.report(epoch, train_loss=loss, val_loss=F.cross_entropy(val, ctx.data.y_val),
                   val_acc=(val.argmax(1) == ctx.data.y_val).float().mean())
"""


def test_a_user_s_loop_gets_a_regularizer_whose_alpha_is_the_trial_s_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"alpha_lr_loop_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(LOOP)
    monkeypatch.setattr(sys, "path", list(sys.path))
    config = SMALL.with_(
        scheme=DynamicScheme(alpha=ALPHA_LR, floor=1e-5), optimizer="sgd", lr=0.04, epochs=3,
        loop=f"{name}:fast", loop_root=str(tmp_path),
    )  # fmt: skip
    result = train_custom(config)
    seen = sys.modules[name].SEEN
    assert [rate for _, _, rate in seen] == [0.04] * 3
    for loss, lam, _ in seen:
        assert lam == pytest.approx(max(0.5 * 0.04 / loss, 1e-5), rel=1e-6)
    assert result.history[-1].lam_last == pytest.approx(seen[-1][1], rel=1e-6)


def test_the_defaults_stay_and_alpha_lr_round_trips_through_json() -> None:
    assert (DynamicScheme().alpha, DynamicScheme().floor, DynamicScheme().ceiling) == (
        1e-2,
        1e-8,
        None,
    )
    assert not DynamicScheme().follows_lr and DynamicScheme(alpha="lr").follows_lr
    for name in ("dynamic", "dynamic_l1"):
        data = {"scheme": {"scheme": name, "alpha": "lr", "apply": "decoupled"}, "lr": 0.03}
        config = TrainConfig.from_dict(data)
        assert isinstance(config.scheme, DynamicScheme) and config.scheme.alpha == "lr"
        stored = json.loads(json.dumps(config.to_dict()))
        assert stored["scheme"]["alpha"] == "lr"
        assert TrainConfig.from_dict(stored) == config
    assert scheme_from_dict({"scheme": "dynamic", "alpha": 1}) == DynamicScheme(alpha=1.0)
    assert DynamicScheme(alpha=ALPHA_LR).alpha_at(0.25) == 0.25
    assert DynamicScheme(alpha=0.5).alpha_at(0.25) == 0.5


ANNOTATION = float | Literal["lr"]


@pytest.mark.parametrize(("value", "converted"), [("lr", "lr"), (1, 1.0), (0.5, 0.5), (-2, -2.0)])
def test_convert_reads_a_number_or_the_word(value: object, converted: object) -> None:
    got = convert("scheme.alpha", value, ANNOTATION)
    assert got == converted and type(got) is type(converted)


@pytest.mark.parametrize("value", ["LR", "", True, None, [1.0], math.inf], ids=repr)
def test_convert_refuses_anything_else_with_the_key(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        convert("scheme.alpha", value, ANNOTATION)
    assert caught.value.key == "scheme.alpha"


BAD_ALPHAS = [
    "LR",
    "learning_rate",
    "",
    " lr",
    "0.01",
    True,
    None,
    [0.01],
    {"lr": 1},
    -1.0,
    0,
    math.nan,
    math.inf,
]


@pytest.mark.parametrize("scheme", ["dynamic", "dynamic_l1"])
@pytest.mark.parametrize("alpha", BAD_ALPHAS, ids=repr)
def test_bad_alphas_are_refused_with_the_key(scheme: str, alpha: object) -> None:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict({"scheme": {"scheme": scheme, "alpha": alpha}})
    assert caught.value.key == "scheme.alpha"
    detail = caught.value.detail
    assert "\n" not in detail
    if not isinstance(alpha, float):  # nan, inf: "expected a finite number"
        assert '"lr"' in detail and "number" in detail, detail


@pytest.mark.parametrize("alpha", ["LR", "", -1.0, 0.0, math.nan, True, None, [0.1]], ids=repr)
def test_a_scheme_built_in_python_refuses_bad_alphas_in_one_sentence(alpha: object) -> None:
    with pytest.raises(ConfigError) as caught:
        DynamicScheme(alpha=alpha)  # type: ignore[arg-type]
    assert caught.value.key == "alpha"
    assert caught.value.detail.startswith(f"must be {ALPHA_RULE}, got ")


def test_other_schemes_take_no_alpha_and_fixed_strengths_stay_numbers() -> None:
    with pytest.raises(ConfigError) as caught:
        scheme_from_dict({"scheme": "fixed", "lam": "lr"})
    assert caught.value.key == "scheme.lam"
    with pytest.raises(ConfigError) as caught:
        scheme_from_dict({"scheme": "fixed", "alpha": "lr"})
    assert caught.value.key == "scheme.alpha"
    assert FixedScheme(lam=0.1).lam == 0.1
