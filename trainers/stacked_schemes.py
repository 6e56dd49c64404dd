"""The regularization schemes of :mod:`trainers.schemes` for stacked members.

Every member has its own hyperparameters (λ; α, floor, ceiling and loss EMA; AWD's λ) held as
``[K]`` tensors on the device, and its own λ_t computed from its own data loss, so λ_t is a
``[K]`` vector each step. The formulas are those of :mod:`trainers.schemes`, member by member;
all members of a stack share one scheme, one ``apply`` mode and one ``biases`` flag.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .schemes import AWDScheme, DynamicScheme, FixedScheme, Scheme
from .stacked_optim import per_member


class StackedRegularizer:
    """λ_t for every member, and the penalty gradient applied to the penalized stacked params.

    ``penalized`` says, per stacked parameter, whether the scheme covers it; the parameter list
    itself is passed to each call, since the stack replaces its tensors when members leave.
    """

    def __init__(
        self, schemes: Sequence[Scheme], penalized: Sequence[bool], device: torch.device
    ) -> None:
        first = schemes[0]
        self.penalty = first.penalty
        self.mask = list(penalized)
        self.active = first.penalty != "none" and any(self.mask)
        self.decoupled = first.apply == "decoupled"
        self.l1 = first.penalty == "l1"
        self._zero = torch.zeros(len(schemes), device=device)

    def select(self, items: Sequence[Tensor]) -> list[Tensor]:
        """The penalized ones of a per-parameter list (params or their gradients)."""
        return [t for t, on in zip(items, self.mask, strict=True) if on]

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        """λ_t ``[K]`` from each member's detached data loss ``[K]`` (AWD: and the gradients;
        ``grads`` and ``params`` are all the stacked ones, penalized or not)."""
        return self._zero

    @torch.no_grad()
    def before_step(self, lam: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> None:
        """Coupled: add ∇R to the data gradients of the penalized params (in place)."""
        if not self.active or self.decoupled:
            return
        for g, p in zip(self.select(grads), self.select(params), strict=True):
            base = torch.sign(p) if self.l1 else p
            g.add_(base * per_member(lam, p))

    @torch.no_grad()
    def after_step(self, lam: Tensor, lr: Tensor, params: Sequence[Tensor]) -> None:
        """Decoupled: w ← w − lr·∇R after the optimizer step."""
        if not (self.active and self.decoupled):
            return
        scale = lr * lam  # [K]
        for p in self.select(params):
            if self.l1:
                p.sub_(torch.sign(p) * per_member(scale, p))
            else:
                p.mul_(1.0 - per_member(scale, p))

    def keep(self, index: Tensor) -> None:
        """Keep only the members at ``index``."""
        self._zero = self._zero[index]


class _Fixed(StackedRegularizer):
    def __init__(
        self, schemes: Sequence[FixedScheme], penalized: Sequence[bool], device: torch.device
    ) -> None:
        super().__init__(schemes, penalized, device)
        self._lam = torch.tensor([s.lam for s in schemes], device=device)

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        return self._lam

    def keep(self, index: Tensor) -> None:
        super().keep(index)
        self._lam = self._lam[index]


class _Dynamic(StackedRegularizer):
    def __init__(
        self, schemes: Sequence[DynamicScheme], penalized: Sequence[bool], device: torch.device
    ) -> None:
        super().__init__(schemes, penalized, device)

        def vector(values: Sequence[float]) -> Tensor:
            return torch.tensor(values, device=device)

        inf = float("inf")
        self._half_alpha = vector([0.5 * s.alpha for s in schemes])
        self._floor = vector([s.floor for s in schemes])
        self._ceiling = vector([inf if s.ceiling is None else s.ceiling for s in schemes])
        self._ema_weight = vector([1.0 - s.loss_ema for s in schemes])
        self._uses_ema = self._ema_weight < 1.0  # [K] bool; members with loss_ema = 0 don't
        self._ema: Tensor | None = None

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        if self._ema is None:
            self._ema = loss.clone()
        else:
            self._ema.lerp_(loss, self._ema_weight)
        smoothed = torch.where(self._uses_ema, self._ema, loss)
        lam = torch.div(self._half_alpha, smoothed)
        return torch.minimum(torch.maximum(lam, self._floor), self._ceiling)

    def keep(self, index: Tensor) -> None:
        super().keep(index)
        self._half_alpha = self._half_alpha[index]
        self._floor = self._floor[index]
        self._ceiling = self._ceiling[index]
        self._ema_weight = self._ema_weight[index]
        self._uses_ema = self._uses_ema[index]
        if self._ema is not None:
            self._ema = self._ema[index]


class _AWD(StackedRegularizer):
    def __init__(
        self, schemes: Sequence[AWDScheme], penalized: Sequence[bool], device: torch.device
    ) -> None:
        super().__init__(schemes, penalized, device)
        self._lam_awd = torch.tensor([s.lam_awd for s in schemes], device=device)
        self._bar = torch.zeros(len(schemes), device=device)

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        grad_norm = member_norm(self.select(grads))
        weight_norm = member_norm(self.select(params))
        lam_t = grad_norm.div_(weight_norm).mul_(self._lam_awd)
        self._bar = self._bar.mul(0.1).add_(lam_t, alpha=0.9)
        return self._bar

    def keep(self, index: Tensor) -> None:
        super().keep(index)
        self._lam_awd = self._lam_awd[index]
        self._bar = self._bar[index]


def member_norm(tensors: Sequence[Tensor]) -> Tensor:
    """Each member's ‖·‖₂ over all of ``tensors`` together: ``[K]``."""
    per_tensor = [torch.linalg.vector_norm(t.detach().flatten(1), dim=1) for t in tensors]
    norm: Tensor = torch.linalg.vector_norm(torch.stack(per_tensor), dim=0)
    return norm


def make_stacked_regularizer(
    schemes: Sequence[Scheme], penalized: Sequence[bool], device: torch.device
) -> StackedRegularizer:
    """The stacked regularizer of ``schemes`` (one per member, all of one kind)."""
    first = schemes[0]
    if isinstance(first, FixedScheme):
        return _Fixed([s for s in schemes if isinstance(s, FixedScheme)], penalized, device)
    if isinstance(first, DynamicScheme):  # DynamicL1Scheme too: same λ_t, L1 penalty
        return _Dynamic([s for s in schemes if isinstance(s, DynamicScheme)], penalized, device)
    if isinstance(first, AWDScheme):
        return _AWD([s for s in schemes if isinstance(s, AWDScheme)], penalized, device)
    return StackedRegularizer(schemes, penalized, device)
