"""The regularization formulas, checked against hand computation and autograd."""

from __future__ import annotations

import pytest
import torch

from trainers import (
    AWDScheme,
    ConfigError,
    DynamicL1Scheme,
    DynamicScheme,
    FixedScheme,
    NoneScheme,
    make_regularizer,
    scheme_from_dict,
)
from trainers.schemes import penalized

CPU = torch.device("cpu")


def _params(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, generator=g), torch.randn(2, 4, generator=g)]


def _lam(scheme: object, loss: float, grads: list[torch.Tensor] | None = None) -> float:
    reg = make_regularizer(scheme, _params(), CPU)  # type: ignore[arg-type]
    return float(reg.lam(torch.tensor(loss), grads or []))


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
    reg = make_regularizer(DynamicScheme(alpha=0.4, loss_ema=beta), _params(), CPU)
    losses = [2.0, 1.0, 0.5, 0.25, 4.0]
    ema = None
    for loss in losses:
        ema = loss if ema is None else beta * ema + (1 - beta) * loss
        got = float(reg.lam(torch.tensor(loss), []))
        assert got == pytest.approx(0.5 * 0.4 / ema, rel=1e-5)


def test_lambda_is_detached_from_the_graph():
    w = torch.ones(3, 3, requires_grad=True)
    loss = (w * 2).sum()
    reg = make_regularizer(DynamicScheme(alpha=1.0), [w], CPU)
    assert not reg.lam(loss.detach(), []).requires_grad


def test_fixed_and_none_lambda():
    assert _lam(FixedScheme(lam=0.03), 0.7) == pytest.approx(0.03)
    assert _lam(NoneScheme(), 0.7) == 0.0


def test_awd_lambda_and_smoothing():
    params = _params()
    grads = _params(seed=1)
    reg = make_regularizer(AWDScheme(lam_awd=0.5), params, CPU)
    g = torch.cat([x.flatten() for x in grads]).norm()
    w = torch.cat([x.flatten() for x in params]).norm()
    lam_t = float(0.5 * g / w)
    first = float(reg.lam(torch.tensor(1.0), grads))
    assert first == pytest.approx(0.9 * lam_t, rel=1e-5)  # λ̄_0 = 0
    second = float(reg.lam(torch.tensor(1.0), grads))
    assert second == pytest.approx(0.1 * first + 0.9 * lam_t, rel=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.01, 1.5])
def test_coupled_l2_gradient_equals_autograd(lam):
    params = [p.clone().requires_grad_() for p in _params()]
    (0.5 * lam * sum((p**2).sum() for p in params)).backward()
    expected = [p.grad.clone() for p in params]
    reg = make_regularizer(FixedScheme(lam=lam), [p.detach() for p in params], CPU)
    grads = [torch.zeros_like(p) for p in params]
    reg.before_step(torch.tensor(lam), grads)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_coupled_l1_gradient_equals_autograd():
    lam = 0.3
    params = [p.clone().requires_grad_() for p in _params()]
    (lam * sum(p.abs().sum() for p in params)).backward()
    reg = make_regularizer(DynamicL1Scheme(alpha=1.0), [p.detach() for p in params], CPU)
    grads = [torch.ones_like(p) for p in params]  # a data gradient the penalty adds to
    reg.before_step(torch.tensor(lam), grads)
    for got, p in zip(grads, params, strict=True):
        torch.testing.assert_close(got, 1 + p.grad)


def test_decoupled_step_shrinks_weights():
    lr, lam = 0.1, 0.25
    params = _params()
    before = [p.clone() for p in params]
    reg = make_regularizer(FixedScheme(lam=lam, apply="decoupled"), params, CPU)
    grads = [torch.zeros_like(p) for p in params]
    reg.before_step(torch.tensor(lam), grads)  # decoupled: no gradient term
    assert all(float(g.abs().sum()) == 0.0 for g in grads)
    reg.after_step(torch.tensor(lam), lr)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p, b * (1 - lr * lam))


def test_decoupled_l1_step():
    lr, lam = 0.1, 0.25
    params = _params()
    before = [p.clone() for p in params]
    reg = make_regularizer(DynamicL1Scheme(alpha=1.0, apply="decoupled"), params, CPU)
    reg.after_step(torch.tensor(lam), lr)
    for p, b in zip(params, before, strict=True):
        torch.testing.assert_close(p, b - lr * lam * torch.sign(b))


def test_penalty_covers_matrices_not_biases_unless_configured():
    layer = torch.nn.Linear(3, 2)
    named = list(layer.named_parameters())
    assert penalized(named, FixedScheme(lam=1.0)) == [layer.weight]
    assert penalized(named, FixedScheme(lam=1.0, biases=True)) == [layer.weight, layer.bias]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"scheme": "dynamic", "alpha": -1.0}, "scheme.alpha"),
        ({"scheme": "dynamic", "alpha": 0.0}, "scheme.alpha"),
        ({"scheme": "dynamic", "alpha": 1.0, "floor": 2.0, "ceiling": 1.0}, "scheme.floor"),
        ({"scheme": "dynamic", "alpha": 1.0, "loss_ema": 1.0}, "scheme.loss_ema"),
        ({"scheme": "dynamic", "lam": 0.1}, "scheme.lam"),
        ({"scheme": "fixed", "lam": -0.1}, "scheme.lam"),
        ({"scheme": "fixed", "alpha": 0.1}, "scheme.alpha"),
        ({"scheme": "fixed", "lam": "big"}, "scheme.lam"),
        ({"scheme": "fixed", "lam": True}, "scheme.lam"),
        ({"scheme": "fixed", "lam": float("nan")}, "scheme.lam"),
        ({"scheme": "awd", "lam_awd": 0.0}, "scheme.lam_awd"),
        ({"scheme": "none", "apply": "sideways"}, "scheme.apply"),
        ({"scheme": "l3"}, "scheme.scheme"),
    ],
)
def test_bad_scheme_settings_name_their_key(data, key):
    with pytest.raises(ConfigError) as info:
        scheme_from_dict(data)
    assert info.value.key == key
    assert str(info.value).startswith(key + ":")
