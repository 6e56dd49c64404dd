"""The stacked MLP's hand-written losses and gradients against autograd over the same stack."""

from __future__ import annotations

import pytest
import torch

from trainers import CNNModel, LinearModel, MLPModel
from trainers.models import ModelConfig
from trainers.stacked import StackedModel

CPU = torch.device("cpu")
MODELS = [
    pytest.param(LinearModel(), id="linear"),
    pytest.param(MLPModel(hidden=(16,)), id="mlp-16"),
    pytest.param(MLPModel(hidden=(12, 9, 7)), id="mlp-12-9-7"),
]


def _stack(model: ModelConfig, n_out: int, k: int = 3) -> StackedModel:
    stack = StackedModel(model, list(range(10, 10 + k)), 6, n_out, False, CPU)
    with torch.no_grad():  # biases away from 0 so every ReLU's mask has both sides
        for p in stack.params[1::2]:
            p.add_(torch.randn_like(p) * 0.3)
    return stack


def _autograd(
    stack: StackedModel, x: torch.Tensor, y: torch.Tensor, classification: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    out = stack.forward(x)  # [K, B, out]
    k, batch = out.shape[0], out.shape[1]
    if classification:
        yk = y.expand(k, batch) if y.ndim == 1 else y
        losses = torch.stack([torch.nn.functional.cross_entropy(out[i], yk[i]) for i in range(k)])
    else:
        losses = (out.squeeze(-1) - y).square().mean(1)
    return losses.detach(), list(torch.autograd.grad(losses.sum(), stack.params))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("per_member", [False, True], ids=["shared-batch", "own-batches"])
@pytest.mark.parametrize("classification", [True, False], ids=["classes", "regression"])
def test_losses_and_gradients_equal_autograd_s(
    model: ModelConfig, per_member: bool, classification: bool
) -> None:
    torch.manual_seed(0)
    k, batch = 3, 11
    stack = _stack(model, 5 if classification else 1, k)
    x = torch.randn(k, batch, 6) if per_member else torch.randn(batch, 6)
    shape = (k, batch) if per_member else (batch,)
    y = torch.randint(0, 5, shape) if classification else torch.randn(shape)
    expected_losses, expected_grads = _autograd(stack, x, y, classification)
    losses, correct, grads = stack.losses_and_grads(x, y, classification)
    torch.testing.assert_close(losses, expected_losses, rtol=1e-5, atol=1e-6)
    assert [g.shape for g in grads] == [p.shape for p in stack.params]
    for name, got, want in zip(stack.names, grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6, msg=name)
    if classification:
        out = stack.forward(x).detach()
        right = (out.argmax(-1) == y).sum(-1).float()
        assert torch.equal(correct, right)  # random logits: no ties, so argmax's count
        assert 0 < right.sum() < k * batch  # the count is not trivially all or none
    else:
        assert torch.equal(correct, torch.zeros(k))


def test_a_member_s_gradient_depends_on_its_own_numbers_only() -> None:
    torch.manual_seed(1)
    stack = _stack(MLPModel(hidden=(8,)), 4)
    x, y = torch.randn(7, 6), torch.randint(0, 4, (7,))
    _, _, before = stack.losses_and_grads(x, y, True)
    with torch.no_grad():
        for p in stack.params:
            p[1] = float("nan")  # member 1 diverged
    losses, _, after = stack.losses_and_grads(x, y, True)
    assert torch.isnan(losses[1]) and torch.isfinite(losses[[0, 2]]).all()
    for b, a in zip(before, after, strict=True):
        assert torch.equal(a[[0, 2]], b[[0, 2]])


def test_the_output_layer_keeps_nn_linear_s_layout_and_a_member_s_state() -> None:
    from trainers import build_model

    stack = StackedModel(MLPModel(hidden=(8,)), [3, 4], 6, 5, False, CPU)
    assert [tuple(p.shape) for p in stack.params] == [(2, 6, 8), (2, 8), (2, 5, 8), (2, 5)]
    x = torch.randn(9, 6)
    out = stack.forward(x)
    for k, seed in enumerate((3, 4)):
        model = build_model(MLPModel(hidden=(8,)), 6, 5, False, seed)
        state = stack.member_state(k)
        for name, value in model.state_dict().items():
            assert torch.equal(state[name], value), name
        torch.testing.assert_close(out[k], model(x), rtol=1e-5, atol=1e-6)


def test_a_cnn_stack_is_left_to_autograd() -> None:
    stack = StackedModel(CNNModel(channels=2), [1], 40, 10, True, CPU)
    assert not stack.handwritten
    with pytest.raises(AssertionError):
        stack.losses_and_grads(torch.randn(3, 40), torch.zeros(3, dtype=torch.long), True)
