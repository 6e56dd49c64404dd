"""Regularization schemes: what a user configures, each with its formula.

A scheme config is a frozen dataclass; :mod:`trainers.regularizers` turns it into the device-side
object the trainers call once per step. Nothing here imports torch: the experiment config, and
verbs that do not train, build on these classes. Every scheme computes a strength λ_t (on the
training device, detached from the graph) and a penalty gradient:

* L2 penalty R(w) = ½·λ·‖w‖², so ∇R = λ·w;
* L1 penalty R(w) = λ·‖w‖₁, so ∇R = λ·sign(w).

``apply = "coupled"`` adds ∇R to the data gradient before the optimizer step (Adam then rescales
it); ``apply = "decoupled"`` shrinks the weights after the step, w ← w − lr·∇R (AdamW style).
The penalty covers weight matrices and kernels (ndim ≥ 2); biases only when ``biases = true``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from ._fields import describe, from_tagged, to_mapping
from .errors import ConfigError

APPLY_MODES = ("coupled", "decoupled")
ALPHA_LR: Final = "lr"  # a dynamic scheme's alpha that stands for the run's learning rate
ALPHA_RULE = 'a number > 0 or "lr" (the learning rate)'
SHAPES = ("linear", "cosine")  # the time-only control's schedules


@dataclass(frozen=True)
class _SchemeBase:
    name: ClassVar[str]
    penalty: ClassVar[Literal["l2", "l1", "none"]]
    # settings a group of fused members must share and a study holds fixed (never searched)
    settings: ClassVar[tuple[str, ...]] = ("apply", "biases")
    # the optimizers the scheme can serve (None: any)
    optimizers: ClassVar[tuple[str, ...] | None] = None

    apply: str = "coupled"  # "coupled": ∇R joins the gradient; "decoupled": w shrinks after step
    biases: bool = False  # also penalize 1-d parameters (biases)

    def __post_init__(self) -> None:
        if self.apply not in APPLY_MODES:
            raise ConfigError(
                "apply", f"must be one of {', '.join(APPLY_MODES)}, got {self.apply!r}"
            )

    def to_dict(self) -> dict[str, object]:
        return {"scheme": self.name, **to_mapping(self)}

    def covers(self, ndim: int) -> bool:
        """Whether the penalty covers a parameter of ``ndim`` dimensions (one run's shape, not
        a stack's): weight matrices and kernels, and biases when ``biases``."""
        return ndim >= 2 or self.biases


@dataclass(frozen=True)
class NoneScheme(_SchemeBase):
    """No regularization: λ_t = 0."""

    name: ClassVar[str] = "none"
    penalty: ClassVar[Literal["l2", "l1", "none"]] = "none"


@dataclass(frozen=True)
class FixedScheme(_SchemeBase):
    """Fixed L2: R(w) = ½·lam·‖w‖², λ_t = lam at every step."""

    name: ClassVar[str] = "fixed"
    penalty: ClassVar[Literal["l2", "l1", "none"]] = "l2"

    lam: float = 1e-4  # the constant strength λ (≥ 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative("lam", self.lam)


@dataclass(frozen=True)
class DynamicScheme(_SchemeBase):
    """Dynamic L2, the scheme under study.

    At step t, with L_t the data loss of the current minibatch at the current weights (that is,
    after the previous update, so no extra forward pass is needed):

        L̂_t = L_t                                   if loss_ema = 0
        L̂_t = loss_ema·L̂_{t−1} + (1 − loss_ema)·L_t   otherwise (L̂_1 = L_1)
        λ_t = clamp(0.5·alpha / L̂_t, floor, ceiling)

    and R(w) = ½·λ_t·‖w‖². λ_t is detached. As the loss falls λ_t grows (λ·L ≈ alpha/2), so a
    run that fits its data towards L → 0 drives λ_t up; ``ceiling`` bounds it.

    ``alpha = "lr"`` (:data:`ALPHA_LR`) uses the learning rate η_t of the step for alpha:
    λ_t = clamp(0.5·η_t / L̂_t, floor, ceiling). It is the scheme's source read literally: it
    writes λ = ½·α / L(w), and its only code takes α to be the learning rate
    (``w -= alpha*grad``, ``lambda_ = max(0.5*alpha/L, 1e-8)``), so the scheme then has no
    hyperparameter beyond the learning rate (``floor``'s default 1e-8 is the source's too).
    dynl2's own trainers use the run's ``lr`` (each fused member its own); the drop-in
    regularizer reads the optimizer's current rate every step, so an LR schedule moves it.
    """

    name: ClassVar[str] = "dynamic"
    penalty: ClassVar[Literal["l2", "l1", "none"]] = "l2"

    alpha: float | Literal["lr"] = 1e-2  # λ·L̂ ≈ alpha/2 at equilibrium (> 0); "lr": the rate
    floor: float = 1e-8  # lower clamp on λ_t (≥ 0)
    ceiling: float | None = None  # upper clamp on λ_t; None = unbounded
    loss_ema: float = 0.0  # EMA factor of the loss in [0, 1); 0 = the raw minibatch loss

    def __post_init__(self) -> None:
        super().__post_init__()
        alpha = self.alpha
        numeric = isinstance(alpha, int | float) and not isinstance(alpha, bool)
        if not (alpha == ALPHA_LR if isinstance(alpha, str) else numeric and alpha > 0):
            raise ConfigError("alpha", f"must be {ALPHA_RULE}, got {describe(alpha)}")
        _non_negative("floor", self.floor)
        if self.ceiling is not None:
            if not self.ceiling > 0:
                raise ConfigError("ceiling", f"must be > 0, got {self.ceiling!r}")
            if self.floor > self.ceiling:
                raise ConfigError(
                    "floor", f"must be <= ceiling ({self.ceiling!r}), got {self.floor!r}"
                )
        if not 0.0 <= self.loss_ema < 1.0:
            raise ConfigError("loss_ema", f"must be in [0, 1), got {self.loss_ema!r}")

    @property
    def follows_lr(self) -> bool:
        """Whether alpha is the learning rate (``alpha = "lr"``)."""
        return self.alpha == ALPHA_LR

    def alpha_at(self, lr: float) -> float:
        """The α of a step taken at learning rate ``lr``: ``lr`` itself when alpha is "lr"."""
        return lr if isinstance(self.alpha, str) else self.alpha


@dataclass(frozen=True)
class DynamicL1Scheme(DynamicScheme):
    """Dynamic L1: λ_t exactly as :class:`DynamicScheme`, but R(w) = λ_t·‖w‖₁."""

    name: ClassVar[str] = "dynamic_l1"
    penalty: ClassVar[Literal["l2", "l1", "none"]] = "l1"


@dataclass(frozen=True)
class AWDScheme(_SchemeBase):
    """Adaptive Weight Decay (Ghiasi et al., NeurIPS 2023), the published adaptive comparator.

        λ_t = lam_awd · ‖∇_w L_t‖ / ‖w‖,    λ̄_t = 0.1·λ̄_{t−1} + 0.9·λ_t  (λ̄_0 = 0)

    with norms over all penalized parameters and R(w) = ½·λ̄_t·‖w‖².
    """

    name: ClassVar[str] = "awd"
    penalty: ClassVar[Literal["l2", "l1", "none"]] = "l2"

    lam_awd: float = 1e-2  # the AWD hyperparameter (> 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.lam_awd > 0:
            raise ConfigError("lam_awd", f"must be > 0, got {self.lam_awd!r}")


@dataclass(frozen=True)
class SWDScheme(_SchemeBase):
    """Scheduled (stable) weight decay, SWD: the decay of AdamS (Xie, Xu, Zhang, Sato and
    Sugiyama, "On the Overlooked Pitfalls of Weight Decay and How to Mitigate Them: A
    Gradient-Norm Perspective", NeurIPS 2023, Algorithm 2; the authors' ``swd_optim/adams.py``):

        λ_t = lam / √mean(v̂_t),    w ← w − lr·λ_t·w   (decoupled)

    where mean(v̂_t) is the mean, over every element of the penalized parameters, of Adam's
    bias-corrected second moment v̂_t = v_t / (1 − β₂ᵗ) after this step's gradient. The decay
    therefore grows when gradients shrink, late in training, which the paper shows keeps the
    gradient norm from rising there. dynl2 keeps mean(v_t) itself from the same gradients
    (mean(β₂·v + (1 − β₂)·g²) = β₂·mean(v) + (1 − β₂)·mean(g²), exactly Adam's), so a run
    and a stack compute it alike; √mean(v̂_t) is held at least 1e-8 against gradients that are
    all zero. Two differences from the authors' code, both deliberate: the mean covers the
    penalized parameters only (theirs: every parameter with a gradient), and the shrink comes
    after the Adam update as in dynl2's other decoupled schemes (theirs: just before it; the
    two differ by lr·λ_t times the update, a second-order term).

    Decoupled by definition, and Adam only: the scheduled factor is Adam's second moment. The
    authors' SGD variant (``swd_optim/sgds.py``, SGDS) has no schedule: it is decoupled decay
    scaled by the constant (1 − dampening)/(1 − momentum), which the ``fixed`` scheme with
    ``apply = "decoupled"`` already covers; so ``swd`` with SGD is refused.
    """

    name: ClassVar[str] = "swd"
    penalty: ClassVar[Literal["l2", "l1", "none"]] = "l2"
    optimizers: ClassVar[tuple[str, ...] | None] = ("adam",)

    apply: str = "decoupled"
    lam: float = 1e-4  # the decay factor before the √mean(v̂) scaling (≥ 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.apply != "decoupled":
            raise ConfigError(
                "apply",
                f"scheme 'swd' is decoupled by definition; must be 'decoupled', "
                f"got {self.apply!r}",
            )
        _non_negative("lam", self.lam)


@dataclass(frozen=True)
class ScheduleScheme(_SchemeBase):
    """A time-only control: λ_t follows a fixed schedule from ``lam_start`` to ``lam_end``
    over training, whatever the loss does. Against the dynamic scheme it asks whether reacting
    to L matters beyond "more decay late in training". With T = epochs × steps per epoch and
    i = t − 1 = 0, 1, …, T − 1 the step's index:

        linear:  λ_t = lam_end + (lam_start − lam_end)·(1 − i/T)
        cosine:  λ_t = lam_end + (lam_start − lam_end)·½·(1 + cos(π·i/T))

    the cosine exactly as DINO schedules its weight decay (Caron et al., ICCV 2021,
    ``utils.cosine_scheduler`` without warm-up), and the linear one on the same grid: λ starts
    at lam_start and would reach lam_end one step after the last. R(w) = ½·λ_t·‖w‖². A run
    stopped early (pruned) has followed the schedule of its full length.
    """

    name: ClassVar[str] = "schedule"
    penalty: ClassVar[Literal["l2", "l1", "none"]] = "l2"
    settings: ClassVar[tuple[str, ...]] = ("apply", "biases", "shape")

    lam_start: float = 0.0  # λ at the first step (≥ 0)
    lam_end: float = 1e-3  # λ the schedule ends at (≥ 0)
    shape: str = "linear"  # "linear" or "cosine"

    def __post_init__(self) -> None:
        super().__post_init__()
        _non_negative("lam_start", self.lam_start)
        _non_negative("lam_end", self.lam_end)
        if self.shape not in SHAPES:
            raise ConfigError(
                "shape", f"must be one of {', '.join(SHAPES)}, got {describe(self.shape)}"
            )


Scheme = (
    NoneScheme
    | FixedScheme
    | DynamicScheme
    | DynamicL1Scheme
    | AWDScheme
    | SWDScheme
    | ScheduleScheme
)

SCHEMES: dict[str, type[Scheme]] = {
    cls.name: cls
    for cls in (
        NoneScheme,
        FixedScheme,
        DynamicScheme,
        DynamicL1Scheme,
        AWDScheme,
        SWDScheme,
        ScheduleScheme,
    )
}


def scheme_from_dict(data: Mapping[str, object], prefix: str = "scheme") -> Scheme:
    """Build a scheme from ``{"scheme": NAME, ...its parameters}``; other keys are errors."""
    return from_tagged(SCHEMES, data, prefix, "scheme", "none", "scheme")


def scheme_parameters(name: str) -> tuple[str, ...]:
    """The numeric parameters a scheme takes (what a study may search)."""
    cls = SCHEMES[name]
    return tuple(f.name for f in dataclasses.fields(cls) if f.name not in cls.settings)


def _non_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(key, f"must be >= 0, got {value!r}")
