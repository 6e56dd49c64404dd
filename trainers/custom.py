"""A user's own training loop (``[train] loop = "module:function"``): for training a config
cannot express. dynl2 does everything around it (studies, replicates, workers, evaluation, the
store, the report); the loop trains one trial.

The function is called with one :class:`LoopContext` and trains ``ctx.model`` on
``ctx.data`` (the splits, already on ``ctx.device``), with the trial's learning rate, seed and
regularizer (a :mod:`trainers.dropin` object for the arm's scheme, at the trial's values; a
dynamic scheme's ``alpha = "lr"`` is ``ctx.lr`` there, whatever rate the loop's optimizer uses)::

    def my_loop(ctx):
        opt = torch.optim.Adam(ctx.model.parameters(), lr=ctx.lr)
        for epoch in range(1, ctx.epochs + 1):
            ...  # per step: loss.backward(); ctx.regularizer.step(loss); opt.step();
                 #           ctx.regularizer.after_step(ctx.lr)
            if ctx.report(epoch, train_loss=..., val_loss=..., val_acc=...):
                return  # pruned: the study has seen enough of this trial

``report`` records the epoch (and is what the pruner sees): ``train_loss`` and ``val_loss``
always, ``val_acc`` for a classification (``train_acc`` if the loop has it); it returns True
when the trial should stop. The epoch's λ is the regularizer's last. The loop returns nothing (or
a mapping, ignored): dynl2 then measures the test split itself on the model the loop leaves, in
eval mode, as its own trainer does, so every arm is scored alike and the loop never needs the
test split. A trial trains alone (groups of one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from .config import TrainConfig
from .datasets import Dataset, load_dataset
from .dropin import DropIn, from_scheme
from .errors import ConfigError, DivergenceError
from .loop import (
    EpochCallback,
    EpochRecord,
    Trainer,
    TrainResult,
    planned_steps,
    resolve_device,
    seeded_randomness,
)
from .own import import_function, said


class LoopError(RuntimeError):
    """The user's loop raised, or reported what cannot be recorded; the message says which."""


@dataclass
class LoopContext:
    """What a user's loop receives: the trial's model, data, device and settings."""

    model: nn.Module  # built from [model] with the trial's seed, on the device
    data: Dataset  # the splits on the device: x_train, y_train, x_val, y_val (and x_test)
    device: torch.device
    seed: int  # the trial's seed (initialization is done; use it for anything else random)
    lr: float  # the trial's learning rate
    epochs: int  # [train] epochs: the most the loop should train
    batch_size: int
    optimizer: str  # [train] optimizer, "adam" or "sgd" (a hint: the loop makes its own)
    regularizer: DropIn  # the arm's scheme at the trial's values, for this model
    config: TrainConfig  # everything else
    report: Callable[..., bool] = field(repr=False, default=lambda *a, **k: False)


def train_custom(
    config: TrainConfig, on_epoch: EpochCallback | None = None, data: Dataset | None = None
) -> TrainResult:
    """Train ``config`` with its ``loop`` (as :func:`trainers.train` trains it with dynl2's),
    then test the model the loop leaves. Raises :class:`DivergenceError` when a reported
    loss is not finite, :class:`LoopError` when the loop raises or reports badly."""
    started = time.perf_counter()
    device = resolve_device(config.device)
    if data is None:
        data = load_dataset(config.data, device)
    function = import_function(config.loop, config.loop_root, "train.loop")
    trainer = Trainer(config, data, device)  # the model, as dynl2's own loop builds it
    regularizer = from_scheme(
        trainer.model,
        config.scheme,
        planned_steps(config, len(trainer.data.x_train)),
        lr=config.lr,  # a dynamic alpha "lr" is the trial's rate, ctx.lr
    )
    history: list[EpochRecord] = []
    state = {"stopped": False, "last": time.perf_counter()}
    classification = trainer.classification

    def report(epoch: int, **metrics: float) -> bool:
        record = _record(epoch, metrics, classification, regularizer, trainer, state["last"])
        state["last"] = time.perf_counter()
        if history and epoch <= history[-1].epoch:
            raise LoopError(f"report: epoch {epoch} after epoch {history[-1].epoch}")
        if not math.isfinite(record.val_loss):
            raise DivergenceError(epoch, record.lam_last, f"val_loss is {record.val_loss}")
        history.append(record)
        if on_epoch is not None and on_epoch(record):
            state["stopped"] = True
        return bool(state["stopped"])

    context = LoopContext(
        model=trainer.model, data=trainer.data, device=device, seed=config.seed, lr=config.lr,
        epochs=config.epochs, batch_size=config.batch_size, optimizer=config.optimizer,
        regularizer=regularizer, config=config, report=report,
    )  # fmt: skip
    with seeded_randomness(config.seed, device):
        try:
            function(context)
        except (DivergenceError, LoopError, KeyboardInterrupt):
            raise
        except ConfigError as exc:
            raise LoopError(f"{config.loop}: {exc}") from exc
        except (Exception, SystemExit) as exc:
            raise LoopError(f"{config.loop} raised {said(exc)}") from exc
    if not history:
        raise LoopError(f"{config.loop} returned without reporting an epoch (ctx.report)")
    stopped = bool(state["stopped"])
    test_loss: float | None = None
    test_acc: float | None = None
    if not stopped:
        loss_t, acc_t = trainer.evaluate(trainer.data.x_test, trainer.data.y_test)
        test_loss = float(loss_t)
        test_acc = float(acc_t) if acc_t is not None else None
        if not math.isfinite(test_loss):
            raise DivergenceError(history[-1].epoch, history[-1].lam_last, "test loss not finite")
    return TrainResult(
        config=config, history=tuple(history), test_loss=test_loss, test_acc=test_acc,
        seconds=time.perf_counter() - started, stopped=stopped, device=str(device),
    )  # fmt: skip


_METRICS = ("val_loss", "val_acc", "train_loss", "train_acc")


def _record(
    epoch: int,
    metrics: Mapping[str, object],
    classification: bool,
    regularizer: DropIn,
    trainer: Trainer,
    since: float,
) -> EpochRecord:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 1:
        raise LoopError(f"report: the epoch must be a whole number >= 1, got {epoch!r}")
    unknown = sorted(set(metrics) - set(_METRICS))
    if unknown:
        raise LoopError(f"report: no metric {unknown[0]!r}; the metrics: {', '.join(_METRICS)}")
    needed = (
        ("train_loss", "val_loss", "val_acc") if classification else ("train_loss", "val_loss")
    )
    for name in needed:
        if name not in metrics:
            raise LoopError(f"report: epoch {epoch} lacks {name}")
    values: dict[str, float | None] = {}
    for name in _METRICS:
        value = metrics.get(name)
        if isinstance(value, torch.Tensor):
            value = value.item()  # note: sync, once per reported metric
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise LoopError(f"report: {name} must be a number, got {type(value).__name__}")
        values[name] = None if value is None else float(value)
    lam = regularizer.lam
    val_loss = values["val_loss"]
    assert val_loss is not None
    train_loss = values["train_loss"]
    assert train_loss is not None
    return EpochRecord(
        epoch=epoch,
        train_loss=train_loss,
        train_acc=values["train_acc"] if classification else None,
        val_loss=val_loss,
        val_acc=values["val_acc"] if classification else None,
        lam_mean=lam, lam_min=lam, lam_max=lam, lam_last=lam,
        weight_norm=float(trainer.weight_norm()),
        seconds=time.perf_counter() - since,
    )  # fmt: skip
