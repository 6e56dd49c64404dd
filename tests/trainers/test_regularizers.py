"""The regularization formulas, checked against hand computation and autograd, and a stack's
λ_t checked member by member against one run's."""

from __future__ import annotations

import math

import pytest
import torch

from trainers import (
    AWDScheme,
    DigitsData,
    DynamicL1Scheme,
    DynamicScheme,
    FixedScheme,
    MLPModel,
    NoneScheme,
    ScheduleScheme,
    Scheme,
    SWDScheme,
    TrainConfig,
    Trainer,
    load_dataset,
    make_regularizer,
)
from trainers.regularizers import make_stacked_regularizer

CPU = torch.device("cpu")


def _params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=g), torch.randn(2, 4, generator=g)]


def _lam(scheme: object, loss: float) -> float:
    reg = make_regularizer(scheme, CPU)  # type: ignore[arg-type]
    return float(reg.lam(torch.tensor(loss), [], _params()))


@pytest.mark.parametrize(
    ("alpha", "floor", "ceiling", "loss", "expected"),
    [
        (0.2, 1e-8, None, 0.5, 0.2),  # 0.5 * 0.2 / 0.5
        (0.02, 1e-8, None, 2.0, 0.005),
        (1e-6, 1e-3, None, 1.0, 1e-3),  # below the floor
        (1.0, 1e-8, 0.1, 0.01, 0.1),  # above the ceiling
        (1.0, 1e-8, None, 1e-3, 500.0),  # no ceiling: λ grows as the loss falls
    ],
)
def test_dynamic_lambda_exact(alpha, floor, ceiling, loss, expected):
    scheme = DynamicScheme(alpha=alpha, floor=floor, ceiling=ceiling)
    assert _lam(scheme, loss) == pytest.approx(expected, rel=1e-6)


def test_dynamic_lambda_ema_follows_recurrence():
    beta = 0.9
    reg = make_regularizer(DynamicScheme(alpha=0.4, loss_ema=beta), CPU)
    losses = [2.0, 1.0, 0.5, 0.25, 4.0]
    ema = None
    for loss in losses:
        ema = loss if ema is None else beta * ema + (1 - beta) * loss
        got = float(reg.lam(torch.tensor(loss), [], _params()))
        assert got == pytest.approx(0.5 * 0.4 / ema, rel=1e-5)


def test_lambda_is_detached_from_the_graph():
    w = torch.ones(3, 3, requires_grad=True)
    loss = (w * 2).sum()
    reg = make_regularizer(DynamicScheme(alpha=1.0), CPU)
    assert not reg.lam(loss.detach(), [], [w]).requires_grad


def test_fixed_and_none_lambda():
    assert _lam(FixedScheme(lam=0.03), 0.7) == pytest.approx(0.03)
    assert _lam(NoneScheme(), 0.7) == 0.0


def test_awd_lambda_and_smoothing():
    params = _params()
    grads = _params(seed=1)
    reg = make_regularizer(AWDScheme(lam_awd=0.5), CPU)
    g = torch.cat([x.flatten() for x in grads]).norm()
    w = torch.cat([x.flatten() for x in params]).norm()
    lam_t = float(0.5 * g / w)
    first = float(reg.lam(torch.tensor(1.0), grads, params))
    assert first == pytest.approx(0.9 * lam_t, rel=1e-5)  # λ̄_0 = 0
    second = float(reg.lam(torch.tensor(1.0), grads, params))
    assert second == pytest.approx(0.1 * first + 0.9 * lam_t, rel=1e-5)


@pytest.mark.parametrize("shape", ["linear", "cosine"])
def test_schedule_lambda_exact(shape):
    """λ over T = 8 steps from 0.3 to 0.1, then the value one step past the end."""
    total, start, end = 8, 0.3, 0.1
    reg = make_regularizer(ScheduleScheme(lam_start=start, lam_end=end, shape=shape), CPU, total)
    for i in range(total):
        u = i / total
        c = (1 - u) if shape == "linear" else 0.5 * (1 + math.cos(math.pi * u))
        got = float(reg.lam(torch.tensor(5.0), [], _params()))  # the loss plays no part
        assert got == pytest.approx(end + (start - end) * c, rel=1e-6), i
    assert float(reg.lam(torch.tensor(5.0), [], _params())) == pytest.approx(end, rel=1e-6)


def test_a_schedule_needs_the_run_s_length():
    with pytest.raises(ValueError, match="total steps"):
        make_regularizer(ScheduleScheme(), CPU)


