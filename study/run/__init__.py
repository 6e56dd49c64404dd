"""An experiment's life in the store, around the search: create or resume it, start its
workers, evaluate the best configurations, follow its progress, write its report.

- ``runs`` — create or resume an experiment, start and watch worker processes
- ``evaluate`` — the best configuration of each search retrained on shared seeds
- ``progress`` — counts per arm and search, the progress lines of a run, the verdict it ends with
- ``stages`` — the stage a sequential experiment has reached, and whether it goes on
- ``queries`` — the trials of an experiment with their test scores; a DataFrame as CSV or JSON
- ``reporting`` — building and writing the HTML report of an experiment
- ``files`` — where output files go, and writing them safely
- ``unreadable`` — an experiment the store holds but cannot read, described in one line

May import :mod:`study.errors`, :mod:`study.config`, :mod:`study.search`, :mod:`trainers`,
:mod:`storage` and :mod:`reports`.
"""
