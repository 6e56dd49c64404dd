"""SGD (with momentum) and Adam for stacked parameters, each member with its own learning rate
(and momentum): what ``torch.optim`` cannot express, since its hyperparameters are per group,
not per slice of a tensor.

The update rules are torch's own (``torch.optim.SGD`` with dampening 0, ``torch.optim.Adam``
with its default betas and eps, no amsgrad), applied to ``[K, ...]`` tensors with per-member
values broadcast from ``[K]`` vectors. Nothing here reads a tensor back to the host: the step
count is a Python int shared by all members, which always step together.
"""

from __future__ import annotations

import functools
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
    ``v ← β₂·v + (1−β₂)·g²``, ``w ← w − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε)``.

    Where the device has torch's fused Adam kernel (``torch._fused_adam_``: CPU and CUDA in the
    torch versions dynl2 supports; what ``torch.optim.Adam(fused=True)`` runs), one pass of it
    updates m, v and an update buffer u ← −m̂/(√v̂ + ε) (the kernel with lr = 1 on a zeroed u),
    and ``w ← w + lr·u`` applies each member's own learning rate: three passes over the
    parameters where the elementwise ops below (the fallback) make about nine, each reading and
    writing whole ``[K, ...]`` tensors (``bench/adam_step.py`` measures both).
    """

    def __init__(
        self, lr: Tensor, betas: tuple[float, float] = ADAM_BETAS, eps: float = ADAM_EPS
    ) -> None:
        super().__init__(lr)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.steps = 0
        self.exp_avg: list[Tensor] = []
        self.exp_avg_sq: list[Tensor] = []
        self._updates: list[Tensor] = []  # u, the fused kernel's output (fused path only)
        self._step_counts: list[Tensor] = []  # its per-tensor step counts, on the device
        self.fused = fused_adam_available(lr.device)

    @torch.no_grad()
    def step(self, params: Sequence[Tensor], grads: Sequence[Tensor]) -> None:
        if not self.exp_avg:
            self.exp_avg = [torch.zeros_like(p) for p in params]
            self.exp_avg_sq = [torch.zeros_like(p) for p in params]
            if self.fused:
                self._updates = [torch.zeros_like(p) for p in params]
                self._step_counts = [
                    torch.zeros((), dtype=torch.float32, device=p.device) for p in params
                ]
        self.steps += 1
        grads = list(grads)
        if self.fused:
            self._fused_step(params, grads)
            return
        bias1 = 1 - self.beta1**self.steps
        bias2_sqrt = math.sqrt(1 - self.beta2**self.steps)
        torch._foreach_lerp_(self.exp_avg, grads, 1 - self.beta1)
        torch._foreach_mul_(self.exp_avg_sq, self.beta2)
        torch._foreach_addcmul_(self.exp_avg_sq, grads, grads, 1 - self.beta2)
        denom = torch._foreach_sqrt(self.exp_avg_sq)
        torch._foreach_div_(denom, bias2_sqrt)
        torch._foreach_add_(denom, self.eps)
        step_size = self.lr / bias1  # [K]
        for p, m, d in zip(params, self.exp_avg, denom, strict=True):
            p.sub_(m.div(d).mul_(per_member(step_size, p)))

    def _fused_step(self, params: Sequence[Tensor], grads: list[Tensor]) -> None:
        torch._foreach_zero_(self._updates)
        torch._foreach_add_(self._step_counts, 1.0)  # the kernel reads t, as Adam's does
        torch._fused_adam_(
            self._updates, grads, self.exp_avg, self.exp_avg_sq, [], self._step_counts,
            lr=1.0, beta1=self.beta1, beta2=self.beta2, weight_decay=0.0, eps=self.eps,
            amsgrad=False, maximize=False,
        )  # fmt: skip
        for p, u in zip(params, self._updates, strict=True):
            p.addcmul_(u, per_member(self.lr, p))

    def keep(self, index: Tensor) -> None:
        super().keep(index)
        self.exp_avg = [m[index] for m in self.exp_avg]
        self.exp_avg_sq = [v[index] for v in self.exp_avg_sq]
        self._updates = [u[index] for u in self._updates]


@functools.cache
def fused_adam_available(device: torch.device) -> bool:
    """Whether torch's fused Adam kernel runs on ``device`` (tried once on one number)."""
    one = [torch.zeros(1, device=device)]
    try:
        torch._fused_adam_(
            [torch.zeros(1, device=device)], one, [torch.zeros(1, device=device)],
            [torch.zeros(1, device=device)], [], [torch.ones((), device=device)],
            lr=1.0, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8, amsgrad=False,
            maximize=False,
        )  # fmt: skip
    except (RuntimeError, NotImplementedError, AttributeError, TypeError):
        return False
    return True
