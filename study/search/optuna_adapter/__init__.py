"""Every private Optuna name dynl2 uses, in this one package; and the calls a fused group makes
for all its trials at once: reports, asks and tells.

- ``names`` — :data:`PRIVATE_NAMES`, each private name with what it is used for, and the
  accessors other modules read a trial's id, a study's storage or its heartbeats through
  (:func:`trial_id_of`, :func:`storage_of`, :func:`record_heartbeat`, ...)
- ``history`` — :class:`History`, the study as trial k sees it under ``[search] reproducible``
- ``asks`` — :func:`ask_many`: a fused group's trials asked as Optuna asks them one by one, in
  a few transactions
- ``batch`` — :func:`report_many`, :func:`set_user_attrs_many`, :func:`tell_many`: several
  trials' reports, attributes and tells in one transaction each, storing what Optuna's
  one-at-a-time calls store

Optuna keeps no promise about its private names, so ``tests/study/test_optuna_adapter.py``
checks that the installed Optuna still has every listed one (naming the one gone and the
version), that this package uses no other, and that no module outside it touches one.
"""

from study.search.optuna_adapter.asks import ask_many
from study.search.optuna_adapter.batch import (
    Report,
    Tell,
    report_many,
    set_user_attrs_many,
    tell_many,
)
from study.search.optuna_adapter.history import History, lagged
from study.search.optuna_adapter.names import (
    PRIVATE_NAMES,
    PrivateName,
    heartbeat_interval,
    latest_trial,
    rdb_of,
    record_heartbeat,
    storage_of,
    trial_id_of,
    trials_seen,
)

__all__ = [
    "PRIVATE_NAMES",
    "History",
    "PrivateName",
    "Report",
    "Tell",
    "ask_many",
    "heartbeat_interval",
    "lagged",
    "latest_trial",
    "rdb_of",
    "record_heartbeat",
    "report_many",
    "set_user_attrs_many",
    "storage_of",
    "tell_many",
    "trial_id_of",
    "trials_seen",
]
