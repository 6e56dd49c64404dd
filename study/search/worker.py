"""A worker process: joins an experiment's studies and trains trials until every arm is done.

Each loop, under the experiment's claim lock (held only while asking, never while training):
fail stale trials (their retries become WAITING), pick the arm furthest from its budget, and ask
it for a trial only if its results plus trials in flight are still below ``n_trials``. So each arm
ends with exactly ``n_trials`` results however many workers join, die or restart. Nothing
home-made coordinates workers beyond that lock: the database does.
"""

from __future__ import annotations

import copy
import functools
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Literal

import optuna
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from storage import Store, draws_of
from study.config.experiment import ExperimentConfig
from study.search import signals
from study.search.fused import group_sizes, run_trials
from study.search.keys import WORKER_ATTR, WORKER_JOB_ATTR, ArmCounts, Heartbeat, SearchKey, label
from study.search.optuna_adapter import (
    ask_many,
    heartbeat_interval,
    record_heartbeat,
    set_user_attrs_many,
    storage_of,
    trial_id_of,
)
from study.search.resilience import retrying
from study.search.samplers import pruning_startup, reproducible_lag
from study.search.studies import adopt_silent_claims, count, distributions, open_studies
from trainers import Dataset, data_from_dict, load_dataset, resolve_device


@dataclass
class WorkerSummary:
    trials: dict[str, int] = field(default_factory=dict)  # arm -> trials this worker finished
    waiting: bool = False  # returned while others still train the last trials (linger=False)
    out_of_time: bool = False  # returned because the next group would not end by the deadline
    longest: float | None = None  # seconds of the longest group trained (or run_worker's estimate)

    @property
    def total(self) -> int:
        return sum(self.trials.values())


def fits(now: float, deadline: float | None, estimate: float | None) -> bool:
    """Whether a worker may claim its next group at ``now``: always without a ``deadline``;
    else only before it, and only if ``estimate`` (seconds: the longest group this worker
    trained so far, None before the first) ends by it. The first group is claimed whenever
    there is time left: with nothing trained yet there is nothing to estimate from, and a
    group cut off by the job's end is handed back all the same."""
    if deadline is None:
        return True
    return now + (estimate or 0.0) <= deadline and now < deadline


def run_worker(
    store: Store,
    config: ExperimentConfig,
    heartbeat: Heartbeat | None = None,
    on_trial: Callable[[str, int, str], None] | None = None,
    poll: float = 1.0,
    note: Callable[[str], None] | None = None,
    batch: int | None = None,
    linger: bool = True,
    deadline: float | None = None,
    estimate: float | None = None,
) -> WorkerSummary:
    """Train trials of ``config`` until every search (each searched arm, once per replicate)
    has ``n_trials`` results; without ``linger``, until none has a trial left to claim (the
    last ones others are training are theirs: :func:`study.service.agent.run_agent` moves on to
    other work and comes back to retry any of them that fails).

    Every worker draws trial k alike (:func:`studies.search_seed`), so none needs a name or
    a seed of its own.
    Each claim takes up to ``batch`` trials of one arm and trains them fused (default:
    ``[search] batch``, else :func:`fused_trials.default_batch` for the device).
    A database that stops answering is waited for (see :mod:`study.search.resilience`); ``note``
    hears when it goes and comes back.

    With a ``deadline`` (``time.time()`` seconds: a Slurm job's end less a margin,
    :func:`study.api.slurm.job_deadline`), no group is claimed that would not end by it
    (:func:`fits`); the summary says ``out_of_time``. ``estimate``: seconds of the longest group
    trained before this call (an agent's earlier searches), which then counts from the first
    claim on.
    """
    studies = retrying(
        lambda: open_studies(store, config, heartbeat or Heartbeat()),
        "opening the studies",
        note=note,
    )
    summary = WorkerSummary(longest=estimate)
    data: list[Dataset] = []  # loaded on the first claim, then reused for every trial
    device = resolve_device(str(config.train_fixed.get("device", "auto")))
    sizes = group_sizes(config, device.type, batch, note)

    def dataset() -> Dataset:
        if not data:
            data.append(load_dataset(data_from_dict(config.data), device))
        return data[0]

    while studies:
        signals.check()  # a stop whose raise was swallowed: stop before the next claim
        if not fits(time.time(), deadline, summary.longest):
            summary.out_of_time = True
            return summary
        claimed: list[tuple[SearchKey, int]] = []  # (search, trial id) as each is made
        try:
            claim = retrying(
                functools.partial(_claim, store, config, studies, sizes, claimed),
                "claiming trials",
                note=note,
            )
            if claim == "done":
                return summary
            if claim == "wait":  # others still run the last trials; one may die and need a retry
                if not linger:
                    summary.waiting = True
                    return summary
                time.sleep(poll)
                continue
            study = studies[claim.key]
            _record_worker(study, claim.trials)
            started = time.monotonic()
            with _heartbeat(study, [trial_id_of(t) for t in claim.trials]):
                outcomes = run_trials(
                    store, config, claim.arm, study, claim.trials, dataset, note, claim.draws
                )
            took = time.monotonic() - started
            summary.longest = max(took, summary.longest or 0.0)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (study.search.signals), here or in the claim
            signals.stopping()
            hand_back(store, config, studies, claimed)
            raise
        name = label(config, claim.key)
        summary.trials[name] = summary.trials.get(name, 0) + len(claim.trials)
        if on_trial is not None:
            for trial, outcome in zip(claim.trials, outcomes, strict=True):
                on_trial(name, trial.number, outcome)
    return summary


