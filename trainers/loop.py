"""The training loop: one run of one configuration, top to bottom.

Per step: forward, data loss, backward, λ_t, coupled penalty, optimizer step, decoupled penalty.
The step never reads a tensor back to the host; the per-step loss, λ_t and correct counts go to
device buffers that are summarized once per epoch (the only sync point, together with the
validation pass).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import TrainConfig, device_problem
from .datasets import Dataset, load_dataset
from .errors import ConfigError, DivergenceError
from .models import FactoryModel
from .networks import build_model
from .regularizers import Regularizer, make_regularizer, total_norm
from .stacked_optim import ADAM_BETAS, ADAM_EPS


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch reports. ``*_acc`` is None for regression."""

    epoch: int  # 1-based
    train_loss: float  # mean data loss over the epoch's steps (without the penalty)
    train_acc: float | None  # share of training examples classified right during the epoch
    val_loss: float
    val_acc: float | None
    lam_mean: float  # λ_t over the epoch's steps (0 for scheme "none")
    lam_min: float
    lam_max: float
    lam_last: float
    weight_norm: float  # ‖w‖ over the penalized parameters at the end of the epoch
    seconds: float  # wall time of the epoch, validation included

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


@dataclass(frozen=True)
class TrainResult:
    config: TrainConfig
    history: tuple[EpochRecord, ...]
    test_loss: float | None  # None when the run was stopped early by its callback
    test_acc: float | None
    seconds: float
    stopped: bool  # the epoch callback asked the run to stop (pruning)
    device: str

    def to_dict(self) -> dict[str, object]:
        return {
            "config": self.config.to_dict(),
            "history": [h.to_dict() for h in self.history],
            "test": {"loss": self.test_loss, "acc": self.test_acc},
            "seconds": self.seconds,
            "stopped": self.stopped,
            "device": self.device,
        }


EpochCallback = Callable[[EpochRecord], bool | None]
"""Called after every epoch; returning True asks the run to stop (the study layer prunes)."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit device must exist on this machine
    (:func:`trainers.config.device_problem` says why not)."""
    problem = device_problem(name)
    if problem is not None:
        raise ConfigError("device", problem)
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def flush_denormals() -> bool:
    """Treat subnormal floats as zero on the CPU. Call it before the process's first torch op.

    Regularization drives the weights of dead units, and Adam's moments, towards 0 until they
    are subnormal floats, which x86 CPUs process many times slower: without this a regularized
    run's steps became 2-4x slower than an unregularized one's after ~100 epochs
    (bench/step_time.py), which would also skew the arms' compute. No reported number changes.
    The setting is per thread and torch's worker threads inherit it when they are created, at
    the first parallel op; so the CLI and every worker process call this first thing. Returns
    False on processors without the switch (then nothing changes).
    """
    return bool(torch.set_flush_denormal(True))


def make_optimizer(config: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """Adam or SGD, using torch's fused kernels where the device has them.

    The fused Adam is about 1.4x faster per step than the per-parameter loop on this project's
    2-core CPU (bench/step_time.py); where a device lacks it, the default implementation runs.
    """
    try:
        if config.optimizer == "adam":
            return torch.optim.Adam(
                params, lr=config.lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True
            )
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov, fused=True
        )
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device / torch
        if config.optimizer == "adam":
            return torch.optim.Adam(params, lr=config.lr, betas=ADAM_BETAS, eps=ADAM_EPS)
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov
        )


def data_loss(out: Tensor, y: Tensor, classification: bool) -> Tensor:
    if classification:
        return F.cross_entropy(out, y)
    return F.mse_loss(out.squeeze(-1), y)


