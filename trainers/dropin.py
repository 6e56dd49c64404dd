"""The regularization schemes as drop-in objects for any PyTorch training loop, outside studies.

Each class wraps one scheme of :mod:`trainers.schemes` (built from the same keyword arguments as
its dataclass, which validates them: a bad value raises :class:`~trainers.errors.ConfigError`)
and the regularizer :func:`~trainers.regularizers.make_regularizer` makes of it, so a step
computes exactly what the built-in trainer's step (:meth:`trainers.loop.Trainer.step`) does.
The penalty covers the model's trainable weight matrices and kernels (ndim ≥ 2), biases too
with ``biases=True``; a model with none of those is refused with ValueError rather than
trained with a penalty that does nothing. Parameters frozen (``requires_grad`` False) when the
object is built are left alone.

The call order, once per update::

    opt.zero_grad()
    loss.backward()
    reg.step(loss)      # λ_t from the mean data loss; coupled: adds ∇R to the gradients
    opt.step()
    reg.after_step(lr)  # decoupled: w ← w − lr·∇R; coupled: does nothing

``step`` must come after ``backward`` (coupled schemes add to the gradients, AWD and SWD read
them) and before the optimizer's step; ``after_step`` after it, with the learning rate that
step used. Neither reads a tensor back to the host: ``reg.lam`` does (the last λ_t as a
float), so read it when logging, not every step.

``alpha="lr"`` (dynamic L2 and L1) makes α the learning rate, as the scheme's source does:
λ_t = clamp(0.5·η_t / L̂_t, floor, ceiling). It needs the optimizer
(``DynamicL2(model, alpha="lr", optimizer=opt)``): each ``step`` reads the rate of the
optimizer's parameter groups that hold the penalized parameters (host floats, so an LR
scheduler's change is seen at the next step, with no device sync). Those groups must share
one rate, a Python number: otherwise building the object, or the first step that finds them
otherwise, raises :class:`~trainers.errors.ConfigError`. A 15-line example on random data::

    import torch
    from torch import nn
    from torch.nn import functional as F
    from trainers import DynamicL2

    torch.manual_seed(0)
    x, y = torch.randn(256, 20), torch.randint(0, 3, (256,))
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    reg = DynamicL2(model, alpha="lr", optimizer=opt, floor=1e-4)  # α: the rate, 1e-2
    seen = []  # (loss, λ) per step
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(); loss.backward()
        reg.step(loss); opt.step(); reg.after_step(1e-2)
        seen.append((loss.item(), reg.lam))
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ._fields import describe
from .errors import ConfigError
from .regularizers import Regularizer, make_regularizer
from .schemes import (
    AWDScheme,
    DynamicL1Scheme,
    DynamicScheme,
    FixedScheme,
    ScheduleScheme,
    Scheme,
    SWDScheme,
)


class DropIn:
    """One scheme's penalty on one model's parameters; :meth:`step` and :meth:`after_step`
    bracket the optimizer's step (the module docstring gives the order).

    ``total_steps`` (the updates the run will make) is needed by a schedule only. The
    penalized parameters are ``params``; λ_t lives on their device. A dynamic scheme whose
    alpha is "lr" needs the learning rate: ``optimizer`` (its rate read at every step) or
    ``lr`` (a constant rate); either is ignored by other schemes.
    """

    def __init__(
        self,
        model: nn.Module,
        scheme: Scheme,
        total_steps: int | None = None,
        *,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
    ) -> None:
        self.scheme = scheme
        self.params = [p for p in model.parameters() if p.requires_grad and scheme.covers(p.ndim)]
        if not self.params:
            covered = "weights, kernels and biases" if scheme.biases else "weights and kernels"
            raise ValueError(
                f"the model has no trainable parameters that scheme {scheme.name!r} penalizes "
                f"({covered}): nothing to regularize"
            )
        devices = {p.device for p in self.params}
        if len(devices) > 1:
            raise ValueError(f"the penalized parameters must share one device, got {devices}")
        self._decoupled = scheme.apply == "decoupled"
        # alpha "lr": the optimizer's groups that set the penalized parameters' rate, read per step
        self._groups: list[dict[str, object]] = []
        if isinstance(scheme, DynamicScheme) and scheme.follows_lr:
            if (optimizer is None) == (lr is None):
                given = "both" if lr is not None else "neither"
                raise ConfigError(
                    "alpha",
                    "'lr' takes alpha from the learning rate, so it needs one of optimizer=opt "
                    f"(its rate read at every step) or lr=RATE (a constant rate); got {given}",
                )
            if optimizer is not None:
                self._groups = _groups_of(optimizer, self.params)
                lr = _rate(self._groups)
        self._lr = lr  # the rate α follows, as last read
        self._reg: Regularizer = make_regularizer(scheme, devices.pop(), total_steps, lr)
        self._last: Tensor | None = None  # λ_t of the last step
        self._pending = False  # decoupled: a λ_t that after_step has not applied yet

    def step(self, loss: Tensor) -> Tensor:
        """λ_t from this step's mean data loss (0-d, the penalty left out); for a coupled
        scheme, also add ∇R (λ·w, or λ·sign(w) for L1) to the gradients, in place. Call it
        after ``loss.backward()`` and before ``optimizer.step()``. Returns λ_t as a 0-d device
        tensor (no sync; do not modify it)."""
        if loss.ndim != 0:
            raise ValueError(f"step needs the mean data loss, a 0-d tensor; got {loss.shape}")
        if self._pending:
            raise RuntimeError("after_step(lr) was not called after the last step(loss)")
        if self._groups:  # alpha "lr": the rate this update will use (host floats: no sync)
            rate = _rate(self._groups)
            if rate != self._lr:
                self._reg.set_lr(rate)
                self._lr = rate
        with_grad = [p for p in self.params if p.grad is not None]
        grads = [p.grad for p in with_grad if p.grad is not None]
        with torch.no_grad():  # λ_t carries no graph (AWD's would grow one across steps)
            lam = self._reg.lam(loss.detach(), grads, self.params)
        self._reg.before_step(lam, grads, with_grad)
        self._last = lam
        self._pending = self._decoupled
        return lam

    def after_step(self, lr: float) -> None:
        """For a decoupled scheme, shrink the weights by the last λ_t: w ← w − lr·λ·w (L1:
        w − lr·λ·sign(w)). Call it after ``optimizer.step()`` with the learning rate that step
        used. Does nothing for a coupled scheme."""
        if not self._decoupled:
            return
        if not self._pending or self._last is None:
            raise RuntimeError("after_step(lr) needs a step(loss) before it, once per update")
        self._reg.after_step(self._last, lr, self.params)
        self._pending = False

    @property
    def lam(self) -> float:
        """The last step's λ_t (0.0 before the first). Reading it waits for the device."""
        return 0.0 if self._last is None else float(self._last)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.scheme!r}, {len(self.params)} parameters)"