def hand_back(
    store: Store,
    config: ExperimentConfig,
    studies: dict[SearchKey, optuna.Study],
    trials: Sequence[tuple[SearchKey, int]],
) -> list[int]:
    """Fail the trials (``(search, trial id)``) this worker claimed and was training when it was
    told to stop, and queue each one's retry, as Optuna does for a dead worker's trial once its
    heartbeat lapses (``fail_stale_trials``, under the same claim lock), but at once: the next
    worker or run trains them without waiting for the grace period. Trials that already ended
    (a fused group's pruned members, say) stay as they are. Returns the ids handed back.

    Best effort and quick: no retrying. A trial this cannot reach (the database away, the lock
    not had before the run kills this process) stays RUNNING; its heartbeat lapses and it is
    failed and retried all the same."""
    handed: list[int] = []
    if not trials:
        return handed
    with suppress(Exception), store.lock(f"claim:{config.name}"), _quiet_optuna():
        for key, trial_id in trials:
            with suppress(Exception):  # one that cannot be handed back keeps its heartbeat way
                if _fail_and_requeue(studies[key], trial_id):
                    handed.append(trial_id)
    return handed


def _fail_and_requeue(study: optuna.Study, trial_id: int) -> bool:
    storage = storage_of(study)
    try:
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # it ended before the stop
    get_retry = getattr(storage, "get_heartbeat_stale_trial_callback", None) or getattr(
        storage, "get_failed_trial_callback", None
    )  # optuna >= 4.9, and before (see studies.py)
    retry = get_retry() if get_retry is not None else None
    if retry is not None:
        retry(study, copy.deepcopy(storage.get_trial(trial_id)))
    return True


@dataclass(frozen=True)
class _Claim:
    key: SearchKey  # (arm, replicate)
    trials: tuple[optuna.trial.Trial, ...]
    draws: tuple[int, ...]  # each trial's draw (storage.draws): its trainer seed's

    @property
    def arm(self) -> str:
        return self.key[0]


