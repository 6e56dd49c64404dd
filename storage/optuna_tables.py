"""Optuna's RDBStorage tables, declared only as far as dynl2 reads or references them.

Optuna creates and migrates these tables (``optuna.storages.RDBStorage``); we never do. They live
in their own ``MetaData`` so no ``create_all`` of ours can ever create a stub ``trials`` table
that would then stop Optuna from creating the real one. Column types are the portable subset:
Optuna's enum columns (``state``, ``value_type``) are native ENUM types on PostgreSQL, which
the driver returns as plain strings, so we declare them as ``String`` and never compare them in
SQL (``trialstate = varchar`` has no operator on PostgreSQL); filtering happens in pandas.
"""

from __future__ import annotations

from sqlalchemy import Column, DateTime, Double, Integer, MetaData, String, Table, Text

__all__ = [
    "OPTUNA_METADATA",
    "studies",
    "study_system_attributes",
    "trial_heartbeats",
    "trial_params",
    "trial_system_attributes",
    "trial_user_attributes",
    "trial_values",
    "trials",
]

OPTUNA_METADATA = MetaData()

studies = Table(
    "studies",
    OPTUNA_METADATA,
    Column("study_id", Integer, primary_key=True),
    Column("study_name", String(512)),
)

study_system_attributes = Table(
    "study_system_attributes",
    OPTUNA_METADATA,
    Column("study_system_attribute_id", Integer, primary_key=True),
    Column("study_id", Integer),
    Column("key", String(512)),
    Column("value_json", Text),
)

trials = Table(
    "trials",
    OPTUNA_METADATA,
    Column("trial_id", Integer, primary_key=True),
    Column("number", Integer),
    Column("study_id", Integer),
    Column("state", String(32)),
    Column("datetime_start", DateTime),  # naive UTC, as Optuna writes it
    Column("datetime_complete", DateTime),
)

trial_params = Table(
    "trial_params",
    OPTUNA_METADATA,
    Column("param_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("param_name", String(512)),
    Column("param_value", Double),  # internal repr: the value, or the index of a category
    Column("distribution_json", Text),
)

trial_values = Table(
    "trial_values",
    OPTUNA_METADATA,
    Column("trial_value_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("objective", Integer),
    Column("value", Double),  # NULL when value_type is INF_POS / INF_NEG
    Column("value_type", String(16)),
)

trial_user_attributes = Table(
    "trial_user_attributes",
    OPTUNA_METADATA,
    Column("trial_user_attribute_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("key", String(512)),
    Column("value_json", Text),
)

trial_system_attributes = Table(  # read for one key: a retry's ``failed_trial`` (storage.draws)
    "trial_system_attributes",
    OPTUNA_METADATA,
    Column("trial_system_attribute_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("key", String(512)),
    Column("value_json", Text),
)

trial_heartbeats = Table(
    "trial_heartbeats",
    OPTUNA_METADATA,
    Column("trial_heartbeat_id", Integer, primary_key=True),
    Column("trial_id", Integer),
    Column("heartbeat", DateTime),  # the database server's clock
)
