"""Suites: a family of experiments from one suite file, run into one store and summarized
across: ``dynl2 suite run | status | report``.

A suite file (:mod:`study.config.suite`) expands to named experiments, each an ordinary
experiment in the store (``dynl2 status``, ``report``, ``worker`` and optuna-dashboard see them
as any other). The store keeps the suite itself too — its definition and its experiments in
order, with the matrix values each takes — so ``status`` and ``report`` need only its name.

:func:`run_suite` validates every expanded experiment, and checks each against what the store
already holds, before anything is written; then it runs them one after another with
:func:`study.api.experiments.run_experiment`, which resumes what a stopped run left (a
finished experiment costs a look and its report, nothing is trained twice), and ends with the
suite report. Workers on other machines join an experiment of the suite as they join any:
``dynl2 worker NAME``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import storage as storage_layer
from storage import Store
from study.api import experiments as api
from study.config.experiment import ExperimentConfig, require_device
from study.config.suite import Suite, SuiteConfigError, load_suite
from study.run.files import bounded_name, check_target, default_report_path, target_path
from study.run.progress import experiment_progress
from study.run.reporting import keep_and_write
from study.run.runs import resume_problem, stored_experiment

if TYPE_CHECKING:
    from reports import SuiteInput

__all__ = [
    "SuiteExperimentStatus",
    "SuiteReportResult",
    "SuiteRunResult",
    "SuiteStatus",
    "make_suite_report",
    "run_suite",
    "suite_status",
]

Say = api.Say


@dataclass(frozen=True)
class SuiteReportResult:
    path: Path  # the HTML file
    seconds: float
    summary: dict[str, Any]  # the numbers (what `dynl2 suite report --json` prints)


@dataclass(frozen=True)
class SuiteRunResult:
    name: str
    runs: tuple[api.RunResult, ...]  # one per experiment, in the suite's order
    report: SuiteReportResult | None  # None when an experiment's search is short

    @property
    def complete(self) -> bool:
        return all(run.complete for run in self.runs)


@dataclass(frozen=True)
class SuiteExperimentStatus:
    experiment: str
    factors: dict[str, Any]
    state: str  # "not started", "searching", "evaluating" or "done"
    results: int  # trials counted toward the budget, over every search
    budget: int
    evaluations: int  # evaluation runs stored
    planned: int  # evaluation runs the experiment asks for (searches × seeds)


@dataclass(frozen=True)
class SuiteStatus:
    name: str
    created: str
    experiments: tuple[SuiteExperimentStatus, ...]


def default_suite_report_path(name: str) -> Path:
    """``./dynl2-workspace/reports/suites/NAME.html``: beside the experiments' reports, in a
    folder of its own so that a suite and an experiment of one name never share a file."""
    return Path.cwd() / "dynl2-workspace" / "reports" / "suites" / bounded_name(name, ".html")


def run_suite(
    path: str | os.PathLike[str],
    *,
    storage: str | None = None,
    workers: int = 1,
    batch: int | None = None,
    confirmed: bool = False,
    say: Say = api._quiet,
    note: Say = api._quiet,
) -> SuiteRunResult:
    """Validate the suite at ``path`` whole, record it, run each of its experiments (resuming
    any a stopped run left) and write the suite report: ``dynl2 suite run``. ``confirmed``
    allows a suite of more than :data:`study.config.suite.MAX_WITHOUT_YES` experiments."""
    suite = load_suite(path, confirmed=confirmed)
    for member in suite.experiments:
        require_device(member.config)
    report = target_path(default_suite_report_path(suite.name))
    check_target(report)
    url = api.storage_url(storage)
    with storage_layer.open(url) as store:
        problems = [
            f"experiment {m.name!r}: {problem}"
            for m in suite.experiments
            if (problem := resume_problem(store, m.config)) is not None
        ]
        if problems:
            raise SuiteConfigError(problems)
        definition = {"factors": list(suite.factors), "file": suite.document}
        store.create_suite(suite.name, definition, _members(suite))
        say(
            f"dynl2 suite: {suite.name!r} in {store.display_url}: "
            f"{len(suite.experiments)} experiments"
        )
    runs: list[api.RunResult] = []
    for i, member in enumerate(suite.experiments, start=1):
        say(f"dynl2 suite: experiment {i}/{len(suite.experiments)}: {member.name}")
        run = api.run_experiment(
            member.config, storage=url, workers=workers, batch=batch, say=say, note=note
        )
        runs.append(run)
        if run.report is not None:  # each experiment's own headline, as it ends
            say(f"dynl2 suite: {member.name}: {run.report.summary.get('sentence', '')}")
    if not all(run.complete for run in runs):
        return SuiteRunResult(suite.name, tuple(runs), None)
    return SuiteRunResult(suite.name, tuple(runs), make_suite_report(suite.name, storage=url))


def suite_status(name: str, *, storage: str | None = None) -> SuiteStatus:
    """Each experiment of suite ``name``, in order: its values and how far it got."""
    with storage_layer.open(api.storage_url(storage), create=False) as store:
        info = store.suite(name)
        names = set(store.experiments()["name"])
        rows = []
        for member in info.members:
            if member.experiment not in names:
                rows.append(_not_started(member.experiment, member.factors))
                continue
            config = stored_experiment(store, member.experiment)
            rows.append(_progress(store, config, member.factors))
        return SuiteStatus(info.name, info.created.isoformat(timespec="seconds"), tuple(rows))


def make_suite_report(
    name: str, *, storage: str | None = None, output: str | os.PathLike[str] | None = None
) -> SuiteReportResult:
    """Build the report across suite ``name``'s experiments, keep it in the store and write
    it to ``output`` (default :func:`default_suite_report_path`): ``dynl2 suite report``."""
    from reports import build_suite_data, render_suite_html, suite_json

    started = time.perf_counter()
    path = target_path(output or default_suite_report_path(name))
    check_target(path)
    url = api.storage_url(storage)
    with storage_layer.open(url, create=False) as store:
        store.suite(name)  # an unknown suite: one line, nothing written
    with storage_layer.open(url) as store:
        data = build_suite_data(suite_input(store, name, path))
        html = render_suite_html(data)
        numbers = suite_json(data)
        keep_and_write(
            path,
            html,
            lambda: store.record_suite_report(name, str(path), numbers, html),
            f"`dynl2 suite report {name} -o FILE` makes it again",
        )
    return SuiteReportResult(path, time.perf_counter() - started, numbers)


def suite_input(store: Store, name: str, report_path: Path) -> SuiteInput:
    """What the suite report is built from: each experiment's differences against its fixed
    arm (as its own report computes them), and a link to its own report when it was written."""
    from reports import SuiteEntry, SuiteInput, build_report_verdict

    info = store.suite(name)
    names = set(store.experiments()["name"])
    entries = []
    unit, higher, main, baseline = "points", True, "dynamic", "fixed"
    margin: float | None = None  # the members share the base's [evaluate] margin
    for member in info.members:
        if member.experiment not in names:
            entries.append(SuiteEntry(member.experiment, member.factors, {}, None, "not started"))
            continue
        config = stored_experiment(store, member.experiment)
        verdict = build_report_verdict(store, config)
        unit, higher = verdict.unit, verdict.higher_is_better
        main = verdict.dynamic_arm or main
        baseline = verdict.fixed_arm or baseline
        own = default_report_path(member.experiment)  # where `dynl2 suite run` wrote it
        entries.append(
            SuiteEntry(
                member.experiment,
                member.factors,
                {c.arm: c.diff for c in verdict.comparisons},
                os.path.relpath(own, report_path.parent) if own.exists() else None,
                None if verdict.comparisons else "no comparison against a fixed arm yet",
                {
                    c.arm: d.decision
                    for c, d in zip(verdict.comparisons, verdict.decisions, strict=True)
                },
            )
        )
        margin = config.evaluate.margin if margin is None else margin
    return SuiteInput(
        name=info.name,
        factors=tuple(info.definition.get("factors", ())),
        entries=tuple(entries),
        main_arm=main,
        unit=unit,
        higher_is_better=higher,
        baseline=baseline,
        margin=margin,
        generated=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    )


def _members(suite: Suite) -> list[tuple[str, Mapping[str, Any]]]:
    return [(m.name, dict(m.factors)) for m in suite.experiments]


def _progress(
    store: Store, config: ExperimentConfig, factors: dict[str, Any]
) -> SuiteExperimentStatus:
    p = experiment_progress(store, config)
    return SuiteExperimentStatus(
        config.name, factors, p.state, p.results, p.budget, p.evaluations, p.planned
    )


def _not_started(experiment: str, factors: dict[str, Any]) -> SuiteExperimentStatus:
    return SuiteExperimentStatus(experiment, factors, "not started", 0, 0, 0, 0)
