"""Replicates added until decided: the stages of ``[search] replicates = { min, max, step }``.

A sequential experiment searches and evaluates ``min`` replicates, decides with
group-sequential boundaries (:mod:`reports.sequential`, through the report's verdict), and,
while the decision is undecided and ``max`` is not reached, opens the next stage: ``step``
more replicates. Nothing new is stored to say how far it has come: the store's studies do.
The stage reached is the first stage whose count covers the highest replicate with a study
(a stage is opened by creating its studies, :func:`study.search.studies.open_studies`, before
any worker is started for it). So a stopped run resumes at its stage, and a ``dynl2 worker``
or an agent on another machine, which reads the experiment from the store, works on the same
replicates as the run that opened them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from storage import Store, split_study_name
from study.config.experiment import ExperimentConfig

__all__ = ["Stage", "next_stage", "reached", "stage_counts_of", "stage_of"]


def stage_counts_of(config: ExperimentConfig) -> tuple[int, ...]:
    """The replicate counts of the experiment's stages (one count when it is not sequential)."""
    from reports.sequential import stage_counts

    if config.search.sequential is None:
        return (config.search.replicates,)
    return stage_counts(*config.search.sequential)


def _highest_replicate(store: Store, name: str) -> int:
    """The highest replicate with a study of experiment ``name`` in the store (0: none)."""
    highest = 0
    for frozen in store.optuna_storage().get_all_studies():
        parts = split_study_name(frozen.study_name)
        if parts is not None and parts[0] == name:
            highest = max(highest, parts[2])
    return highest


def reached(store: Store, config: ExperimentConfig) -> ExperimentConfig:
    """``config`` at the stage the store has reached (itself when not sequential)."""
    if config.search.sequential is None:
        return config
    counts = stage_counts_of(config)
    highest = _highest_replicate(store, config.name)
    count = next((c for c in counts if c >= highest), counts[-1])
    if count == config.search.replicates:
        return config
    return replace(config, search=replace(config.search, replicates=count))


@dataclass(frozen=True)
class Stage:
    """Where a sequential run stands: stage ``index`` (1-based) of ``of``, at ``count``
    replicates (:func:`stage_of`)."""

    index: int
    of: int
    count: int

    def __str__(self) -> str:
        return f"stage {self.index} of {self.of} ({self.count} replicates)"


def stage_of(config: ExperimentConfig) -> Stage:
    """The stage ``config``'s replicate count is (the first when it is no stage's count)."""
    counts = stage_counts_of(config)
    count = config.search.replicates
    return Stage(counts.index(count) + 1 if count in counts else 1, len(counts), count)


def next_stage(store: Store, config: ExperimentConfig) -> ExperimentConfig | None:
    """The next stage's config when this stage is searched and evaluated and its decision
    says to go on (:attr:`reports.decision.Decision.continues`); None when the experiment is
    not sequential, is decided, or is at its last stage."""
    if config.search.sequential is None:
        return None
    from reports import build_report_verdict

    decision = build_report_verdict(store, config).decision
    if decision is None or not decision.continues:
        return None
    counts = stage_counts_of(config)
    at = counts.index(config.search.replicates) if config.search.replicates in counts else -1
    if at < 0 or at + 1 >= len(counts):
        return None
    return replace(config, search=replace(config.search, replicates=counts[at + 1]))
