"""dynl2's study layer and public API: experiment configs, Optuna studies per arm and search
replicate, workers, evaluation, reports, and the ``dynl2`` CLI on top.

    import study

    config = study.load_experiment("examples/quick.toml")
    result = study.run_experiment(config, workers=2, say=print)
    print(result.report.path)

The functions are those of :mod:`study.api` (see there); the CLI verbs call the same ones.
Every name here is imported on first use: importing the package stays cheap, so ``python -m
study`` (``study/__main__.py``) can set up its signal handling before the seconds of importing
torch and Optuna, and a script that only reads the store never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import (
        ExperimentOverview,
        ExperimentStatus,
        RunResult,
        evaluate_experiment,
        experiment_status,
        experiment_trials,
        join_experiment,
        list_experiments,
        make_report,
        resume_experiment,
        run_experiment,
    )
    from .cli import main
    from .errors import StudyError, UsageError
    from .experiment import (
        ExperimentConfig,
        ExperimentConfigError,
        load_experiment,
        parse_experiment,
    )
    from .reporting import ReportResult
    from .suite_config import Suite, SuiteConfigError, load_suite
    from .suites import (
        SuiteReportResult,
        SuiteRunResult,
        SuiteStatus,
        make_suite_report,
        run_suite,
        suite_status,
    )

# name -> the module that defines it
_HOMES = {
    "main": "cli",
    "StudyError": "errors",
    "UsageError": "errors",
    "ExperimentConfig": "experiment",
    "ExperimentConfigError": "experiment",
    "load_experiment": "experiment",
    "parse_experiment": "experiment",
    "ReportResult": "reporting",
    "Suite": "suite_config",
    "SuiteConfigError": "suite_config",
    "load_suite": "suite_config",
    **dict.fromkeys(
        (
            "SuiteReportResult",
            "SuiteRunResult",
            "SuiteStatus",
            "make_suite_report",
            "run_suite",
            "suite_status",
        ),
        "suites",
    ),
    **dict.fromkeys(
        (
            "ExperimentOverview",
            "ExperimentStatus",
            "RunResult",
            "evaluate_experiment",
            "experiment_status",
            "experiment_trials",
            "join_experiment",
            "list_experiments",
            "make_report",
            "resume_experiment",
            "run_experiment",
        ),
        "api",
    ),
}

__all__ = [
    "ExperimentConfig",
    "ExperimentConfigError",
    "ExperimentOverview",
    "ExperimentStatus",
    "ReportResult",
    "RunResult",
    "StudyError",
    "Suite",
    "SuiteConfigError",
    "SuiteReportResult",
    "SuiteRunResult",
    "SuiteStatus",
    "UsageError",
    "evaluate_experiment",
    "experiment_status",
    "experiment_trials",
    "join_experiment",
    "list_experiments",
    "load_experiment",
    "load_suite",
    "main",
    "make_report",
    "make_suite_report",
    "parse_experiment",
    "resume_experiment",
    "run_experiment",
    "run_suite",
    "suite_status",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'study' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{home}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
