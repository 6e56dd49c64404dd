"""Simulated dynl2 workers for bench/store_scale.py: the real worker loop without torch.

A simulated worker runs the real ``study.search.worker.run_worker`` (claim under the lock,
heartbeats, per-epoch reports, epoch rows, tells) on a store, with the trainer layer's three
torch modules (``trainers.loop``, ``trainers.datasets``, ``trainers.fused``) replaced in
``sys.modules`` by stand-ins before anything imports them: ``train_fused`` reports plausible
epochs through the real callbacks, sleeping a configurable time per epoch in place of training.
Every other module is dynl2's own. The worker checks ``'torch' not in sys.modules`` after it
imported everything and again when it ends, and fails loudly otherwise.

One process may run several workers as threads, each with its own ``storage.open`` (its own
engines and connections, its own Optuna storage): a separate worker as far as the store can
tell, which lets a 2-core machine reach hundreds of workers without hundreds of interpreters.

Each worker times, inside the real path, the claim (``worker._claim``: the claim lock, the
stale-trial checks and the ask), the tell (``trials.tell_many``), the epoch rows
(``Store.record_epochs_many``) and the per-epoch report (``fused.report_many``), and counts
database errors by kind through SQLAlchemy's ``handle_error`` event on every engine.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import sys
import threading
import time
import traceback
import types
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.synchronize import Event
from typing import Any

TIMED = ("claim", "tell", "epochs", "report")  # the calls each worker times
ERROR_KINDS = ("locked", "too_many_clients", "timeout", "other")
_EPOCH_SECONDS = 0.0  # the fake training time of one epoch of a group (set per process)


def error_kind(message: str) -> str:
    """Which column of the table a database error counts in."""
    text = message.lower()
    if "database is locked" in text or "database table is locked" in text:
        return "locked"
    if any(
        s in text
        for s in (
            "too many clients",
            "remaining connection slots",
            "no more connections allowed",
            "too many connections",
            "max_client_conn",
        )
    ):
        return "too_many_clients"
    if "timeout" in text or "timed out" in text or "canceling statement" in text:
        return "timeout"
    return "other"


# --------------------------------------------------------------------------------------------
# The torch-free stand-ins for the trainer layer's training modules.


def install_torchless_trainers() -> None:
    """Put stand-ins for ``trainers.loop``, ``trainers.datasets`` and ``trainers.fused`` in
    ``sys.modules``; must run before anything imports ``study.search.worker``."""
    if "torch" in sys.modules or "study.search.worker" in sys.modules:
        raise RuntimeError("install_torchless_trainers() must run before torch or the worker")
    from trainers.config import TrainConfig
    from trainers.errors import DivergenceError

    @dataclass(frozen=True)
    class EpochRecord:  # the same fields as trainers.loop.EpochRecord
        epoch: int
        train_loss: float
        train_acc: float | None
        val_loss: float
        val_acc: float | None
        lam_mean: float
        lam_min: float
        lam_max: float
        lam_last: float
        weight_norm: float
        seconds: float

        def to_dict(self) -> dict[str, float | int | None]:
            return asdict(self)

    @dataclass(frozen=True)
    class TrainResult:  # the same fields as trainers.loop.TrainResult
        config: TrainConfig
        history: tuple[EpochRecord, ...]
        test_loss: float | None
        test_acc: float | None
        seconds: float
        stopped: bool
        device: str

    def resolve_device(name: str) -> Any:
        return types.SimpleNamespace(type="cpu")

    def load_dataset(*args: object, **kwargs: object) -> object:
        return object()  # the fake train_fused never looks at it

    def refuse(*args: object, **kwargs: object) -> Any:
        raise RuntimeError("a simulated worker does not train")

    loop = types.ModuleType("trainers.loop", "torch-free stand-in (bench/_simulated.py)")
    loop.__dict__.update(
        EpochRecord=EpochRecord,
        TrainResult=TrainResult,
        EpochCallback=Callable,
        Trainer=object,
        resolve_device=resolve_device,
        flush_denormals=lambda: False,
        train=refuse,
    )
    datasets = types.ModuleType("trainers.datasets", "torch-free stand-in")
    datasets.__dict__.update(Dataset=object, load_dataset=load_dataset)
    fused = types.ModuleType("trainers.fused", "torch-free stand-in")
    fused.__dict__.update(
        PER_MEMBER=("lr", "momentum", "seed", "order_seed"),
        FusedOutcome=TrainResult | DivergenceError,
        FusedTrainer=object,
        fuse_problem=lambda configs: None if configs else "no configs to train",
        train_fused=_fake_train_fused(EpochRecord, TrainResult),
    )
    sys.modules.update({"trainers.loop": loop, "trainers.datasets": datasets})
    sys.modules["trainers.fused"] = fused


def _fake_train_fused(record_type: Any, result_type: Any) -> Callable[..., list[Any]]:
    def train_fused(
        configs: Sequence[Any],
        on_epoch: Sequence[Callable[[Any], bool | None] | None] | None = None,
        data: object = None,
        shared_order: int | None = None,
        on_ends: Callable[[Sequence[tuple[int, Any]]], None] | None = None,
        on_epochs: Callable[[Sequence[tuple[int, Any]]], None] | None = None,
        note: Callable[[str], None] | None = None,
    ) -> list[Any]:
        """``trainers.train_fused``'s protocol, without training: each epoch of the group
        sleeps ``_EPOCH_SECONDS``, then reports every member's plausible record through
        ``on_epochs`` and ``on_epoch[k]`` (True stops member k), and ends go to ``on_ends``."""
        started = time.perf_counter()
        callbacks = list(on_epoch) if on_epoch is not None else [None] * len(configs)
        rngs = [random.Random(c.seed) for c in configs]
        ceilings = [r.uniform(0.80, 0.97) for r in rngs]
        histories: list[list[Any]] = [[] for _ in configs]
        members = list(range(len(configs)))
        outcomes: dict[int, Any] = {}

        def result(k: int, stopped: bool) -> Any:
            last = histories[k][-1]
            return result_type(
                config=configs[k],
                history=tuple(histories[k]),
                test_loss=None if stopped else last.val_loss,
                test_acc=None if stopped else last.val_acc,
                seconds=time.perf_counter() - started,
                stopped=stopped,
                device="cpu",
            )

        def end(ended: list[tuple[int, Any]]) -> None:
            outcomes.update(ended)
            if ended and on_ends is not None:
                on_ends(ended)

        for epoch in range(1, configs[0].epochs + 1):
            t0 = time.perf_counter()
            if _EPOCH_SECONDS > 0:
                time.sleep(_EPOCH_SECONDS)  # the group's training, simulated
            healthy = []
            for k in members:
                rng, top = rngs[k], ceilings[k]
                val_acc = min(
                    1.0, 0.1 + (top - 0.1) * (1 - math.exp(-epoch / 4)) + rng.gauss(0, 0.005)
                )
                lam = rng.uniform(1e-6, 1e-2)
                record = record_type(
                    epoch=epoch,
                    train_loss=2.3 * math.exp(-epoch / 5.0) + 0.05,
                    train_acc=min(1.0, val_acc + 0.02),
                    val_loss=2.3 * math.exp(-epoch / 5.0) + 0.1 + abs(rng.gauss(0.0, 0.01)),
                    val_acc=val_acc,
                    lam_mean=lam,
                    lam_min=0.5 * lam,
                    lam_max=1.5 * lam,
                    lam_last=lam,
                    weight_norm=10.0 + 0.1 * epoch,
                    seconds=time.perf_counter() - t0,
                )
                histories[k].append(record)
                healthy.append((k, record))
            if on_epochs is not None:
                on_epochs(healthy)
            ended = []
            for k, record in healthy:
                callback = callbacks[k]
                if callback is not None and callback(record):
                    ended.append((k, result(k, True)))
            end(ended)
            gone = {k for k, _ in ended}
            members = [k for k in members if k not in gone]
            if not members:
                break
        end([(k, result(k, False)) for k in members])
        return [outcomes[k] for k in range(len(configs))]

    return train_fused


# --------------------------------------------------------------------------------------------
# What one worker thread measures.


@dataclass
class WorkerStats:
    times: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in TIMED})
    waits: int = 0  # claims that found nothing to ask for (others train the last trials)
    finished: int = 0  # trials this worker told
    last_trial: float = math.nan  # CLOCK_MONOTONIC when it told its last trial
    ended: float = math.nan  # when its run_worker returned
    notes: list[str] = field(default_factory=list)  # what the worker said (database away...)
    fatal: str | None = None  # why run_worker raised, if it did


_current = threading.local()  # .stats: the WorkerStats of the worker on this thread


def _timed(kind: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = call(*args, **kwargs)
        stats: WorkerStats | None = getattr(_current, "stats", None)
        if stats is not None:
            if kind == "claim" and isinstance(out, str):
                stats.waits += 1  # "wait" or "done": no trial asked for
            else:
                stats.times[kind].append(time.perf_counter() - t0)
        return out

    return wrapper


class _Errors:
    """SQLAlchemy ``handle_error`` listener: database errors of this process, by kind."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.first: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, context: Any) -> None:
        text = str(context.original_exception).strip()
        line = text.splitlines()[0] if text else type(context.original_exception).__name__
        kind = error_kind(text)
        with self._lock:
            self.kinds[kind] += 1
            self.first.setdefault(kind, line[:200])


