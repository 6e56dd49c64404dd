"""Fused training: K runs of one architecture trained together as one stacked model.

The models studies train are small (the MNIST-1D MLP has 15k parameters); one at a time they
leave a GPU idle and run a CPU's matrix products far below its peak. Here K configurations that
differ only in numeric hyperparameters (learning rate, momentum, the scheme's λ / α / floor /
ceiling / loss EMA / AWD or SWD λ / a schedule's ends) and seeds are trained as one model with
stacked parameters (:mod:`trainers.stacked`), per-member optimizers
(:mod:`trainers.stacked_optim`) and per-member λ_t (:mod:`trainers.regularizers`). Member k
computes exactly what an unfused run of ``configs[k]`` computes, up to floating-point rounding:

* its own initialization (``seed``) and, unless the group shares one, its own batch order;
* a dynamic scheme's ``alpha = "lr"`` is its own ``lr`` (members with a numeric alpha and with
  "lr" may share a group: α is per member either way);
* with ``shared_order`` every member sees the same batches, those of an unfused run whose
  ``order_seed`` is ``shared_order`` (common random numbers for search trials);
* its epochs go to its own callback; returning True stops (prunes) that member alone;
* a member whose loss or weights stop being finite fails alone with a DivergenceError; its
  neighbours' arithmetic never touches its numbers.

A member that leaves is compacted out of every stacked tensor at the end of the epoch (one
gather per tensor), rather than masked: masking would keep spending its share of every matrix
product and optimizer update until the group ends, and compaction costs one copy, once.

Per step nothing is read back to the host; per epoch one ``.tolist()`` fetches every member's
summary together.

A user's own model (:class:`~trainers.models.FactoryModel`) is stacked with ``torch.func``
(:class:`~trainers.func_stack.FuncStackedModel`): any module, its buffers (batch norm's running
statistics) per member, training and evaluation modes set where an unfused run sets them, and
random layers drawing from the group's seeded stream (so with dropout a member matches its solo
run in distribution only; see :mod:`trainers.func_stack`). A module that cannot run under
``vmap`` is found by one probe when the group is built, and its members are then trained one
at a time by :func:`trainers.loop.train`, the callers hearing the same outcomes (and ``note``
one line saying so).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from .config import TrainConfig
from .custom import train_custom
from .datasets import Dataset, load_dataset
from .errors import ConfigError, DivergenceError
from .func_stack import FuncStackedModel
from .loop import (
    EpochCallback,
    EpochRecord,
    TrainResult,
    batch_sizes,
    divergence,
    epoch_record,
    flush_denormals,
    planned_steps,
    resolve_device,
    seeded_randomness,
    train,
)
from .models import FactoryModel
from .regularizers import Regularizer, make_stacked_regularizer, member_norm
from .stacked import StackedModel
from .stacked_optim import StackedAdam, StackedOptimizer, StackedSGD

# Trainer settings each member may hold on its own; every other setting must be equal in a group.
PER_MEMBER = ("lr", "momentum", "seed", "order_seed")

FusedOutcome = TrainResult | DivergenceError
"""A member's end: its result, or the divergence that failed it."""


def fuse_problem(configs: Sequence[TrainConfig]) -> str | None:
    """Why ``configs`` cannot be trained as one group, or None when they can."""
    if not configs:
        return "no configs to train"
    first = configs[0]
    for config in configs[1:]:
        for f in fields(TrainConfig):
            if f.name in PER_MEMBER or f.name == "scheme":
                continue
            if getattr(config, f.name) != getattr(first, f.name):
                return f"members differ in {f.name!r}, which must be equal in a fused group"
        if type(config.scheme) is not type(first.scheme):
            return "members differ in their scheme"
        for name in first.scheme.settings:  # apply, biases, ...: the rest are per member
            if getattr(config.scheme, name) != getattr(first.scheme, name):
                return f"members differ in scheme setting {name!r}"
    return None


@dataclass
class _Member:
    """Book-keeping of one member while it trains (host side)."""

    index: int  # position in the caller's ``configs``
    config: TrainConfig
    history: list[EpochRecord]
    generator: torch.Generator | None  # its own batch order, or None when shared