def from_scheme(
    model: nn.Module,
    scheme: Scheme,
    total_steps: int | None = None,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float | None = None,
) -> DropIn:
    """The drop-in for any scheme config (``none`` included: λ_t = 0); ``total_steps`` is
    needed by a schedule only, ``optimizer`` or ``lr`` by a dynamic alpha "lr" only."""
    return DropIn(model, scheme, total_steps, optimizer=optimizer, lr=lr)


def _groups_of(optimizer: object, params: list[nn.Parameter]) -> list[dict[str, object]]:
    """The optimizer's parameter groups that hold any of ``params`` (kept by reference: a
    scheduler writes each group's ``"lr"`` in place)."""
    groups = getattr(optimizer, "param_groups", None)
    if not isinstance(groups, list):
        raise ConfigError(
            "alpha",
            f"'lr' follows the optimizer's learning rate, but {describe(optimizer)} is not a "
            "torch optimizer (it has no param_groups)",
        )
    held = {id(p) for p in params}
    mine = [g for g in groups if any(id(p) in held for p in g.get("params", ()))]
    if not mine:
        raise ConfigError(
            "alpha",
            "'lr' follows the optimizer's learning rate, but the optimizer holds none of the "
            "penalized parameters",
        )
    return mine


def _rate(groups: list[dict[str, object]]) -> float:
    """The one learning rate of ``groups``: host numbers, so no device sync."""
    rates: list[float] = []
    for group in groups:
        rate = group.get("lr")
        if isinstance(rate, bool) or not isinstance(rate, int | float):
            raise ConfigError(
                "alpha",
                "'lr' needs the optimizer's learning rate as a Python number, got "
                f"{type(rate).__name__}",
            )
        rates.append(float(rate))
    if len(set(rates)) > 1:
        raise ConfigError(
            "alpha",
            "'lr' needs one learning rate for the penalized parameters, but their optimizer "
            f"groups have {sorted(set(rates))}",
        )
    return rates[0]


# The named classes: each keyword argument is its scheme's field, defaulting to the field's
# default (a dataclass field's default is its class attribute).


