"""dynl2's SQL store: Optuna's RDBStorage tables and ours (``dynl2_*``) on one database URL.

Knows nothing of torch. ``storage.open(url)`` gives a :class:`Store`; ``run_readonly`` is the
read-only door behind ``dynl2 sql``, and ``set_up_reader`` creates the PostgreSQL role that door
logs in as (``dynl2 sql-setup``).
"""

from storage.engine import make_engine
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
from storage.selection import best_by_search, best_trials, split_evaluations
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

__all__ = [
    "ENV_VAR",
    "EPOCH_COLUMNS",
    "EPOCH_METRICS",
    "EVALUATION_COLUMNS",
    "EVALUATION_METRICS",
    "EXPERIMENT_COLUMNS",
    "READER_URL_ENV",
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
    "backend_of",
    "best_by_search",
    "best_trials",
    "default_url",
    "first_line",
    "make_engine",
    "masked_text",
    "masked_url",
    "open",
    "resolve_url",
    "run_readonly",
    "set_up_reader",
    "split_evaluations",
    "split_study_name",
    "sqlite_path",
    "study_name",
]