class FusedTrainer:
    """A stack of K members, their optimizer and regularizer on one device."""

    def __init__(self, configs: Sequence[TrainConfig], data: Dataset, device: torch.device):
        problem = fuse_problem(configs)
        if problem is not None:
            raise ConfigError("fused", problem)
        first = configs[0]
        self.data = data
        self.device = device
        self.classification = data.task == "classification"
        if device.type == "cpu":
            flush_denormals()  # as a run's Trainer does: this thread at least
        n_out = data.n_classes if self.classification else 1
        seeds = [c.seed for c in configs]
        self.model: StackedModel | FuncStackedModel
        self.vmap_problem: str | None = None  # why a factory model cannot be vmapped
        if isinstance(first.model, FactoryModel):
            self.model = FuncStackedModel(
                first.model, seeds, data.n_features, n_out, data.in_shape, device
            )
            self.vmap_problem = self.model.vmap_problem(data.x_train[:2], n_out)
        else:
            data = self.data = data.flattened()  # the built-in models read vectors
            self.model = StackedModel(
                first.model, seeds, data.n_features, n_out, data.sequence, device
            )
        # per stacked parameter, whether the penalty covers it (each member's own ndim)
        self.mask = [first.scheme.covers(p.ndim - 1) for p in self.model.params]
        self.regularizer: Regularizer = make_stacked_regularizer(
            [c.scheme for c in configs],
            device,
            planned_steps(first, len(data.x_train)),
            [c.lr for c in configs],  # each member's α where its alpha is "lr"
        )
        lr = torch.tensor([c.lr for c in configs], device=device)
        self.optimizer: StackedOptimizer
        if first.optimizer == "adam":
            self.optimizer = StackedAdam(lr)
        else:
            momentum = torch.tensor([c.momentum for c in configs], device=device)
            self.optimizer = StackedSGD(lr, momentum, first.nesterov)

    @property
    def size(self) -> int:
        return self.model.size

    def penalized(self, items: Sequence[Tensor]) -> list[Tensor]:
        """The penalized ones of a per-parameter list (the params or their gradients)."""
        return [t for t, on in zip(items, self.mask, strict=True) if on]

    def member_losses(self, out: Tensor, y: Tensor) -> Tensor:
        """Each member's mean data loss ``[K]``; ``y`` is ``[B]`` (shared) or ``[K, B]``."""
        k, batch = out.shape[0], out.shape[1]
        if y.ndim == 1:
            y = y.expand(k, batch)
        if self.classification:
            # cross-entropy as logsumexp − the true class's logit: the same number as
            # F.cross_entropy, a few percent faster a step for many short rows of 10 logits
            picked = out.gather(-1, y.unsqueeze(-1)).squeeze(-1)
            return (torch.logsumexp(out, -1) - picked).mean(1)
        return (out.squeeze(-1) - y).square().mean(1)

    def step(self, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One update of every member. Returns (data loss, λ_t, correct count), each ``[K]``
        on the device: no sync."""
        params = self.model.params
        if isinstance(self.model, StackedModel) and self.model.handwritten:
            detached, correct, grads = self.model.losses_and_grads(xb, yb, self.classification)
        else:
            out = self.model.forward(xb)
            losses = self.member_losses(out, yb)
            # member k's loss reaches member k's parameters only
            if isinstance(self.model, FuncStackedModel):
                grads = self.model.grads(losses.sum())
            else:
                grads = list(torch.autograd.grad(losses.sum(), params))
            detached = losses.detach()
            if self.classification:
                correct = (out.detach().argmax(-1) == yb).sum(-1).float()
            else:
                correct = torch.zeros_like(detached)
        reg = self.regularizer
        penalized, penalized_grads = self.penalized(params), self.penalized(grads)
        lam = reg.lam(detached, penalized_grads, penalized)
        reg.before_step(lam, penalized_grads, penalized)
        self.optimizer.step(params, grads)
        reg.after_step(lam, self.optimizer.lr, penalized)
        return detached, lam, correct

    def train_epoch(self, order: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """One pass in ``order`` (``[n]`` shared or ``[K, n]`` per member). Returns per-step
        losses, λ_t and correct counts, ``[steps, K]`` each, on the device."""
        n = order.shape[-1]
        steps = -(-n // batch)
        k = self.size
        self._mode(True)  # dropout on, batch norm's batch statistics
        losses = torch.empty(steps, k, device=self.device)
        lams = torch.empty(steps, k, device=self.device)
        correct = torch.zeros(steps, k, device=self.device)
        x, y = self.data.x_train, self.data.y_train
        for i, idx in enumerate(order.split(batch, dim=-1)):
            losses[i], lams[i], correct[i] = self.step(x[idx], y[idx])
        return losses, lams, correct

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Each member's (mean loss, accuracy) over a whole split, ``[K]`` each (accuracy is
        zeros for regression), the members in evaluation mode."""
        k = self.size
        self._mode(False)
        loss_sum = torch.zeros(k, device=self.device)
        correct = torch.zeros(k, device=self.device)
        chunk = max(64, 65536 // k)  # bounds the activations of K members at once
        for xb, yb in zip(x.split(chunk), y.split(chunk), strict=True):
            out = self.model.forward(xb)
            loss_sum += self.member_losses(out, yb) * len(xb)
            if self.classification:
                correct += (out.argmax(-1) == yb).sum(-1)
        return loss_sum / len(x), correct / len(x)

    @torch.no_grad()
    def weight_norm(self) -> Tensor:
        penalized = self.penalized(self.model.params)
        if not penalized:
            return torch.zeros(self.size, device=self.device)
        return member_norm(penalized)

    @torch.no_grad()
    def finite(self) -> Tensor:
        """1.0 for each member whose parameters are all finite, else 0.0: ``[K]``."""
        flags = [torch.isfinite(p.flatten(1)).all(1) for p in self.model.params]
        return torch.stack(flags).all(0).float()

    def _mode(self, training: bool) -> None:
        """Training or evaluation mode, where the model has modes (a built-in stack has none)."""
        if isinstance(self.model, FuncStackedModel):
            self.model.train(training)

    def keep(self, index: Tensor) -> None:
        self.model.keep(index)
        self.optimizer.keep(index)
        self.regularizer.keep(index)


def train_fused(
    configs: Sequence[TrainConfig],
    on_epoch: Sequence[EpochCallback | None] | None = None,
    data: Dataset | None = None,
    shared_order: int | None = None,
    on_ends: Callable[[Sequence[tuple[int, FusedOutcome]]], None] | None = None,
    on_epochs: Callable[[Sequence[tuple[int, EpochRecord]]], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> list[FusedOutcome]:
    """Train ``configs`` together; returns each member's outcome, in ``configs`` order.

    ``on_epoch[k]`` receives member k's epochs (as :func:`trainers.train`'s callback does);
    returning True stops member k. ``on_epochs`` hears each epoch once for the whole group,
    before the per-member callbacks: ``(k, record)`` for every member still training that did
    not diverge (so a caller can write every member's epoch in one transaction).
    ``shared_order`` gives every member the batch order of an unfused run with
    ``order_seed = shared_order``; without it each member draws its own order from its config's
    batch order seed, as an unfused run does. Every member's ``seconds`` (per epoch and per
    run) is the group's wall time: they trained at once. ``on_ends([(k, outcome), ...])``
    hears of members' ends as they happen, those that end together at once (so a caller can
    record them in one transaction): the members stopped or diverged in an epoch at its end,
    the members that completed after the group's test pass. Random layers draw from one
    stream for the group, seeded from the first member's seed.

    A config with a user's own ``loop`` trains its members one at a time with it
    (:mod:`trainers.custom`). A factory model that cannot run under ``vmap`` trains its members
    one at a time instead
    (each member's epochs then reach ``on_epochs`` alone, and its end ``on_ends`` alone), and
    ``note`` hears one line saying so.
    """
    started = time.perf_counter()
    if on_epoch is not None and len(on_epoch) != len(configs):
        raise ValueError(f"`on_epoch` needs one callback per config ({len(configs)})")
    first = configs[0] if configs else None
    if first is None:
        return []
    device = resolve_device(first.device)
    if data is None:
        data = load_dataset(first.data, device)
    callbacks = list(on_epoch) if on_epoch is not None else [None] * len(configs)
    if first.loop:  # a user's own loop (trainers.custom) trains each member alone
        problem = fuse_problem(configs)
        if problem is not None:
            raise ConfigError("fused", problem)
        return _one_by_one(
            configs, callbacks, data, shared_order, on_ends, on_epochs, train_custom
        )
    trainer = FusedTrainer(configs, data, device)
    if trainer.vmap_problem is not None:
        if note is not None:
            note(
                f"model {getattr(first.model, 'factory', first.model.name)} cannot run its "
                f"{len(configs)} trials as one vmapped group ({trainer.vmap_problem}); "
                "training them one at a time"
            )
        return _one_by_one(configs, callbacks, data, shared_order, on_ends, on_epochs)
    with seeded_randomness(first.seed, device):  # random layers: a function of the seeds
        return _train_group(trainer, configs, callbacks, shared_order, on_ends, on_epochs, started)


def _train_group(
    trainer: FusedTrainer,
    configs: Sequence[TrainConfig],
    callbacks: Sequence[EpochCallback | None],
    shared_order: int | None,
    on_ends: Callable[[Sequence[tuple[int, FusedOutcome]]], None] | None,
    on_epochs: Callable[[Sequence[tuple[int, EpochRecord]]], None] | None,
    started: float,
) -> list[FusedOutcome]:
    first, data, device = configs[0], trainer.data, trainer.device  # flattened for a built-in
    n = len(data.x_train)
    batch = min(first.batch_size, n)
    sizes = torch.tensor(batch_sizes(n, batch), device=device, dtype=torch.float32)
    shared: torch.Generator | None = None
    if shared_order is not None:
        shared = torch.Generator(device=device)
        shared.manual_seed(shared_order)
    members = [
        _Member(k, c, [], None if shared is not None else _generator(c, device))
        for k, c in enumerate(configs)
    ]
    outcomes: dict[int, FusedOutcome] = {}
    for epoch in range(1, first.epochs + 1):
        t0 = time.perf_counter()
        if shared is not None:
            order = torch.randperm(n, device=device, generator=shared)
        else:
            order = torch.stack(
                [torch.randperm(n, device=device, generator=m.generator) for m in members]
            )
        losses, lams, correct = trainer.train_epoch(order, batch)
        val_loss, val_acc = trainer.evaluate(data.x_val, data.y_val)
        summary = torch.stack(
            [
                (losses * sizes[:, None]).sum(0) / n,
                correct.sum(0) / n,
                val_loss,
                val_acc,
                lams.mean(0),
                lams.min(0).values,
                lams.max(0).values,
                lams[-1],
                trainer.weight_norm(),
                trainer.finite(),
            ]
        )
        columns = summary.T.tolist()  # note: the epoch's one CPU-GPU sync point, all members
        seconds = time.perf_counter() - t0
        ended: list[tuple[int, FusedOutcome]] = []
        healthy: list[tuple[_Member, EpochRecord]] = []
        for member, values in zip(members, columns, strict=True):
            record = epoch_record(epoch, values, trainer.classification, seconds)
            problem = divergence(record, weights_finite=values[9] == 1.0)
            if problem is not None:
                ended.append((member.index, problem))
                continue
            member.history.append(record)
            healthy.append((member, record))
        if on_epochs is not None and healthy:
            on_epochs([(member.index, record) for member, record in healthy])
        for member, record in healthy:
            callback = callbacks[member.index]
            if callback is not None and callback(record):
                ended.append((member.index, _result(member, None, None, started, True, device)))
        _end(outcomes, ended, on_ends)
        if ended:
            gone = {k for k, _ in ended}
            stay = [i for i, m in enumerate(members) if m.index not in gone]
            members = [members[i] for i in stay]
            if not members:
                break
            trainer.keep(torch.tensor(stay, device=device))
    if members:
        test_loss, test_acc = trainer.evaluate(data.x_test, data.y_test)
        tested = torch.stack([test_loss, test_acc]).T.tolist()  # note: sync, once per group
        completed: list[tuple[int, FusedOutcome]] = []
        for member, (loss, acc) in zip(members, tested, strict=True):
            accuracy = acc if trainer.classification else None
            completed.append(
                (member.index, _result(member, loss, accuracy, started, False, device))
            )
        _end(outcomes, completed, on_ends)
    return [outcomes[k] for k in range(len(configs))]


def _one_by_one(
    configs: Sequence[TrainConfig],
    callbacks: Sequence[EpochCallback | None],
    data: Dataset,
    shared_order: int | None,
    on_ends: Callable[[Sequence[tuple[int, FusedOutcome]]], None] | None,
    on_epochs: Callable[[Sequence[tuple[int, EpochRecord]]], None] | None,
    alone: Callable[[TrainConfig, EpochCallback, Dataset], TrainResult] = train,
) -> list[FusedOutcome]:
    """Each member trained alone by ``alone`` (:func:`trainers.loop.train`, or a user's loop
    by :func:`trainers.custom.train_custom`), in order, its epochs and end reported as a
    group's would be (``on_epochs`` before its own callback)."""
    outcomes: dict[int, FusedOutcome] = {}
    for k, config in enumerate(configs):
        run = config if shared_order is None else config.with_(order_seed=shared_order)

        def on_epoch(record: EpochRecord, k: int = k) -> bool:
            if on_epochs is not None:
                on_epochs([(k, record)])
            callback = callbacks[k]
            return callback is not None and bool(callback(record))

        outcome: FusedOutcome
        try:
            outcome = replace(alone(run, on_epoch, data), config=config)
        except DivergenceError as exc:
            outcome = exc
        _end(outcomes, [(k, outcome)], on_ends)
    return [outcomes[k] for k in range(len(configs))]


def _end(
    outcomes: dict[int, FusedOutcome],
    ended: Sequence[tuple[int, FusedOutcome]],
    on_ends: Callable[[Sequence[tuple[int, FusedOutcome]]], None] | None,
) -> None:
    outcomes.update(ended)
    if ended and on_ends is not None:
        on_ends(ended)


def _generator(config: TrainConfig, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(config.batch_order_seed)
    return generator


def _result(
    member: _Member,
    test_loss: float | None,
    test_acc: float | None,
    started: float,
    stopped: bool,
    device: torch.device,
) -> TrainResult:
    return TrainResult(
        config=member.config,
        history=tuple(member.history),
        test_loss=test_loss,
        test_acc=test_acc,
        seconds=time.perf_counter() - started,
        stopped=stopped,
        device=str(device),
    )
