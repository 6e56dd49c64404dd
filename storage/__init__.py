"""dynl2's SQL store: Optuna's RDBStorage tables and ours (``dynl2_*``) on one database URL.

Knows nothing of torch. ``storage.open(url)`` gives a :class:`Store`; ``run_readonly`` is the
read-only door behind ``dynl2 sql``.
"""

from storage.engine import make_engine
from storage.errors import (
    ExperimentConflict,
    ExperimentNotFound,
    InvalidRecord,
    QueryError,
    QueryTimeout,
    ReadOnlyViolation,
    ReportNotFound,
    StorageError,
    StorageUnavailable,
    StorageURLError,
)
from storage.readonly import QueryResult, run_readonly
from storage.records import (
    EPOCH_COLUMNS,
    EPOCH_METRICS,
    EVALUATION_COLUMNS,
    EVALUATION_METRICS,
    EXPERIMENT_COLUMNS,
    TRIAL_COLUMNS,
    ExperimentInfo,
    Tally,
    split_study_name,
    study_name,
)
from storage.schema import SCHEMA_VERSION
from storage.store import Store, open
from storage.urls import ENV_VAR, backend_of, default_url, masked_url, resolve_url, sqlite_path

__all__ = [
    "ENV_VAR",
    "EPOCH_COLUMNS",
    "EPOCH_METRICS",
    "EVALUATION_COLUMNS",
    "EVALUATION_METRICS",
    "EXPERIMENT_COLUMNS",
    "SCHEMA_VERSION",
    "TRIAL_COLUMNS",
    "ExperimentConflict",
    "ExperimentInfo",
    "ExperimentNotFound",
    "InvalidRecord",
    "QueryError",
    "QueryResult",
    "QueryTimeout",
    "ReadOnlyViolation",
    "ReportNotFound",
    "StorageError",
    "StorageURLError",
    "StorageUnavailable",
    "Store",
    "Tally",
    "backend_of",
    "default_url",
    "make_engine",
    "masked_url",
    "open",
    "resolve_url",
    "run_readonly",
    "split_study_name",
    "sqlite_path",
    "study_name",
]
