"""The Optuna side of a run: one study per arm and search replicate, and the workers that fill
them.

- ``keys`` — what workers, progress lines and ``dynl2 status`` share without Optuna: the trial
  attributes dynl2 writes, a search's key and label, the heartbeat, a search's counts
- ``studies`` — opening the studies of an experiment, their names, distributions and counts
- ``samplers`` — the sampler and pruner an experiment's search section asks for
- ``optuna_adapter`` — batched asks, reports and tells over Optuna's storage (its private names
  are listed there and checked by the tests)
- ``trials`` — claiming, retrying and abandoning one trial
- ``fused`` — K trials trained together as one fused model
- ``worker`` — the loop of one worker process: ask, train, report, tell
- ``resilience`` — retries while the store is away
- ``signals`` — stop signals (SIGINT, SIGTERM) turned into a clean stop

May import :mod:`study.errors`, :mod:`study.config`, :mod:`trainers` and :mod:`storage`.
"""
