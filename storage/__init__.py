"""dynl2's SQL store: Optuna's RDBStorage tables and ours (``dynl2_*``) on one database URL.

Knows nothing of torch. ``storage.open(url)`` gives a :class:`Store`; ``run_readonly`` is the
read-only door behind ``dynl2 sql``, and ``set_up_reader`` creates the PostgreSQL role that door
logs in as (``dynl2 sql-setup``); ``read_status`` reads what ``dynl2 status NAME`` shows of a
store in the common case, with SQLAlchemy alone; ``trial_draws`` says where each trial stands in
its search, retries not counted (``storage.draws``).

The names are imported when first asked for (PEP 562), as ``trainers`` does: the modules behind
them import SQLAlchemy, Optuna and pandas, and a verb that only reads a query's rows (``dynl2
sql``), or only parses its flags (``--help``), should not wait for all of them.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the same names, for type checkers; at run time __getattr__ imports them
    from storage.draws import (
        RETRY_OF,
        draw_count,
        draws_of,
        numbered_draws,
        retry_of,
        study_draws,
        trial_draws,
    )
    from storage.engine import (
        PGBOUNCER_ENV,
        PROCESS_CONNECTIONS,
        application_name,
        make_engine,
        set_process_kind,
    )
    from storage.errors import (
        ExperimentConflict,
        ExperimentNotFound,
        InvalidRecord,
        QueryError,
        QueryTimeout,
        ReaderLoginError,
        ReadOnlyViolation,
        ReportNotFound,
        StorageError,
        StorageUnavailable,
        StorageURLError,
        SuiteConflict,
        SuiteNotFound,
    )
    from storage.pg_reader import READER_URL_ENV, ReaderSetup, set_up_reader
    from storage.readonly import QueryResult, run_readonly
    from storage.readonly_status import StatusRows, read_status
    from storage.records import (
        EPOCH_COLUMNS,
        EPOCH_METRICS,
        EVALUATION_COLUMNS,
        EVALUATION_METRICS,
        EXPERIMENT_COLUMNS,
        STUDY_MARK,
        TRIAL_COLUMNS,
        ExperimentInfo,
        StoredReport,
        SuiteInfo,
        SuiteMember,
        Tally,
        split_study_name,
        study_name,
    )
    from storage.schema import SCHEMA_VERSION
    from storage.selection import (
        best_by_search,
        best_params,
        best_trials,
        is_current,
        split_evaluations,
    )
    from storage.store import Store, open
    from storage.urls import (
        ENV_VAR,
        backend_of,
        default_url,
        first_line,
        masked_text,
        masked_url,
        resolve_url,
        sqlite_path,
    )

# The module of each public name (tests/study/test_cli_startup.py checks it matches __all__).
_MODULES: dict[str, tuple[str, ...]] = {
    "engine": (
        "PGBOUNCER_ENV",
        "PROCESS_CONNECTIONS",
        "application_name",
        "make_engine",
        "set_process_kind",
    ),
    "errors": (
        "ExperimentConflict",
        "ExperimentNotFound",
        "InvalidRecord",
        "QueryError",
        "QueryTimeout",
        "ReaderLoginError",
        "ReadOnlyViolation",
        "ReportNotFound",
        "StorageError",
        "StorageUnavailable",
        "StorageURLError",
        "SuiteConflict",
        "SuiteNotFound",
    ),
    "draws": (
        "RETRY_OF",
        "draw_count",
        "draws_of",
        "numbered_draws",
        "retry_of",
        "study_draws",
        "trial_draws",
    ),
    "pg_reader": ("READER_URL_ENV", "ReaderSetup", "set_up_reader"),
    "readonly": ("QueryResult", "run_readonly"),
    "readonly_status": ("StatusRows", "read_status"),
    "records": (
        "EPOCH_COLUMNS",
        "EPOCH_METRICS",
        "EVALUATION_COLUMNS",
        "EVALUATION_METRICS",
        "EXPERIMENT_COLUMNS",
        "STUDY_MARK",
        "TRIAL_COLUMNS",
        "ExperimentInfo",
        "StoredReport",
        "SuiteInfo",
        "SuiteMember",
        "Tally",
        "split_study_name",
        "study_name",
    ),
    "schema": ("SCHEMA_VERSION",),
    "selection": (
        "best_by_search",
        "best_params",
        "best_trials",
        "is_current",
        "split_evaluations",
    ),
    "store": ("Store", "open"),
    "urls": (
        "ENV_VAR",
        "backend_of",
        "default_url",
        "first_line",
        "masked_text",
        "masked_url",
        "resolve_url",
        "sqlite_path",
    ),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> object:
    module = _HOME.get(name)
    if module is None:
        # A submodule (``storage.urls``), reachable as when this file imported them all.
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # the next lookup finds it without coming here
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "ENV_VAR",
    "EPOCH_COLUMNS",
    "EPOCH_METRICS",
    "EVALUATION_COLUMNS",
    "EVALUATION_METRICS",
    "EXPERIMENT_COLUMNS",
    "PGBOUNCER_ENV",
    "PROCESS_CONNECTIONS",
    "READER_URL_ENV",
    "RETRY_OF",
    "SCHEMA_VERSION",
    "STUDY_MARK",
    "TRIAL_COLUMNS",
    "ExperimentConflict",
    "ExperimentInfo",
    "ExperimentNotFound",
    "InvalidRecord",
    "QueryError",
    "QueryResult",
    "QueryTimeout",
    "ReadOnlyViolation",
    "ReaderLoginError",
    "ReaderSetup",
    "ReportNotFound",
    "StatusRows",
    "StorageError",
    "StorageURLError",
    "StorageUnavailable",
    "Store",
    "StoredReport",
    "SuiteConflict",
    "SuiteInfo",
    "SuiteMember",
    "SuiteNotFound",
    "Tally",
    "application_name",
    "backend_of",
    "best_by_search",
    "best_params",
    "best_trials",
    "default_url",
    "draw_count",
    "draws_of",
    "first_line",
    "is_current",
    "make_engine",
    "masked_text",
    "masked_url",
    "numbered_draws",
    "open",
    "read_status",
    "resolve_url",
    "retry_of",
    "run_readonly",
    "set_process_kind",
    "set_up_reader",
    "split_evaluations",
    "split_study_name",
    "sqlite_path",
    "study_draws",
    "study_name",
    "trial_draws",
]
