"""dynl2's study layer and public API: experiment configs, Optuna studies per arm and search
replicate, workers, evaluation, reports, and the ``dynl2`` CLI on top.

    import study

    config = study.load_experiment("examples/quick.toml")
    result = study.run_experiment(config, workers=2, say=print)
    print(result.report.path)

The rooms, from the bottom up (each room's ``__init__`` says what lives there and what it may
import; ``tests/test_import_graph.py`` holds the arrows):

- :mod:`study.errors` — the errors every room raises
- :mod:`study.config` — the experiment and suite files, read into frozen config objects
- :mod:`study.search` — the Optuna side: studies, trials, fused groups, workers
- :mod:`study.run` — an experiment's life: create or resume, evaluate, progress, report files
- :mod:`study.api` — the public functions, for experiments and for suites
- :mod:`study.service` — for a team: ``dynl2 serve``, the submit client, the agent
- :mod:`study.cli` — the ``dynl2`` command: parses, calls the API, prints

The public names are listed once, in the block below; each is imported on first use, so
importing the package stays cheap: ``python -m study`` (``study/__main__.py``) sets up its
signal handling before the seconds of importing torch and Optuna, and a script that only reads
the store never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the public API, listed once: read by _homes() below and by type checkers
    from study.api.experiments import (
        ExperimentOverview as ExperimentOverview,
    )
    from study.api.experiments import (
        ExperimentStatus as ExperimentStatus,
    )
    from study.api.experiments import (
        RunResult as RunResult,
    )
    from study.api.experiments import (
        evaluate_experiment as evaluate_experiment,
    )
    from study.api.experiments import (
        experiment_status as experiment_status,
    )
    from study.api.experiments import (
        experiment_trials as experiment_trials,
    )
    from study.api.experiments import (
        experiment_verdict as experiment_verdict,
    )
    from study.api.experiments import (
        join_experiment as join_experiment,
    )
    from study.api.experiments import (
        list_experiments as list_experiments,
    )
    from study.api.experiments import (
        make_report as make_report,
    )
    from study.api.experiments import (
        resume_experiment as resume_experiment,
    )
    from study.api.experiments import (
        run_experiment as run_experiment,
    )
    from study.api.plan import (
        make_plan as make_plan,
    )
    from study.api.suites import (
        SuiteReportResult as SuiteReportResult,
    )
    from study.api.suites import (
        SuiteRunResult as SuiteRunResult,
    )
    from study.api.suites import (
        SuiteStatus as SuiteStatus,
    )
    from study.api.suites import (
        make_suite_report as make_suite_report,
    )
    from study.api.suites import (
        run_suite as run_suite,
    )
    from study.api.suites import (
        suite_status as suite_status,
    )
    from study.cli import main as main
    from study.config.experiment import (
        ExperimentConfig as ExperimentConfig,
    )
    from study.config.experiment import (
        ExperimentConfigError as ExperimentConfigError,
    )
    from study.config.experiment import (
        load_experiment as load_experiment,
    )
    from study.config.experiment import (
        parse_experiment as parse_experiment,
    )
    from study.config.suite import (
        Suite as Suite,
    )
    from study.config.suite import (
        SuiteConfigError as SuiteConfigError,
    )
    from study.config.suite import (
        load_suite as load_suite,
    )
    from study.errors import StudyError as StudyError
    from study.errors import UsageError as UsageError
    from study.run.reporting import ReportResult as ReportResult


def _homes() -> dict[str, str]:
    """Public name -> the module that defines it, read from the ``TYPE_CHECKING`` block of this
    file (the one list of the public API; the idea of SPEC 1's lazy loading stubs). Read on
    first use, not at import: ``python -m study`` imports this package before it can install
    its signal handlers, so the package's own import stays as short as it can be."""
    import ast
    from pathlib import Path

    global _HOMES
    if _HOMES is not None:
        return _HOMES
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
    )
    _HOMES = {
        alias.asname or alias.name: node.module or ""
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    return _HOMES


_HOMES: dict[str, str] | None = None


def __getattr__(name: str) -> Any:
    if name == "__all__":  # what `from study import *` reads
        return sorted(_homes())
    home = _homes().get(name)
    if home is None:
        raise AttributeError(f"module 'study' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_homes()))
