"""The experiment and suite files: one TOML reader, one frozen config model.

- ``reader`` — the TOML reader every file goes through: size and depth limits, numbers, the
  one-line errors that name the key
- ``experiment`` — :class:`ExperimentConfig` and ``load_experiment`` / ``parse_experiment``
- ``sections`` — the ``[model]``, ``[train]``, ``[search]`` and ``[evaluate]`` tables
- ``arms`` — the ``[arms.NAME]`` tables: which scheme each arm trains, and its ranges
- ``ranges`` — one searched range (``[lo, hi]``, log scale, a fixed value)
- ``search`` — the search section: samplers, pruners, budgets, replicates
- ``suite`` — the suite file: a base experiment and the matrix of factors it expands to
- ``own`` — a user's own data, model and loop: paths and code roots made absolute, the data
  read, checked and fingerprinted, the model built once on two examples
- ``env`` — the ``DYNL2_*`` environment variables, read and checked in one place

May import :mod:`study.errors`, :mod:`trainers` (the trainer's own config) and :mod:`storage`
(store URLs); no other room of :mod:`study`. Nothing here trains or writes;
``own`` reads a user's data and imports their code (and torch) only for configs that name them.
"""