def _rss_peak_mb() -> float:
    """VmHWM of this process (peak resident set), in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def _torch_check(where: str) -> str | None:
    if "torch" in sys.modules:
        return f"torch was imported in a simulated worker ({where}); the stand-ins leak"
    return None


def process_main(
    url: str,
    config_dict: dict[str, Any],
    index: int,
    threads: int,
    batch: int,
    epoch_seconds: float,
    env: dict[str, str],
    log_path: str,
    start: Event,
    results: Any,
) -> None:
    """Spawned child: ``threads`` simulated workers on ``url``; one message back when done."""
    global _EPOCH_SECONDS
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    _EPOCH_SECONDS = epoch_seconds
    os.environ.update(env)  # DYNL2_PGBOUNCER, DYNL2_DB_PATIENCE: read when the store opens
    try:
        install_torchless_trainers()
        import optuna
        import sqlalchemy

        import storage
        import study.search.fused as fused
        import study.search.trials as trials
        import study.search.worker as worker
        from study.config.experiment import parse_experiment
        from study.search.keys import Heartbeat
        from study.search.resilience import retrying

        problem = _torch_check("after importing dynl2")
        if problem:
            raise RuntimeError(problem)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        errors = _Errors()
        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "handle_error", errors)
        setattr(worker, "_claim", _timed("claim", worker._claim))  # noqa: B010
        # The names trials.py and fused.py imported from the Optuna adapter, looked up per call.
        setattr(trials, "tell_many", _timed("tell", getattr(trials, "tell_many")))  # noqa: B009, B010
        setattr(fused, "report_many", _timed("report", getattr(fused, "report_many")))  # noqa: B009, B010
        config = parse_experiment(config_dict)
    except BaseException as exc:
        text = "".join(traceback.format_exception(exc))
        print(text, file=sys.stderr, flush=True)
        results.put(("error", index, text))
        sys.exit(1)

    ready = threading.Barrier(threads + 1)
    go = threading.Event()
    stats = [WorkerStats() for _ in range(threads)]

    def one(stat: WorkerStats) -> None:
        _current.stats = stat

        def on_trial(arm: str, number: int, outcome: str) -> None:
            stat.finished += 1
            stat.last_trial = time.monotonic()

        arrived = False
        try:
            # As `dynl2 worker` does (study.api.join_experiment): a store that does not answer
            # yet (a full server) is waited for, up to DYNL2_DB_PATIENCE.
            opened = retrying(
                lambda: storage.open(url, create=False),
                "connecting",
                note=lambda line: stat.notes.append(line[:200]),
            )
            with opened as store:
                store.record_epochs_many = _timed(  # type: ignore[method-assign]
                    "epochs", store.record_epochs_many
                )
                arrived = True
                ready.wait()
                go.wait()
                worker.run_worker(
                    store,
                    config,
                    Heartbeat(),
                    on_trial=on_trial,
                    note=lambda line: stat.notes.append(line[:200]),
                    batch=batch,
                )
        except BaseException as exc:
            stat.fatal = "".join(traceback.format_exception_only(exc)).strip()[:400]
            traceback.print_exc()
            if not arrived:  # the others start without this one
                ready.wait()
        finally:
            stat.ended = time.monotonic()

    pool = [threading.Thread(target=one, args=(s,), daemon=True) for s in stats]
    for t in pool:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        ready.wait()
    results.put(("ready", index))
    start.wait()
    go.set()
    for t in pool:
        t.join()
    problem = _torch_check("after the run")
    payload = {
        "workers": [asdict(s) for s in stats],
        "errors": dict(errors.kinds),
        "first_errors": dict(errors.first),
        "rss_mb": _rss_peak_mb(),
        "torch": problem,
    }
    results.put(("done", index, payload))
