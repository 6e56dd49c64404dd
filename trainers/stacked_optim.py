"""SGD (with momentum) and Adam for stacked parameters, each member with its own learning rate
(and momentum): what ``torch.optim`` cannot express, since its hyperparameters are per group,
not per slice of a tensor.

The update rules are torch's own (``torch.optim.SGD`` with dampening 0, ``torch.optim.Adam``
with its default betas and eps, no amsgrad), applied to ``[K, ...]`` tensors with per-member
values broadcast from ``[K]`` vectors. Nothing here reads a tensor back to the host: the step
count is a Python int shared by all members, which always step together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

# Adam's constants, torch's defaults, for both trainers (and for SWD's second moment).
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def per_member(values: Tensor, like: Tensor) -> Tensor:
    """``values`` (shape ``[K]``) viewed to broadcast against a ``[K, ...]`` tensor."""
    return values.view(-1, *([1] * (like.ndim - 1)))


class StackedOptimizer:
    """The interface: :meth:`step` updates ``params`` in place from ``grads``."""

    def __init__(self, lr: Tensor) -> None:
        self.lr = lr  # [K]

    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        raise NotImplementedError

    def keep(self, index: Tensor) -> None:
        """Keep only the members at ``index`` (the model keeps the same ones)."""
        self.lr = self.lr[index]


class StackedSGD(StackedOptimizer):
    """``buf = momentum·buf + g`` (``buf = g`` at the first step), ``g ← g + momentum·buf`` for
    Nesterov else ``g ← buf``, ``w ← w − lr·g``. Momentum 0 gives plain SGD."""

    def __init__(self, lr: Tensor, momentum: Tensor, nesterov: bool) -> None:
        super().__init__(lr)
        self.momentum = momentum  # [K]
        self.nesterov = nesterov
        self.buffers: list[Tensor] | None = None

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        if self.buffers is None:
            self.buffers = [g.clone() for g in grads]
        else:
            for buf, g in zip(self.buffers, grads, strict=True):
                buf.mul_(per_member(self.momentum, buf)).add_(g)
        for p, g, buf in zip(params, grads, self.buffers, strict=True):
            direction = g.add(buf * per_member(self.momentum, g)) if self.nesterov else buf
            p.sub_(direction * per_member(self.lr, p))

    def keep(self, index: Tensor) -> None:
        super().keep(index)
        self.momentum = self.momentum[index]
        if self.buffers is not None:
            self.buffers = [b[index] for b in self.buffers]


class StackedAdam(StackedOptimizer):
    """Adam (Kingma & Ba), torch's formulation: ``m ← lerp(m, g, 1−β₁)``,
    ``v ← β₂·v + (1−β₂)·g²``, ``w ← w − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)``."""

    def __init__(
        self, lr: Tensor, betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS
    ) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0
        self.exp_avg: list[Tensor] = []
        self.exp_avg_sq: list[Tensor] = []

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        if not self.exp_avg:
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]
        self.steps += 1
        bias1 = 1 - self.beta1**self.steps
        bias2_sqrt = math.sqrt(1 - self.beta2**self.steps)
        grads = list(grads)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - self.beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, self.eps)
        step_size = self.lr / bias1  # [K]
        for p, m, d in zip(params, self.exp_avg, denom, strict=True):
            p.sub_(m.div(d).mul_(per_member(step_size, p)))

    def keep(self, index: Tensor) -> None:
        super().keep(index)
        self.exp_avg = [m[index] for m in self.exp_avg]
        self.exp_avg_sq = [v[index] for v in self.exp_avg_sq]