def _claim(
    store: Store,
    config: ExperimentConfig,
    studies: dict[SearchKey, optuna.Study],
    sizes: dict[str, int] | None = None,
    claimed: list[tuple[SearchKey, int]] | None = None,
) -> _Claim | Literal["wait", "done"]:
    """Ask the search (an arm's replicate) furthest from its budget for up to ``sizes[arm]``
    trials (default 1), as many as it has free slots. Replicates progress at the same pace
    as arms do: a cut-short run leaves every search about as far along.

    The new trial's first heartbeat is written before the lock is released: Optuna never
    declares a RUNNING trial without any heartbeat stale, so a worker dying right after its
    claim would otherwise leave the trial RUNNING forever.
    """
    n = config.search.n_trials
    lag = reproducible_lag(config.search) if config.search.reproducible else None
    with store.lock(f"claim:{config.name}"), _quiet_optuna():
        pending = False
        best: tuple[float, SearchKey] | None = None
        by_key = {}
        seen: dict[SearchKey, list[FrozenTrial]] = {}
        for key, study in studies.items():
            fail_stale_trials(study)
            seen[key] = study.get_trials(deepcopy=False)  # one read, after stale ones failed
            adopt_silent_claims(store, study, seen[key])
            counts = by_key[key] = count(study, config.direction, seen[key])
            if counts.results >= n:
                continue
            pending = True
            if _free(counts, n, lag) <= 0:
                continue  # its remaining slots are being trained, or wait for earlier trials
            progress = (counts.results + counts.running) / n
            if best is None or progress < best[0]:
                best = (progress, key)
        if best is None:
            return "wait" if pending else "done"
        key = best[1]
        arm = key[0]
        counts = by_key[key]  # as read under this lock: nothing has changed it since
        free = _free(counts, n, lag)
        size = (sizes or {}).get(arm, 1)
        startup = pruning_startup(config.search)
        if counts.complete < startup:  # the pruner's reference trials come first
            size = min(size, max(1, startup - counts.complete - counts.running))
        study = studies[key]

        def first_heartbeat(trial: optuna.trial.Trial) -> None:
            # Retried on its own: retrying the whole claim would ask again and leave this
            # trial RUNNING without a heartbeat, which Optuna never declares stale.
            retrying(
                functools.partial(record_heartbeat, study, trial_id_of(trial)),
                "recording a heartbeat",
            )

        def held(trial_id: int) -> None:
            if claimed is not None:  # handed back if a stop comes before the claim returns
                claimed.append((key, trial_id))

        trials = ask_many(
            study,
            distributions(config, arm),
            max(1, min(size, free)),
            waiting=counts.waiting,
            then=held,
            beat=first_heartbeat,
            # retried on its own too: the trials exist, with their heartbeats, and only
            # their parameters are left to write
            retry=lambda write: retrying(write, "recording the trials' parameters"),
            seen=seen[key],
        )
    return _Claim(key, tuple(trials), tuple(draws_of(seen[key], [t.number for t in trials])))


def _free(counts: ArmCounts, n: int, lag: int | None) -> int:
    """How many trials a search may be asked for now: its retries waiting, or as many new
    ones as its budget has room for. With ``[search] reproducible``, the new trial of draw k
    only once every draw ``k - lag`` or lower has ended (:mod:`study.search.samplers`)."""
    free = max(n - counts.results - counts.running, counts.waiting)
    if lag is None:
        return free
    first_open = counts.asked if counts.first_open is None else counts.first_open
    return min(free, counts.waiting + max(0, first_open + lag - counts.asked))


def _record_worker(study: optuna.Study, trials: Sequence[optuna.trial.Trial]) -> None:
    """Which worker trains each trial (a retried trial: the last to claim it), for users
    reading the store (``dynl2 status``) and for tests that must stop the worker of a given
    trial: ``HOST:PID``, and under Slurm the job (:data:`WORKER_JOB_ATTR`). Written after the
    claim, outside its lock: other workers' claims do not wait for it."""
    attrs: dict[str, object] = {WORKER_ATTR: _identity()}
    job = slurm_job()
    if job is not None:
        attrs[WORKER_JOB_ATTR] = job
    retrying(
        lambda: set_user_attrs_many(study, [(trial, attrs) for trial in trials]),
        "recording the trials' worker",
    )


def _identity() -> str:
    """``HOST:PID`` of this worker (asked each time: cheap, and right after a fork)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def slurm_job() -> str | None:
    """This process's Slurm job: ``JOB_TASK`` for a task of a job array (``123_4``), ``JOB``
    for a plain job, None outside Slurm."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID", "").strip()
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "").strip()
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID", "").strip() or None


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna flags fail_stale_trials as experimental and warns that heartbeats are meant for
    Study.optimize; dynl2 drives both on purpose with ask/tell (the worker's heartbeat thread)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        yield


@contextmanager
def _heartbeat(study: optuna.Study, trial_ids: list[int]) -> Iterator[None]:
    """Record the trials' heartbeats every ``interval`` seconds while they train."""
    interval = heartbeat_interval(study)
    stop = threading.Event()

    def beat() -> None:
        while True:
            with suppress(Exception):  # a missed beat is retried; the trial goes on
                for trial_id in trial_ids:
                    record_heartbeat(study, trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"dynl2-heartbeat-{trial_ids[0]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
