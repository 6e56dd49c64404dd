"""The store: dynl2's tables and Optuna's RDBStorage on one database URL, as one object,
:class:`Store`, that every other layer reads and writes through.

Read it in this order:

- ``opening`` — :func:`open` and :class:`Store`: open a URL, create or upgrade dynl2's tables
  (:mod:`storage.migrations`), or, read-only, only check them
- ``base`` — what every method stands on: the engine, one transaction per call
  (``_session``: commit, roll back, driver errors turned into :class:`StorageError`), the
  named lock, Optuna's storage on the same engine
- ``reads`` — what the store answers: experiments, trials, epochs, evaluations, reports,
  suites, as frozen records or DataFrames with fixed columns
- ``rows`` — the queries behind those answers, and the rows turned into frames and records
  (a row it cannot read is named as damaged, never guessed at)
- ``writes`` — what the store records: experiments, epochs, evaluations, reports, suites,
  each validated before it is written

:class:`Store` is ``writes`` and ``reads`` over ``base`` (two mixins on one base class): a
method is found in the module its verb names. May import the rest of :mod:`storage`, never a
layer above it.
"""

from storage.store.base import StoreVanished
from storage.store.opening import Store, open

__all__ = ["Store", "StoreVanished", "open"]
