"""The names every worker, the progress display and ``dynl2 status`` share about an
experiment's searches, without Optuna: the trial attributes dynl2 writes, a search's key and
label, how often a heartbeat beats, and what the counts of a search's trials hold.
:mod:`study.search.studies` (which imports Optuna) gives them too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from study.config.experiment import ArmConfig, ExperimentConfig

__all__ = [
    "BEST_EPOCH_ATTR",
    "CONFIG_ATTR",
    "DIVERGED",
    "REASON_ATTR",
    "RESULT_ATTR",
    "WORKER_ATTR",
    "WORKER_JOB_ATTR",
    "ArmCounts",
    "Heartbeat",
    "SearchKey",
    "label",
    "searched_arms",
    "searches",
]

RESULT_ATTR = "dynl2_result"  # user attr: "complete" | "pruned" | "diverged", set by dynl2
REASON_ATTR = "fail_reason"  # user attr: why a trial failed, one line
BEST_EPOCH_ATTR = "best_epoch"
CONFIG_ATTR = "config"  # user attr: the resolved trainer config of the trial
WORKER_ATTR = "dynl2_worker"  # user attr: "HOST:PID" of the worker that claimed the trial last
# user attr, beside WORKER_ATTR under Slurm: that worker's job, "JOB_TASK" (an array's task) or
# "JOB"; stores of an older dynl2 have WORKER_ATTR alone
WORKER_JOB_ATTR = "dynl2_worker_job"

DIVERGED = "diverged"


@dataclass(frozen=True)
class Heartbeat:
    """How often a running trial proves its worker is alive, and when it is declared dead."""

    interval: int = 10  # seconds between heartbeats
    grace: int = 60  # seconds without one before a RUNNING trial is failed and retried;
    # above SQLite's 30 s busy timeout, so a heartbeat write kept waiting by a lock never
    # makes a live trial look dead


@dataclass(frozen=True)
class ArmCounts:
    complete: int
    pruned: int
    diverged: int
    lost: int  # FAIL without being a result: worker died or crashed
    running: int
    waiting: int  # retries queued for any worker
    best: float | None
    # What the claim reads for [search] reproducible (worker._free), from the study's trials;
    # not counts: left out of equality, so study.run.progress's SQL counts compare equal.
    # In draws (storage.draws: trials counted without retries, a retry has its original's).
    asked: int = field(default=0, compare=False)  # draws so far: the next new trial's draw
    first_open: int | None = field(default=None, compare=False)  # lowest RUNNING/WAITING draw

    @property
    def results(self) -> int:
        return self.complete + self.pruned + self.diverged

    @property
    def in_flight(self) -> int:
        return self.running + self.waiting


def searched_arms(config: ExperimentConfig) -> list[ArmConfig]:
    """Arms with something to search; the others are trained only in the final evaluation."""
    return [arm for arm in config.arms if config.searched(arm.name)]


# One search: an arm and which of its replicates (1 .. [search] replicates).
SearchKey = tuple[str, int]


def searches(config: ExperimentConfig) -> list[SearchKey]:
    """Every search of the experiment: each searched arm once per replicate, replicate-major
    (all arms of replicate 1 first)."""
    arms = [arm.name for arm in searched_arms(config)]
    return [(arm, r) for r in range(1, config.search.replicates + 1) for arm in arms]


def label(config: ExperimentConfig, key: SearchKey) -> str:
    """How progress lines and messages name a search: the arm, and ``ARM/R`` once there is
    more than one replicate."""
    arm, replicate = key
    return arm if config.search.replicates == 1 else f"{arm}/{replicate}"
