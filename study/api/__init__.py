"""The public functions of dynl2, as :mod:`study` exports them and the CLI calls them.

- ``experiments`` — run, resume, join, evaluate, report, status and trials of one experiment
- ``suites`` — run, status and report of a suite of experiments
- ``plan`` — how many replicates and seeds the next run of an experiment or suite needs
- ``launch`` — workers of an experiment submitted as a Slurm job array
- ``slurm`` — workers in a Slurm job: its time formats and the deadline they stop claiming at

May import :mod:`study.errors`, :mod:`study.config`, :mod:`study.search`, :mod:`study.run` and
the layers below :mod:`study`.
"""
