"""dynl2's public API: what each ``dynl2`` verb does, as a function a user can import.

    import study

    config = study.load_experiment("examples/quick.toml")
    result = study.run_experiment(config, workers=2, say=print)
    print(result.report)                                  # the HTML report
    status = study.experiment_status("quick")             # what `dynl2 status quick` shows
    trials = study.experiment_trials("quick")             # a DataFrame, one row per trial

``storage`` is a database URL everywhere, as ``--storage`` takes it (default:
``$DYNL2_STORAGE``, else the embedded SQLite store in ``./dynl2-workspace/``). Progress comes
through the ``say`` callback (a line of text each; silent when none is given); nothing here
prints (Optuna's own logger aside: ``optuna.logging.set_verbosity(optuna.logging.WARNING)``
quiets it, as the CLI does). Errors a user can cause raise :class:`study.UsageError`,
:class:`study.ExperimentConfigError` or a :class:`storage.StorageError`, each with one line
that names the problem. The CLI (:mod:`study.cli.dispatch`) parses flags, calls these and prints.

The functions that train import torch when they are called; importing this module does not,
so the functions that only read the store stay quick.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import storage as storage_layer
from storage import ExperimentNotFound
from study.config import env
from study.config.experiment import (
    ExperimentConfig,
    inspected,
    load_experiment,
    parse_experiment,
    require_device,
)
from study.errors import UsageError
from study.run.files import check_target, default_report_path, target_path
from study.run.progress import ArmSummary, arm_counts, counts_of, evaluation_summary, rows_summary

# What the functions call beyond this (the runs, the search and its Optuna studies, the
# report) is imported inside each: `dynl2 status` reads a few rows, and waits for no import
# it does not use.
if TYPE_CHECKING:
    import pandas as pd

    from storage import StatusRows, Store
    from study.run.reporting import ReportResult
    from study.run.runs import SearchOutcome
    from study.search.keys import ArmCounts, SearchKey
    from study.search.worker import WorkerSummary


Say = Callable[[str], None]


def _quiet(line: str) -> None:
    """The default ``say``: progress goes nowhere."""


@dataclass(frozen=True)
class RunResult:
    """How :func:`run_experiment` ended."""

    name: str
    search: SearchOutcome  # complete, or short searches and how many workers failed
    summary: tuple[ArmSummary, ...] = ()  # each arm's test score over the evaluation seeds
    report: ReportResult | None = None  # None when the search is short (rerun to resume)

    @property
    def complete(self) -> bool:
        return self.search.complete


def run_experiment(
    config: ExperimentConfig | str | os.PathLike[str],
    *,
    storage: str | None = None,
    workers: int = 1,
    batch: int | None = None,
    say: Say = _quiet,
    note: Say = _quiet,
) -> RunResult:
    """Create or resume the experiment, search every arm with ``workers`` processes (one: in
    this process), evaluate each search's best configuration on the evaluation seeds, and
    write the report: ``dynl2 run``.

    ``config`` is an :class:`ExperimentConfig` or the path of its TOML file. Rerunning with the
    same config resumes where it stopped (only ``search.replicates`` and ``evaluate.seeds`` may
    grow). ``batch`` is how many trials of an arm train together (default: ``[search] batch``,
    else chosen for the device). ``note`` hears remarks (arms that cannot fuse, an outage)."""
    from study.run.reporting import write_report
    from study.run.runs import (
        create_or_resume,
        evaluate_searches,
        group_line,
        heartbeat_from_env,
        prepare_training,
        search,
    )
    from study.run.stages import next_stage, reached, stage_of
    from study.search.resilience import Patience
    from study.search.studies import open_studies

    if not isinstance(config, ExperimentConfig):
        config = load_experiment(config)  # validated before anything is written,
    else:
        config = inspected(config)  # (a user's data read and checked, as load_experiment does)
    require_device(config)  # and the device, code and data are on this machine
    prepare_training()
    heartbeat = heartbeat_from_env()
    Patience.from_env()  # a bad $DYNL2_DB_PATIENCE is refused before anything is written
    report = target_path(default_report_path(config.name))
    check_target(report)  # a report it could not write is refused now, not after the training
    url = storage_url(storage)
    with _open(url) as store:
        create_or_resume(store, config)
        config = reached(store, config)  # a sequential run resumes at its stage
        groups = group_line(config, batch, note)
        while True:
            open_studies(store, config, heartbeat)  # a new stage: its studies, before workers
            replicates = config.search.replicates
            stage = stage_of(config)
            staged = f" (stage {stage.index} of {stage.of})" if config.search.sequential else ""
            say(
                f"dynl2 run: experiment {config.name!r} in {store.display_url}: "
                f"{len(config.arms)} arms, {config.search.n_trials} trials per searched arm"
                + (f" in each of {replicates} replicates" if replicates > 1 else "")
                + f"{staged}, {workers} worker(s)"
            )
            if groups is not None:
                say(f"dynl2 run: {groups}")
                groups = None
            outcome = search(store, config, url, workers, say, batch, heartbeat)
            if not outcome.complete:
                return RunResult(config.name, outcome)
            evaluate_searches(store, config, config.evaluate.seeds, workers, say, batch)
            following = next_stage(store, config)
            if following is None:
                break
            say(
                f"dynl2 run: undecided at {stage_of(config)}; adding "
                f"{following.search.replicates - replicates} replicates: {stage_of(following)}"
            )
            config = following
        summary = tuple(evaluation_summary(store, config))
        written = write_report(store, config.name, report)
    return RunResult(config.name, outcome, summary, written)


def resume_experiment(
    name: str,
    *,
    storage: str | None = None,
    workers: int = 1,
    batch: int | None = None,
    say: Say = _quiet,
    note: Say = _quiet,
) -> RunResult:
    """:func:`run_experiment` with the config the store keeps for ``name``: finish a stopped
    run without its TOML file."""
    from study.run.runs import stored_experiment

    with _open(storage_url(storage), create=False) as store:
        config = stored_experiment(store, name)
    return run_experiment(config, storage=storage, workers=workers, batch=batch, say=say,
                          note=note)  # fmt: skip


def join_experiment(
    name: str,
    *,
    storage: str | None = None,
    batch: int | None = None,
    index: int | None = None,
    on_trial: Callable[[str, int, str], None] | None = None,
    note: Say = _quiet,
    deadline: float | None = None,
) -> WorkerSummary:
    """Train trials of experiment ``name`` until every search has its budget: ``dynl2
    worker``, one per process or machine, all sharing the store's studies. With a
    ``deadline`` (``time.time()`` seconds; in a Slurm job with a time limit, by default, its
    end less a margin: :func:`study.api.slurm.job_deadline`), no group is claimed that would
    not end by it, and the summary says ``out_of_time``. ``index`` (``--index``)
    changes nothing: every worker draws trial k alike (:func:`study.search.studies.search_seed`),
    and it is kept for the callers that pass it; ``on_trial(arm, number,
    outcome)`` hears each trial end. A database that is away when it starts or while it works
    is waited for under ``$DYNL2_DB_PATIENCE``."""
    import torch

    from study.api.slurm import job_deadline
    from study.run.runs import heartbeat_from_env, prepare_training, stored_experiment
    from study.search.resilience import Patience, retrying
    from study.search.worker import run_worker

    prepare_training()
    threads = env.threads()
    if threads is not None:
        torch.set_num_threads(threads)
    heartbeat = heartbeat_from_env()
    patience = Patience.from_env()  # refuse a bad $DYNL2_DB_PATIENCE now, not at an outage
    if deadline is None:
        deadline = job_deadline()  # asked first thing: the job's clock runs from its start
    url = storage_url(storage)
    # A worker started while the database restarts (a scheduler starting workers with the
    # server, or one joining during an outage) waits for it as it would mid-search.
    opened = retrying(lambda: _open(url, create=False), "connecting", patience=patience, note=note)
    with opened as store:
        config = retrying(
            lambda: stored_experiment(store, name),
            "reading the experiment",
            patience=patience,
            note=note,
        )
        require_device(config)  # before the studies are opened: the store may be a GPU's
        try:
            return run_worker(
                store, config, heartbeat, on_trial=on_trial, note=note, batch=batch,
                deadline=deadline,
            )  # fmt: skip
        except Exception:
            store.check_file()  # a deleted store file is the cause to name
            raise


def evaluate_experiment(
    name: str,
    *,
    storage: str | None = None,
    seeds: int | None = None,
    workers: int = 1,
    provisional: bool = False,
    say: Say = _quiet,
) -> tuple[ArmSummary, ...]:
    """Retrain each search's best configuration on ``seeds`` shared seeds (default: the
    config's; those already evaluated are kept) and score it on the test split: ``dynl2
    evaluate``. An unfinished search is refused unless ``provisional``. Returns each arm's
    test score over the seeds."""
    from study.run.runs import evaluate_searches, prepare_training, stored_experiment

    prepare_training()
    url = storage_url(storage)
    with _open(url, create=False) as store:  # a missing store or experiment: nothing written
        require_device(stored_experiment(store, name))  # the store may come from a GPU
    with _open(url) as store:  # evaluations are written: a store of an older dynl2 upgrades
        config = stored_experiment(store, name)
        evaluate_searches(
            store, config, seeds or config.evaluate.seeds, workers, say, provisional=provisional
        )
        return tuple(evaluation_summary(store, config))


def experiment_verdict(name: str, *, storage: str | None = None) -> dict[str, Any]:
    """The verdict of experiment ``name`` as its report would give it (the report's JSON:
    each arm's interval, the comparisons and their decisions, the headline in ``sentence``),
    computed from the store and written nowhere."""
    from study.run.reporting import verdict_summary

    with _open(storage_url(storage), create=False) as store:
        return verdict_summary(store, name)


def make_report(
    name: str, *, storage: str | None = None, output: str | os.PathLike[str] | None = None
) -> ReportResult:
    """Build the HTML report of experiment ``name``, keep it in the store and write it to
    ``output`` (default ``./dynl2-workspace/reports/NAME.html``), whole or not at all:
    ``dynl2 report``. The target is checked before anything is computed."""
    from study.run.reporting import write_report

    path = target_path(output or default_report_path(name))
    check_target(path)
    url = storage_url(storage)
    with _open(url, create=False) as store:
        store.get_experiment(name)  # a missing experiment: one line, nothing written
    # Writing the report needs the tables for it: open for writing (adds dynl2_reports to a
    # store made by an older dynl2).
    with _open(url) as store:
        return write_report(store, name, path)


@dataclass(frozen=True)
class ExperimentStatus:
    """What ``dynl2 status NAME`` shows."""

    config: ExperimentConfig
    counts: dict[str, ArmCounts]  # per search (``ARM`` or ``ARM/R``): trials by state
    best: dict[SearchKey, dict[str, Any]]  # each search's best trial's parameters
    summary: tuple[ArmSummary, ...] = ()  # each arm's evaluation over the seeds so far
    holders: tuple[Holder, ...] = ()  # each RUNNING trial's worker (host:pid, Slurm job)


def experiment_status(name: str, *, storage: str | None = None) -> ExperimentStatus:
    """Progress per search, each search's best parameters, the workers holding RUNNING trials,
    and the evaluation so far."""
    from study.search.keys import RESULT_ATTR, WORKER_ATTR, WORKER_JOB_ATTR

    url = storage_url(storage)
    rows = storage_layer.read_status(
        url, name, result_attr=RESULT_ATTR, holder_attrs=(WORKER_ATTR, WORKER_JOB_ATTR)
    )
    quick = None if rows is None else _quick_status(name, rows)
    if quick is not None:
        return quick
    from study.run.runs import stored_experiment

    with _open(url, create=False) as store:  # the store's own door: what the quick read is not
        config = stored_experiment(store, name)
        trials = store.trials(config.name)
        best = storage_layer.best_by_search(trials, config.direction)
        return ExperimentStatus(
            config=config,
            counts=arm_counts(store, config),
            best={key: dict(row["params"]) for key, row in sorted(best.items())},
            summary=tuple(evaluation_summary(store, config)),
            holders=tuple(holders(store, config)),
        )


def _quick_status(name: str, rows: StatusRows) -> ExperimentStatus | None:
    """The status from the rows :func:`storage.read_status` read, computed as the store's
    door computes it; None where that door must speak (a stored config that is no
    experiment's, which it calls damaged) or read more (a sequential experiment's stage,
    :func:`study.run.stages.reached`). A config this dynl2 refuses raises as it would there."""
    from study.search.keys import label, searches

    head = rows.config.get("experiment")
    if not isinstance(head, dict) or head.get("name") != name:
        return None
    config = parse_experiment(rows.config, shown=True)
    if config.search.sequential is not None:
        return None
    best = storage_layer.best_params(rows.trials, config.direction)
    held = []
    for key in searches(config):
        for trial in rows.running.get(storage_layer.study_name(config.name, *key), ()):
            held.append(_holder(label(config, key), trial.number, trial.attrs))
    return ExperimentStatus(
        config=config,
        counts=counts_of(rows.tallies, config),
        best={key: best[key] for key in sorted(best)},
        summary=tuple(rows_summary(config, rows.evaluations, best)),
        holders=tuple(held),
    )


@dataclass(frozen=True)
class Holder:
    """A RUNNING trial and the worker that holds it, as ``dynl2 status`` shows it."""

    search: str  # the search's label: ``ARM``, or ``ARM/R``
    number: int  # the trial's number in its search
    worker: str  # ``HOST:PID`` ("?" when not recorded: a claim cut short)
    job: str | None  # the Slurm job (``JOB_TASK`` or ``JOB``), None outside Slurm


def holders(store: Store, config: ExperimentConfig) -> list[Holder]:
    """Every RUNNING trial of ``config`` with its worker, by search and number. A store of an
    older dynl2 recorded ``HOST:PID`` only: shown without a job."""
    import optuna
    from optuna.trial import TrialState

    from storage import study_name
    from study.search.keys import label, searches

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = store.optuna_storage()
    out = []
    for key in searches(config):
        try:
            study_id = storage.get_study_id_from_name(study_name(config.name, *key))
        except KeyError:
            continue  # not created yet
        running = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
        out += [_holder(label(config, key), t.number, t.user_attrs) for t in running]
    return out


def _holder(search: str, number: int, attrs: Mapping[str, Any]) -> Holder:
    """The :class:`Holder` of RUNNING trial ``number`` of ``search``, from its user attributes."""
    from study.search.keys import WORKER_ATTR, WORKER_JOB_ATTR

    worker, job = attrs.get(WORKER_ATTR), attrs.get(WORKER_JOB_ATTR)
    shown = worker if isinstance(worker, str) else "?"
    return Holder(search, number, shown, job if isinstance(job, str) else None)


@dataclass(frozen=True)
class ExperimentOverview:
    """One line of ``dynl2 status`` without a name."""

    name: str
    results: int  # trials that count toward the budget, over every search
    budget: int  # n_trials × searches
    evaluations: int  # evaluation runs stored
    unreadable: str | None = None  # why its rows cannot be read (the counts are then 0)


def list_experiments(*, storage: str | None = None) -> tuple[str, list[ExperimentOverview]]:
    """``(store, overviews)``: the store's display URL (password masked) and every
    experiment in it, oldest first. One whose rows cannot be read (a damaged config, one this
    dynl2 no longer accepts) is listed with the reason in ``unreadable``, beside the others."""
    from study.run.runs import stored_experiment
    from study.run.unreadable import UnreadableExperiment, reading

    with _open(storage_url(storage), create=False) as store:
        out = []
        for name in store.experiment_list()["name"]:
            try:
                with reading(name):
                    config = stored_experiment(store, name)
                    counts = arm_counts(store, config)
                    overview = ExperimentOverview(
                        name=name,
                        results=sum(c.results for c in counts.values()),
                        budget=config.search.n_trials * len(counts),
                        evaluations=len(store.evaluations(name)),
                    )
            except ExperimentNotFound:
                continue  # deleted since the listing
            except UnreadableExperiment as exc:
                overview = ExperimentOverview(name, 0, 0, 0, unreadable=exc.reason)
            out.append(overview)
        return store.display_url, out


def experiment_trials(
    name: str, *, storage: str | None = None, arm: str | None = None
) -> pd.DataFrame:
    """One row per trial (of ``arm``, or every arm): its search, state, parameters, value and
    timing, plus the mean test metrics over the seeds where its configuration was evaluated
    (each search's current best): ``dynl2 trials``."""
    from study.run.queries import trials_with_tests
    from study.run.runs import stored_experiment

    with _open(storage_url(storage), create=False) as store:
        config = stored_experiment(store, name)
        if arm is not None and arm not in [a.name for a in config.arms]:
            arms = ", ".join(a.name for a in config.arms)
            raise UsageError(f"--arm: no arm {arm!r} in {config.name!r}; arms: {arms}")
        return trials_with_tests(store, config, arm)


def storage_url(storage_arg: str | None) -> str:
    """The store's URL: ``storage_arg``, else ``$DYNL2_STORAGE``, else the embedded default."""
    return storage_layer.resolve_url(storage_arg)


def _open(url: str, create: bool = True) -> Store:
    return storage_layer.open(url, create=create)
