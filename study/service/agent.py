"""``dynl2 agent``: one worker that serves every experiment of a store with work left.

    summary = run_agent(storage="postgresql+psycopg://...", say=print)   # until stopped
    summary = run_agent(storage=url, once=True)        # until no experiment has work left

The agent looks at the experiments oldest first and does the first piece of work it finds: a
search with trials left to claim (it trains them as ``dynl2 worker`` does, under the same claim
lock, heartbeats and retries, and moves on when only trials others are training are left), then
an experiment whose searches are complete and whose evaluation seeds are not (evaluated under a
lock only one agent holds at a time, so two agents never train the same seeds; the lock dies with
its holder, so a killed agent's evaluation is taken over), then one whose newest report is older
than its newest evaluation (the report is written and kept in the store). Then it looks again:
a newly submitted experiment, or an older one whose work came back (a trial of a dead worker to
retry), is picked up on the next look. With nothing to do it waits ``poll`` seconds and looks
again (or, ``once``, returns). An experiment this agent cannot serve (it asks for a device this
machine lacks, or its stored config no longer validates) is said once and left to others.

In a Slurm job with a time limit (:func:`study.api.slurm.job_deadline`, as for ``dynl2
worker``), the agent takes no work once the longest group of trials it trained so far (in any
experiment) would not end by the deadline, its searches claim no such group either
(:func:`study.search.worker.fits`), and it returns with ``out_of_time``: the CLI exits 0 before
the limit. An evaluation or a report started before then runs on; the job's SIGTERM at the limit
stops what outlasts it.

SIGTERM or Ctrl-C (:mod:`study.search.signals`) raises :class:`study.search.signals.Stopped` out of
:func:`run_agent`: trials in flight are handed back for the next worker first, an evaluation
keeps the seeds it finished, and the CLI exits 143 or 130.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Literal

import storage as storage_layer
from storage import Store
from study.config import env
from study.config.experiment import ExperimentConfig, ExperimentConfigError, require_device
from study.config.own import code_problem
from study.errors import StudyError, UsageError
from study.run.files import default_report_path
from study.run.progress import arm_counts
from study.run.reporting import write_report
from study.run.runs import heartbeat_from_env, prepare_training, stored_experiment
from study.run.stages import next_stage, stage_of
from study.search import signals
from study.search.resilience import Patience, retrying
from study.search.studies import open_studies
from study.service import DEFAULT_POLL_S

__all__ = ["AgentSummary", "Work", "next_work", "run_agent", "work_left"]

WorkKind = Literal["search", "evaluate", "stage", "report"]


@dataclass(frozen=True)
class Work:
    experiment: str
    kind: WorkKind


@dataclass
class AgentSummary:
    trials: int = 0  # search trials this agent trained
    evaluations: int = 0  # evaluation runs it trained
    reports: int = 0  # reports it wrote
    served: list[str] = field(default_factory=list)  # experiments it worked on, in order
    out_of_time: bool = False  # returned because the next group would not end by the deadline
    longest: float | None = None  # seconds of the longest group of trials it trained


def _report_stale(store: Store, name: str) -> bool:
    """No report yet, or none made since the newest evaluation was recorded."""
    reports = store.reports(name)
    if reports.empty:
        return True
    evaluations = store.evaluations(name)
    if evaluations.empty:
        return False
    return bool(reports["created"].max() < evaluations["created"].max())


def work_left(store: Store, config: ExperimentConfig) -> WorkKind | None:
    """What experiment ``config`` needs next: trials, evaluation seeds, a report; or None."""
    from study.run.evaluate import pending_tasks

    n = config.search.n_trials
    if any(c.results < n for c in arm_counts(store, config).values()):
        return "search"
    if pending_tasks(store, config, config.evaluate.seeds):
        return "evaluate"
    if next_stage(store, config) is not None:  # undecided: replicates come in another stage
        return "stage"
    if _report_stale(store, config.name):
        return "report"
    return None


def next_work(
    store: Store,
    skip: Container[str] = (),
    refuse: Callable[[str, str], None] | None = None,
    allow_code: Sequence[str] = (),
) -> tuple[Work, ExperimentConfig] | None:
    """The oldest experiment (not in ``skip``) with work left, and that work. One this agent
    cannot serve (a device it lacks, code outside ``allow_code``, data that hashes differently
    here) is passed to ``refuse(name, why)`` and passed over."""
    for name in store.experiments()["name"]:
        if name in skip:
            continue
        try:
            config = stored_experiment(store, name)
            _require_servable(config, tuple(allow_code))
        except (UsageError, ExperimentConfigError) as exc:
            if refuse is not None:
                refuse(name, str(exc))
            continue
        kind = work_left(store, config)
        if kind is not None:
            return Work(name, kind), config
    return None


@functools.lru_cache(maxsize=256)
def _require_servable(config: ExperimentConfig, allow_code: tuple[str, ...]) -> None:
    """Refuse a config this agent may not or cannot run: code outside ``allow_code``, a device
    it lacks, code that does not import here, data that hashes differently here. Remembered
    when it passes (an agent looks every few seconds; reading a user's data and building their
    model each time would cost more than the look), never when it raises; the data's
    fingerprint is checked again whenever it is loaded to train."""
    problem = code_problem(config.to_dict(), allow_code)
    if problem is not None:
        raise UsageError(problem)
    require_device(config)


def run_agent(
    *,
    storage: str | None = None,
    batch: int | None = None,
    index: int | None = None,
    poll: float = DEFAULT_POLL_S,
    once: bool = False,
    say: Callable[[str], None] = lambda line: None,
    allow_code: Sequence[str] = (),
    deadline: float | None = None,
) -> AgentSummary:
    """Serve the store's experiments until stopped (or, ``once``, until none has work left).
    An experiment that names code runs only if its modules are under ``allow_code``
    (module-name prefixes: ``--allow-code``). ``index`` (``--index``) changes nothing: every
    worker draws trial k alike (:func:`study.search.studies.search_seed`). With a ``deadline``
    (``time.time()`` seconds; in a Slurm job with a time limit, by default, its end less a
    margin), no work is taken and no group claimed that would not end by it, and the summary
    says ``out_of_time``."""
    import torch

    from study.api.slurm import job_deadline
    from study.run.evaluate import evaluate
    from study.search.worker import fits, run_worker

    if deadline is None:
        deadline = job_deadline()  # asked first thing: the job's clock runs from its start
    prepare_training()
    threads = env.threads()
    if threads is not None:
        torch.set_num_threads(threads)
    heartbeat = heartbeat_from_env()
    patience = Patience.from_env()
    url = storage_layer.resolve_url(storage)
    summary = AgentSummary()
    refused: dict[str, str] = {}  # experiments this agent cannot serve, said once
    later: dict[str, float] = {}  # experiments to look at again after a time: others' work

    def refuse(name: str, why: str) -> None:
        if name not in refused:
            refused[name] = why
            say(f"agent: leaving {name} to others: {why}")

    store = retrying(
        lambda: storage_layer.open(url, create=False), "connecting", patience=patience, note=say
    )
    with store:
        idle_said = False
        while True:
            signals.check()
            if not fits(time.time(), deadline, summary.longest):
                summary.out_of_time = True
                return summary
            now = time.monotonic()
            skip = set(refused) | {name for name, at in later.items() if at > now}
            found = retrying(
                functools.partial(next_work, store, skip, refuse, allow_code),
                "looking for work",
                note=say,
            )
            if found is None:
                if once and not any(at > now for at in later.values()):
                    return summary
                if not idle_said:
                    say("agent: no work left; waiting for more")
                    idle_said = True
                time.sleep(poll)
                continue
            idle_said = False
            work, config = found
            if not summary.served or summary.served[-1] != work.experiment:
                summary.served.append(work.experiment)
            if work.kind == "search":
                say(f"agent: {work.experiment}: searching")
                try:
                    done = run_worker(
                        store, config, heartbeat, note=say, batch=batch,
                        linger=False, deadline=deadline, estimate=summary.longest,
                    )  # fmt: skip
                except UsageError as exc:  # a study dynl2 did not make, under its name
                    refuse(work.experiment, str(exc))
                    continue
                summary.trials += done.total
                summary.longest = done.longest  # the estimate passed in, or a longer group
                if done.out_of_time:
                    summary.out_of_time = True
                    return summary
                if done.waiting:  # the last trials are others': look again later
                    later[work.experiment] = time.monotonic() + poll
            elif work.kind == "stage":
                following = next_stage(store, config)
                if following is not None:  # another agent may have opened it: idempotent
                    say(f"agent: {work.experiment}: undecided at {stage_of(config)}; opening "
                        f"{stage_of(following)}")  # fmt: skip
                    open_studies(store, following, heartbeat)
            elif work.kind == "evaluate":
                with store.try_lock(f"evaluate:{work.experiment}") as mine:
                    if not mine:  # another agent evaluates it
                        later[work.experiment] = time.monotonic() + poll
                        continue
                    say(f"agent: {work.experiment}: evaluating")
                    try:
                        summary.evaluations += evaluate(
                            store, config, config.evaluate.seeds, workers=1, batch=batch
                        )
                    except UsageError as exc:
                        refuse(work.experiment, str(exc))
            else:
                with store.try_lock(f"report:{work.experiment}") as mine:
                    if not mine:
                        later[work.experiment] = time.monotonic() + poll
                        continue
                    if not _report_stale(store, work.experiment):  # another agent just wrote it
                        continue
                    try:
                        result = write_report(
                            store, work.experiment, default_report_path(work.experiment)
                        )
                    except StudyError as exc:  # say, and leave it to others
                        refuse(work.experiment, f"its report cannot be written: {exc}")
                        continue
                    summary.reports += 1
                    say(f"agent: {work.experiment}: report {result.path}")