class Trainer:
    """A model, its optimizer and its regularizer on one device; :meth:`step` is one update."""

    def __init__(self, config: TrainConfig, data: Dataset, device: torch.device) -> None:
        self.config = config
        self.data = data
        self.device = device
        self.classification = data.task == "classification"
        if device.type == "cpu":
            flush_denormals()  # this thread at least; see flush_denormals for the pool
        n_out = data.n_classes if self.classification else 1
        if not isinstance(config.model, FactoryModel):
            data = self.data = data.flattened()  # the built-in MLP and linear model read vectors
        self.model: nn.Module = build_model(
            config.model, data.n_features, n_out, data.sequence, config.seed, data.in_shape
        ).to(device)
        self.penalized = [p for p in self.model.parameters() if config.scheme.covers(p.ndim)]
        self.regularizer: Regularizer = make_regularizer(
            config.scheme, device, planned_steps(config, len(data.x_train)), config.lr
        )  # config.lr: α of a dynamic scheme whose alpha is "lr" (the rate is constant)
        self.optimizer = make_optimizer(config, list(self.model.parameters()))

    def step(self, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """One update. Returns (data loss, λ_t, correct count) as device tensors: no sync."""
        out = self.model(xb)
        loss = data_loss(out, yb, self.classification)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        reg = self.regularizer
        # a parameter the step did not reach (frozen, or unused) has no gradient: not penalized
        penalized = [p for p in self.penalized if p.grad is not None]
        grads = [p.grad for p in penalized if p.grad is not None]
        with torch.no_grad():  # λ_t is a number per step, not part of the graph (AWD's norms)
            lam = reg.lam(loss.detach(), grads, penalized)
        reg.before_step(lam, grads, penalized)
        self.optimizer.step()
        reg.after_step(lam, self.config.lr, penalized)
        correct = (out.detach().argmax(1) == yb).sum() if self.classification else None
        return loss.detach(), lam, correct

    def train_epoch(self, order: Tensor, batch: int) -> tuple[Tensor, Tensor, Tensor]:
        """One pass over the training split in ``order``, ``batch`` examples a step.

        Returns per-step data losses, λ_t and correct counts, all still on the device.
        """
        steps = -(-len(order) // batch)
        self.model.train()  # dropout on, batch norm's batch statistics
        losses = torch.empty(steps, device=self.device)
        lams = torch.empty(steps, device=self.device)
        correct = torch.zeros(steps, device=self.device)
        x, y = self.data.x_train, self.data.y_train
        for i, idx in enumerate(order.split(batch)):
            loss, lam, right = self.step(x[idx], y[idx])
            losses[i] = loss
            lams[i] = lam
            if right is not None:
                correct[i] = right
        return losses, lams, correct

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor | None]:
        """(mean loss, accuracy) over a whole split, as device tensors (the model in eval
        mode: no dropout, batch norm's running statistics)."""
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.int64)
        for xb, yb in zip(x.split(8192), y.split(8192), strict=True):
            out = self.model(xb)
            loss_sum += data_loss(out, yb, self.classification) * len(xb)
            if self.classification:
                correct += (out.argmax(1) == yb).sum()
        n = len(x)
        return loss_sum / n, (correct / n if self.classification else None)

    @torch.no_grad()
    def weight_norm(self) -> Tensor:
        if not self.penalized:
            return torch.zeros((), device=self.device)
        return total_norm(self.penalized)


def train(
    config: TrainConfig,
    on_epoch: EpochCallback | None = None,
    data: Dataset | None = None,
) -> TrainResult:
    """Train ``config`` to the end (or until ``on_epoch`` returns True) and test it.

    Raises :class:`DivergenceError` at the end of the first epoch with a non-finite loss or
    weight. ``data`` lets a caller reuse tensors already on the device.
    """
    if config.loop:
        raise ConfigError(
            "loop",
            f"this config trains with its own loop {config.loop!r}: use trainers.train_fused "
            "or trainers.custom.train_custom, which run it",
        )
    started = time.perf_counter()
    device = resolve_device(config.device)
    if data is None:
        data = load_dataset(config.data, device)
    trainer = Trainer(config, data, device)
    with seeded_randomness(config.seed, device):  # dropout's masks: a function of the seed
        return _train(config, trainer, on_epoch, started)