def test_swd_lambda_is_lam_over_the_root_of_adam_s_mean_second_moment():
    """λ_t of a run against torch.optim.Adam's own state after the step: lam divided by the
    root of the mean, over the penalized parameters, of exp_avg_sq / (1 − β₂ᵗ)."""
    config = TrainConfig(
        data=DigitsData(), model=MLPModel(hidden=(16,)), scheme=SWDScheme(lam=0.01),
        epochs=1, batch_size=50, device="cpu",
    )  # fmt: skip
    trainer = Trainer(config, load_dataset(config.data, CPU), CPU)
    x, y = trainer.data.x_train, trainer.data.y_train
    beta2 = trainer.optimizer.param_groups[0]["betas"][1]
    lams = []
    for t in range(1, 6):
        _, lam, _ = trainer.step(x[50 * t : 50 * t + 50], y[50 * t : 50 * t + 50])
        states = [trainer.optimizer.state[p] for p in trainer.penalized]
        v_hat = torch.cat([s["exp_avg_sq"].flatten() for s in states]) / (1 - beta2**t)
        assert float(lam) == pytest.approx(0.01 / float(v_hat.mean().sqrt()), rel=1e-4), t
        lams.append(float(lam))
    assert len(set(lams)) == len(lams)  # it follows the gradients step by step


def test_swd_shrinks_weights_after_the_step_by_lr_times_lambda():
    params = _params()
    before = [p.clone() for p in params]
    reg = make_regularizer(SWDScheme(lam=0.01), CPU)
    grads = [torch.full_like(p, 0.5) for p in params]  # mean(g²) = 0.25: √mean(v̂_1) = 0.5
    lam = reg.lam(torch.tensor(1.0), grads, params)
    assert float(lam) == pytest.approx(0.01 / 0.5, rel=1e-6)
    reg.before_step(lam, grads, params)
    assert all(torch.equal(g, torch.full_like(g, 0.5)) for g in grads)  # decoupled
    reg.after_step(lam, 0.1, params)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p, b * (1 - 0.1 * 0.02))


@pytest.mark.parametrize("lam", [0.0, 0.01, 1.5])
def test_coupled_l2_gradient_equals_autograd(lam):
    params = [p.clone().requires_grad_() for p in _params()]
    (0.5 * lam * sum((p**2).sum() for p in params)).backward()
    expected = [p.grad.clone() for p in params]
    reg = make_regularizer(FixedScheme(lam=lam), CPU)
    grads = [torch.zeros_like(p) for p in params]
    reg.before_step(torch.tensor(lam), grads, [p.detach() for p in params])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_coupled_l1_gradient_equals_autograd():
    lam = 0.3
    params = [p.clone().requires_grad_() for p in _params()]
    (lam * sum(p.abs().sum() for p in params)).backward()
    reg = make_regularizer(DynamicL1Scheme(alpha=1.0), CPU)
    grads = [torch.ones_like(p) for p in params]  # a data gradient the penalty adds to
    reg.before_step(torch.tensor(lam), grads, [p.detach() for p in params])
    for got, p in zip(grads, params, strict=True):
        torch.testing.assert_close(got, 1 + p.grad)


def test_decoupled_step_shrinks_weights():
    lr, lam = 0.1, 0.25
    params = _params()
    before = [p.clone() for p in params]
    reg = make_regularizer(FixedScheme(lam=lam, apply="decoupled"), CPU)
    grads = [torch.zeros_like(p) for p in params]
    reg.before_step(torch.tensor(lam), grads, params)  # decoupled: no gradient term
    assert all(float(g.abs().sum()) == 0.0 for g in grads)
    reg.after_step(torch.tensor(lam), lr, params)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p, b * (1 - lr * lam))


def test_decoupled_l1_step():
    lr, lam = 0.1, 0.25
    params = _params()
    before = [p.clone() for p in params]
    reg = make_regularizer(DynamicL1Scheme(alpha=1.0, apply="decoupled"), CPU)
    reg.after_step(torch.tensor(lam), lr, params)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p, b - lr * lam * torch.sign(b))


# A stack's regularizer computes, member by member, what one run's computes.

STACKABLE: list[Scheme] = [
    NoneScheme(),
    FixedScheme(lam=1e-2),
    FixedScheme(lam=1e-2, apply="decoupled"),
    DynamicScheme(alpha=0.2, floor=0.05, ceiling=0.3),
    DynamicScheme(alpha=0.2, loss_ema=0.9, apply="decoupled"),
    DynamicL1Scheme(alpha=0.1),
    DynamicL1Scheme(alpha=0.1, apply="decoupled"),
    AWDScheme(lam_awd=0.5),
    SWDScheme(lam=0.05),
    ScheduleScheme(lam_start=0.2, lam_end=0.01),
    ScheduleScheme(lam_start=0.0, lam_end=0.3, shape="cosine", apply="decoupled"),
]


