"""The ``dynl2`` command: argument parsing and printing only; every verb calls a function of
:mod:`study.api` (or :mod:`study.service`) and prints what it returns.

- ``dispatch`` — :func:`main`: the parser, the verbs' table, the one-line errors and exit statuses
- ``args`` — the flags verbs share
- ``experiments`` — run, worker, evaluate, status, trials, sql
- ``reports`` — report, reports
- ``plan`` — plan: replicates and seeds for the next run
- ``suites`` — suite run | status | report
- ``train`` — train: one training run without a store
- ``sql_setup`` — sql-setup: the read-only role on PostgreSQL
- ``demo`` — demo
- ``serve`` — serve and submit
- ``agent`` — agent
- ``launch`` — launch: workers of an experiment on a cluster (a Slurm job array)

May import every room of :mod:`study`; nothing imports it but :mod:`study.__main__`.
"""

from study.cli.dispatch import main

__all__ = ["main"]
