"""The schemes of :mod:`trainers.schemes` on the device: λ_t each step, and its penalty applied.

One class serves both trainers. For one run (:mod:`trainers.loop`) every hyperparameter, and
λ_t, is a 0-d tensor and the parameters are the model's own; for K stacked members
(:mod:`trainers.fused`) they are ``[K]`` vectors, each member's own, and every parameter is
``[K, ...]``. The λ rules are elementwise, so each is written once, below, for both, and so is
the penalty's application; the layouts part only where a norm runs over several parameters
(AWD's, and the weight norm the trainers report): one number for a run, one per member for a
stack. The loop's run is not a stack of one: its model stays an ordinary ``nn.Module``, the
oracle that the stacked engine is tested against.

Callers pass the penalized parameters (and their gradients) to each call, since a stack
replaces its tensors when members leave. Nothing here reads a tensor back to the host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .schemes import AWDScheme, DynamicScheme, FixedScheme, ScheduleScheme, Scheme, SWDScheme
from .stacked_optim import ADAM_BETAS, per_member

# ---------------------------------------------------------------------------------------------
# The λ rules, elementwise: each argument is 0-d (one run) or [K] (a stack), all alike.


def smoothed_loss(ema: Tensor | None, loss: Tensor, ema_weight: Tensor) -> tuple[Tensor, Tensor]:
    """The loss EMA after this step, and L̂_t: ``ema ← lerp(ema, L_t, 1 − loss_ema)`` with
    L̂_1 = L_1; where loss_ema = 0 (``ema_weight`` 1) L̂_t is L_t itself, as in a run that keeps
    no EMA (a lerp by 1 gives it too, but NaN for an infinite loss: ∞·0)."""
    ema = loss.clone() if ema is None else torch.lerp(ema, loss, ema_weight)
    return ema, torch.where(ema_weight < 1.0, ema, loss)


def dynamic_lam(loss: Tensor, half_alpha: Tensor, floor: Tensor, ceiling: Tensor) -> Tensor:
    """Dynamic L2 and L1: λ_t = clamp(0.5·α / L̂_t, floor, ceiling); ``ceiling`` is inf for
    none."""
    return torch.minimum(torch.maximum(torch.div(half_alpha, loss), floor), ceiling)


def awd_lam(bar: Tensor, grad_norm: Tensor, weight_norm: Tensor, lam_awd: Tensor) -> Tensor:
    """AWD: λ̄_t = 0.1·λ̄_{t−1} + 0.9·lam_awd·‖∇_w L_t‖ / ‖w‖ (λ̄_0 = 0)."""
    lam_t = grad_norm.div(weight_norm).mul_(lam_awd)
    return bar.mul(0.1).add_(lam_t, alpha=0.9)


def swd_lam(lam: Tensor, mean_v: Tensor, steps: int, beta2: float) -> Tensor:
    """SWD: λ_t = lam / √mean(v̂_t), v̂_t = v_t / (1 − β₂ᵗ), the root held at least 1e-8."""
    mean_v_hat = mean_v / (1.0 - beta2**steps)
    return lam / mean_v_hat.sqrt().clamp_min(1e-8)


def scheduled_lam(start: Tensor, end: Tensor, index: int, total: int, cosine: bool) -> Tensor:
    """The time-only control at step index i of T: λ = end + (start − end)·c, c = 1 − i/T
    (linear) or ½·(1 + cos(π·i/T)) (cosine, DINO's)."""
    u = index / total
    c = 0.5 * (1.0 + math.cos(math.pi * u)) if cosine else 1.0 - u
    return end + (start - end) * c


# ---------------------------------------------------------------------------------------------
# Norms over several parameters: where the two layouts part.


def total_norm(tensors: Sequence[Tensor]) -> Tensor:
    """‖·‖₂ over all of one run's ``tensors`` together: 0-d."""
    norm: Tensor = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(list(tensors))))
    return norm


def member_norm(tensors: Sequence[Tensor]) -> Tensor:
    """Each member's ‖·‖₂ over all of the stacked ``tensors`` together: ``[K]``."""
    per_tensor = [torch.linalg.vector_norm(t.detach().flatten(1), dim=1) for t in tensors]
    norm: Tensor = torch.linalg.vector_norm(torch.stack(per_tensor), dim=0)
    return norm


# ---------------------------------------------------------------------------------------------
# The regularizers.