def _member(scheme: Scheme, k: int) -> Scheme:
    """Member k's own numbers (k = 0 keeps the scheme's); odd members of an EMA stack smooth
    less, and member 2 of a dynamic stack not at all, so both branches of the EMA run."""
    if isinstance(scheme, FixedScheme):
        return FixedScheme(lam=scheme.lam * (1 + k), apply=scheme.apply)
    if isinstance(scheme, DynamicScheme):
        ema = 0.0 if k == 2 else scheme.loss_ema * (0.5 if k % 2 else 1.0)
        return type(scheme)(
            alpha=scheme.alpha * (1 + k),
            floor=scheme.floor,
            ceiling=scheme.ceiling,
            loss_ema=ema,
            apply=scheme.apply,
        )
    if isinstance(scheme, AWDScheme):
        return AWDScheme(lam_awd=scheme.lam_awd * (1 + k), apply=scheme.apply)
    if isinstance(scheme, SWDScheme):
        return SWDScheme(lam=scheme.lam * (1 + k))
    if isinstance(scheme, ScheduleScheme):
        return ScheduleScheme(
            lam_start=scheme.lam_start * (1 + k),
            lam_end=scheme.lam_end / (1 + k),
            shape=scheme.shape,
            apply=scheme.apply,
        )
    return scheme


@pytest.mark.parametrize("scheme", STACKABLE, ids=lambda s: f"{s.name}-{s.apply}")
def test_a_stack_computes_each_member_s_run_and_members_can_leave(scheme: Scheme) -> None:
    k = 4
    schemes = [_member(scheme, i) for i in range(k)]
    runs = [make_regularizer(s, CPU, total_steps=6) for s in schemes]
    stack = make_stacked_regularizer(schemes, CPU, total_steps=6)
    g = torch.Generator().manual_seed(1)
    members = list(range(k))
    shapes = [(4, 3), (2, 4)]
    stacked_params = [torch.randn(k, *shape, generator=g) for shape in shapes]
    run_params = [[p[i].clone() for p in stacked_params] for i in range(k)]
    for step in range(6):
        if step == 3:  # members 0 and 2 leave; the others go on with their own state
            stay = torch.tensor([1, 3])
            stack.keep(stay)
            stacked_params = [p[stay].clone() for p in stacked_params]
            members = [1, 3]
        n = len(members)
        loss = torch.rand(k, generator=g)[members] + 0.1
        stacked_grads = [torch.randn(n, *shape, generator=g) for shape in shapes]
        incoming = [grad.clone() for grad in stacked_grads]  # before the penalty joins them
        lam = stack.lam(loss, stacked_grads, stacked_params)
        stack.before_step(lam, stacked_grads, stacked_params)
        stack.after_step(lam, torch.full((n,), 0.1), stacked_params)
        assert lam.shape == (n,)
        for row, i in enumerate(members):
            grads = [grad[row].clone() for grad in incoming]
            run_lam = runs[i].lam(loss[row], grads, run_params[i])
            assert run_lam.ndim == 0
            # the AWD and SWD norms are reduced in another order for a stack: rounding apart
            exact = not isinstance(scheme, AWDScheme | SWDScheme)
            _close(lam[row], run_lam, exact)
            runs[i].before_step(run_lam, grads, run_params[i])
            runs[i].after_step(run_lam, 0.1, run_params[i])
            for stacked, own in zip(stacked_grads, grads, strict=True):
                _close(stacked[row], own, exact)
            for stacked, own in zip(stacked_params, run_params[i], strict=True):
                _close(stacked[row], own, exact)


def _close(got: torch.Tensor, want: torch.Tensor, exact: bool) -> None:
    if exact:
        assert torch.equal(got, want)
    else:
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_a_member_without_loss_ema_takes_an_infinite_loss_as_its_run_does() -> None:
    schemes = [DynamicScheme(alpha=0.2, loss_ema=0.9), DynamicScheme(alpha=0.2)]
    stack = make_stacked_regularizer(schemes, CPU)
    run = make_regularizer(schemes[1], CPU)
    stack.lam(torch.tensor([1.0, 1.0]), [], [])
    run.lam(torch.tensor(1.0), [], [])
    lam = stack.lam(torch.tensor([1.0, float("inf")]), [], [])
    floor = torch.tensor(1e-8)  # the default floor, as a float32
    assert torch.equal(lam[1], run.lam(torch.tensor(float("inf")), [], []))
    assert torch.equal(lam[1], floor)