class DynamicL2(DropIn):
    """Dynamic L2, the scheme under study (:class:`~trainers.schemes.DynamicScheme`):
    λ_t = clamp(0.5·alpha / L̂_t, floor, ceiling), L̂_t the minibatch loss or its EMA.
    ``alpha="lr"`` takes α from ``optimizer``'s current learning rate at every step (the
    module docstring says how); a numeric alpha never reads ``optimizer``."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        alpha: float | Literal["lr"] = DynamicScheme.alpha,
        floor: float = DynamicScheme.floor,
        ceiling: float | None = DynamicScheme.ceiling,
        loss_ema: float = DynamicScheme.loss_ema,
        apply: str = DynamicScheme.apply,
        biases: bool = DynamicScheme.biases,
    ) -> None:
        scheme = DynamicScheme(
            alpha=alpha,
            floor=floor,
            ceiling=ceiling,
            loss_ema=loss_ema,
            apply=apply,
            biases=biases,
        )
        super().__init__(model, scheme, optimizer=optimizer)


class DynamicL1(DropIn):
    """Dynamic L1 (:class:`~trainers.schemes.DynamicL1Scheme`): λ_t as :class:`DynamicL2`,
    R(w) = λ_t·‖w‖₁."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        alpha: float | Literal["lr"] = DynamicL1Scheme.alpha,
        floor: float = DynamicL1Scheme.floor,
        ceiling: float | None = DynamicL1Scheme.ceiling,
        loss_ema: float = DynamicL1Scheme.loss_ema,
        apply: str = DynamicL1Scheme.apply,
        biases: bool = DynamicL1Scheme.biases,
    ) -> None:
        scheme = DynamicL1Scheme(
            alpha=alpha,
            floor=floor,
            ceiling=ceiling,
            loss_ema=loss_ema,
            apply=apply,
            biases=biases,
        )
        super().__init__(model, scheme, optimizer=optimizer)


class FixedL2(DropIn):
    """Fixed L2 (:class:`~trainers.schemes.FixedScheme`): λ_t = lam. Coupled, it is SGD's
    ``weight_decay``; decoupled, AdamW's (with lam = AdamW's weight_decay)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        lam: float = FixedScheme.lam,
        apply: str = FixedScheme.apply,
        biases: bool = FixedScheme.biases,
    ) -> None:
        super().__init__(model, FixedScheme(lam=lam, apply=apply, biases=biases))


class AWD(DropIn):
    """Adaptive Weight Decay (:class:`~trainers.schemes.AWDScheme`): λ̄_t, an EMA of
    lam_awd·‖∇_w L_t‖ / ‖w‖ over the penalized parameters."""

    def __init__(
        self,
        model: nn.Module,
        *,
        lam_awd: float = AWDScheme.lam_awd,
        apply: str = AWDScheme.apply,
        biases: bool = AWDScheme.biases,
    ) -> None:
        super().__init__(model, AWDScheme(lam_awd=lam_awd, apply=apply, biases=biases))


class SWD(DropIn):
    """Scheduled weight decay (:class:`~trainers.schemes.SWDScheme`), decoupled only:
    λ_t = lam / √mean(v̂_t), with v̂_t the bias-corrected second moment of the gradients.

    It keeps that second moment itself, from the gradients ``step`` sees (β₂ = 0.999, torch's
    Adam default), so it runs beside any optimizer; it matches the paper (AdamS) with Adam of
    that β₂, the only optimizer the built-in trainer lets it serve.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        lam: float = SWDScheme.lam,
        apply: str = SWDScheme.apply,
        biases: bool = SWDScheme.biases,
    ) -> None:
        super().__init__(model, SWDScheme(lam=lam, apply=apply, biases=biases))


class ScheduledL2(DropIn):
    """The time-only control (:class:`~trainers.schemes.ScheduleScheme`): λ_t goes from
    lam_start to lam_end over ``total_steps`` updates, linearly or on DINO's cosine."""

    def __init__(
        self,
        model: nn.Module,
        total_steps: int,
        *,
        lam_start: float = ScheduleScheme.lam_start,
        lam_end: float = ScheduleScheme.lam_end,
        shape: str = ScheduleScheme.shape,
        apply: str = ScheduleScheme.apply,
        biases: bool = ScheduleScheme.biases,
    ) -> None:
        scheme = ScheduleScheme(
            lam_start=lam_start, lam_end=lam_end, shape=shape, apply=apply, biases=biases
        )
        super().__init__(model, scheme, total_steps)