@contextlib.contextmanager
def seeded_randomness(seed: int, device: torch.device) -> Iterator[None]:
    """Torch's global generators (what dropout draws from) seeded from ``seed`` for the block,
    and restored after it: a run's random layers repeat with its seed, and leave the caller's
    random state as it was."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed ^ _DROPOUT_SALT)
        yield


_DROPOUT_SALT = 0x5EED_D20F  # keeps dropout's stream apart from the initialization's (seed)


def _train(
    config: TrainConfig, trainer: Trainer, on_epoch: EpochCallback | None, started: float
) -> TrainResult:
    data, device = trainer.data, trainer.device  # flattened for a built-in model
    n = len(data.x_train)
    batch = min(config.batch_size, n)
    sizes = torch.tensor(batch_sizes(n, batch), device=device, dtype=torch.float32)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.batch_order_seed)
    history: list[EpochRecord] = []
    stopped = False
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, device=device, generator=generator)
        losses, lams, correct = trainer.train_epoch(order, batch)
        val_loss, val_acc = trainer.evaluate(data.x_val, data.y_val)
        summary = torch.stack(
            [
                (losses * sizes).sum() / n,
                correct.sum() / n,
                val_loss,
                val_acc if val_acc is not None else val_loss,
                lams.mean(),
                lams.min(),
                lams.max(),
                lams[-1],
                trainer.weight_norm(),
                _all_finite(trainer.model),
            ]
        )
        values = summary.tolist()  # note: the epoch's one CPU-GPU sync point
        record = epoch_record(epoch, values, trainer.classification, time.perf_counter() - t0)
        problem = divergence(record, weights_finite=values[9] == 1.0)
        if problem is not None:
            raise problem
        history.append(record)
        if on_epoch is not None and on_epoch(record):
            stopped = True
            break
    test_loss: float | None = None
    test_acc: float | None = None
    if not stopped:
        loss_t, acc_t = trainer.evaluate(data.x_test, data.y_test)
        test_loss = float(loss_t)  # note: sync, once per run
        test_acc = float(acc_t) if acc_t is not None else None
    return TrainResult(
        config=config,
        history=tuple(history),
        test_loss=test_loss,
        test_acc=test_acc,
        seconds=time.perf_counter() - started,
        stopped=stopped,
        device=str(device),
    )


def planned_steps(config: TrainConfig, n: int) -> int:
    """The updates a full run of ``config`` makes on ``n`` training examples."""
    return config.epochs * len(batch_sizes(n, min(config.batch_size, n)))


def batch_sizes(n: int, batch: int) -> Sequence[int]:
    full, rest = divmod(n, batch)
    return [batch] * full + ([rest] if rest else [])


def _all_finite(model: nn.Module) -> Tensor:
    flags = [torch.isfinite(p).all() for p in model.parameters()]
    return torch.stack(flags).all().float()


def epoch_record(
    epoch: int, values: Sequence[float], classification: bool, seconds: float
) -> EpochRecord:
    """An epoch's record from its summary row: train loss and accuracy, validation loss and
    accuracy, λ_t mean, min, max and last, weight norm (the trainers' shared layout)."""
    return EpochRecord(
        epoch=epoch,
        train_loss=values[0],
        train_acc=values[1] if classification else None,
        val_loss=values[2],
        val_acc=values[3] if classification else None,
        lam_mean=values[4],
        lam_min=values[5],
        lam_max=values[6],
        lam_last=values[7],
        weight_norm=values[8],
        seconds=seconds,
    )


def divergence(record: EpochRecord, weights_finite: bool) -> DivergenceError | None:
    """The divergence an epoch shows (a non-finite loss, λ_t or weight), or None."""
    for name in ("train_loss", "val_loss", "lam_last"):
        value = getattr(record, name)
        if not math.isfinite(value):
            return DivergenceError(record.epoch, record.lam_last, f"{name} is {value}")
    if not weights_finite:
        return DivergenceError(record.epoch, record.lam_last, "a weight is not finite")
    return None