class Regularizer:
    """λ_t = 0 (scheme "none"), and the penalty gradient applied at the strength each scheme's
    subclass computes.

    Built from one scheme per member, all of one kind with one ``apply`` and one ``biases``:
    one scheme for a run (``stacked`` False), K for a stack. ``per_member`` views a stack's
    ``[K]`` λ against each ``[K, ...]`` parameter; a run's 0-d λ passes through it as a
    broadcastable ``[1, ...]``.
    """

    def __init__(self, schemes: Sequence[Scheme], device: torch.device, stacked: bool) -> None:
        assert stacked or len(schemes) == 1
        first = schemes[0]
        self.stacked = stacked
        self.steps = 0  # λ_t computed so far: every member steps at once
        self.active = first.penalty != "none"
        self.decoupled = first.apply == "decoupled"
        self.l1 = first.penalty == "l1"
        self._norm = member_norm if stacked else total_norm
        self._device = device
        self._zero = self._values([0.0] * len(schemes))

    def _values(self, numbers: Sequence[float]) -> Tensor:
        """One number per member on the device: ``[K]`` for a stack, 0-d for a run."""
        tensor = torch.tensor(numbers, device=self._device)
        return tensor if self.stacked else tensor.reshape(())

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        """λ_t from the detached data loss of this step (AWD: and the penalized gradients and
        parameters), shaped like ``loss``."""
        return self._zero

    def set_lr(self, lr: float) -> None:
        """A run's learning rate for its next steps; only a dynamic scheme whose alpha is "lr"
        reads it."""

    @torch.no_grad()
    def before_step(self, lam: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> None:
        """Coupled: add ∇R (λ·w for L2, λ·sign(w) for L1) to the data gradients, in place."""
        if not self.active or self.decoupled:
            return
        for g, p in zip(grads, params, strict=True):
            g.addcmul_(self._direction(p), per_member(lam, p))  # g + λ·∇R₁, one pass for L2

    @torch.no_grad()
    def after_step(self, lam: Tensor, lr: Tensor | float, params: Sequence[Tensor]) -> None:
        """Decoupled: w ← w − lr·∇R after the optimizer step (``lr`` a float for a run, each
        member's ``[K]`` for a stack)."""
        if not (self.active and self.decoupled):
            return
        scale = lr * lam
        for p in params:
            if self.l1:
                p.addcmul_(self._direction(p), per_member(scale, p), value=-1.0)
            else:
                p.mul_(1.0 - per_member(scale, p))  # w − lr·λ·w as one product

    def keep(self, index: Tensor) -> None:
        """Keep only the stack's members at ``index``: every tensor held here is per member."""
        assert self.stacked
        for name, value in list(vars(self).items()):
            if isinstance(value, Tensor):
                setattr(self, name, value[index])

    def _direction(self, param: Tensor) -> Tensor:
        """∇R at strength 1: w for L2, sign(w) for L1."""
        return torch.sign(param) if self.l1 else param


class _Fixed(Regularizer):
    def __init__(
        self, schemes: Sequence[FixedScheme], device: torch.device, stacked: bool
    ) -> None:
        super().__init__(schemes, device, stacked)
        self._lam = self._values([s.lam for s in schemes])

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        return self._lam


class _Dynamic(Regularizer):
    """λ_t = clamp(0.5·α / L̂_t, floor, ceiling). A member whose alpha is "lr" takes α from
    ``lr``, its learning rate (one per member), when built; :meth:`set_lr` changes it for the
    steps after (a run whose rate a schedule moves: the drop-in's)."""

    def __init__(
        self,
        schemes: Sequence[DynamicScheme],
        device: torch.device,
        stacked: bool,
        lr: Sequence[float] | None,
    ) -> None:
        super().__init__(schemes, device, stacked)
        follows = [s.follows_lr for s in schemes]
        if any(follows) and (lr is None or len(lr) != len(schemes)):
            raise ValueError(
                f"alpha 'lr' stands for the learning rate: pass lr= (one rate per member, "
                f"{len(schemes)}), got {lr!r}"
            )
        rates = lr if lr is not None else [math.nan] * len(schemes)  # unread: numeric alphas
        half = [0.5 * s.alpha_at(r) for s, r in zip(schemes, rates, strict=True)]
        self._half_alpha = self._values(half)
        self._follows_lr = not stacked and follows[0]  # a run of alpha "lr": set_lr moves it
        self._floor = self._values([s.floor for s in schemes])
        inf = float("inf")
        self._ceiling = self._values([inf if s.ceiling is None else s.ceiling for s in schemes])
        self._ema_weight = self._values([1.0 - s.loss_ema for s in schemes])
        self._smooths = any(s.loss_ema > 0 for s in schemes)  # else no EMA is kept at all
        self._ema: Tensor | None = None

    def set_lr(self, lr: float) -> None:
        """A run's learning rate for its next steps, when its alpha is "lr": a host float
        written into the device's α (a fill, no sync)."""
        assert not self.stacked
        if self._follows_lr:
            self._half_alpha.fill_(0.5 * lr)

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        if self._smooths:
            self._ema, loss = smoothed_loss(self._ema, loss, self._ema_weight)
        return dynamic_lam(loss, self._half_alpha, self._floor, self._ceiling)


class _AWD(Regularizer):
    def __init__(self, schemes: Sequence[AWDScheme], device: torch.device, stacked: bool) -> None:
        super().__init__(schemes, device, stacked)
        self._lam_awd = self._values([s.lam_awd for s in schemes])
        self._bar = self._values([0.0] * len(schemes))

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        self._bar = awd_lam(self._bar, self._norm(grads), self._norm(params), self._lam_awd)
        return self._bar


class _SWD(Regularizer):
    """SWD's λ_t from the mean of Adam's second moment, kept here from the same gradients Adam
    sees (the penalty is decoupled, so they are the data gradients):
    mean(v_t) = β₂·mean(v_{t−1}) + (1 − β₂)·mean(g_t²), which is the mean of Adam's v_t."""

    def __init__(self, schemes: Sequence[SWDScheme], device: torch.device, stacked: bool) -> None:
        super().__init__(schemes, device, stacked)
        self._lam = self._values([s.lam for s in schemes])
        self._mean_v = self._values([0.0] * len(schemes))
        self._beta2 = ADAM_BETAS[1]

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        self.steps += 1
        if not grads:  # nothing penalized: nothing to decay
            return self._zero
        members = grads[0].shape[0] if self.stacked else 1
        count = sum(g.numel() for g in grads) // members  # elements per run or member
        mean_g2 = self._norm(grads).square_().div_(count)
        self._mean_v = self._mean_v.mul(self._beta2).add_(mean_g2, alpha=1.0 - self._beta2)
        return swd_lam(self._lam, self._mean_v, self.steps, self._beta2)


class _Schedule(Regularizer):
    def __init__(
        self,
        schemes: Sequence[ScheduleScheme],
        device: torch.device,
        stacked: bool,
        total_steps: int,
    ) -> None:
        super().__init__(schemes, device, stacked)
        self._start = self._values([s.lam_start for s in schemes])
        self._end = self._values([s.lam_end for s in schemes])
        self._cosine = schemes[0].shape == "cosine"
        self._total = total_steps

    def lam(self, loss: Tensor, grads: Sequence[Tensor], params: Sequence[Tensor]) -> Tensor:
        index = self.steps
        self.steps += 1
        return scheduled_lam(self._start, self._end, index, self._total, self._cosine)


def make_regularizer(
    scheme: Scheme,
    device: torch.device,
    total_steps: int | None = None,
    lr: float | None = None,
) -> Regularizer:
    """One run's regularizer for ``scheme``: λ_t is a 0-d tensor. ``total_steps`` (the run's
    planned updates, epochs × steps per epoch) is what a schedule runs over, and ``lr`` (the
    run's learning rate) what a dynamic scheme's alpha "lr" stands for; the trainers always
    pass both."""
    rates = None if lr is None else [lr]
    return _build([scheme], device, stacked=False, total_steps=total_steps, lr=rates)


def make_stacked_regularizer(
    schemes: Sequence[Scheme],
    device: torch.device,
    total_steps: int | None = None,
    lr: Sequence[float] | None = None,
) -> Regularizer:
    """A stack's regularizer, one scheme per member (all of one kind): λ_t is ``[K]``;
    ``lr`` holds each member's learning rate."""
    return _build(schemes, device, stacked=True, total_steps=total_steps, lr=lr)


def _build(
    schemes: Sequence[Scheme],
    device: torch.device,
    stacked: bool,
    total_steps: int | None,
    lr: Sequence[float] | None,
) -> Regularizer:
    first = schemes[0]
    if isinstance(first, ScheduleScheme):
        if total_steps is None or total_steps < 1:
            raise ValueError(f"a schedule needs the run's total steps (>= 1), got {total_steps}")
        scheduled = [s for s in schemes if isinstance(s, ScheduleScheme)]
        return _Schedule(scheduled, device, stacked, total_steps)
    if isinstance(first, SWDScheme):
        return _SWD([s for s in schemes if isinstance(s, SWDScheme)], device, stacked)
    if isinstance(first, FixedScheme):
        fixed = [s for s in schemes if isinstance(s, FixedScheme)]
        return _Fixed(fixed, device, stacked)
    if isinstance(first, DynamicScheme):  # DynamicL1Scheme too: same λ_t, L1 penalty
        dynamic = [s for s in schemes if isinstance(s, DynamicScheme)]
        return _Dynamic(dynamic, device, stacked, lr)
    if isinstance(first, AWDScheme):
        return _AWD([s for s in schemes if isinstance(s, AWDScheme)], device, stacked)
    return Regularizer(schemes, device, stacked)
