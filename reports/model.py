"""The plain, frozen objects a report is made of: numbers, tables and statistics, no HTML.

:func:`reports.build_report_data` fills them from the store; :mod:`reports.render` draws them.
Values are in the store's units except where a field says otherwise: the verdict's test metric
is in percentage points for accuracy (``ReportData.accuracy``) and raw test loss otherwise.
Missing numbers are ``None`` in scalars and NaN inside plotted series.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reports.stats import MeanCI, Paired, ci_text, units_text

if TYPE_CHECKING:  # annotations only: their modules import SciPy, which ArmResult.text needs not
    from reports.budget import BudgetPoint
    from reports.decision import Decision
    from reports.replicates import Components


@dataclass(frozen=True)
class ArmResult:
    """One arm's final evaluation: the test metric over evaluation seeds."""

    arm: str
    scheme: str
    ci: MeanCI | None  # None without any finite evaluation
    n_failed: int  # evaluations without a finite test metric (diverged)
    by_seed: Mapping[int, float] = field(hash=False)  # seed -> test metric (display unit),
    # of replicate 1
    runs: tuple[float, ...] = ()  # every run's test metric: each replicate's seeds
    # Each replicate's mean, when there are 2 or more (the interval is over them): what the
    # verdict shows in place of an interval when they are too few for one.
    means: tuple[float, ...] = ()

    def text(self, digits: int) -> str:
        """The arm's result as the report, the terminal and the service show it: the mean
        and its interval (:func:`reports.stats.ci_text`), or, with too few replicates for an
        interval, the mean and each replicate's own."""
        shown = ci_text(self.ci, digits)
        if self.ci is not None and self.ci.low is None and self.means:
            shown += " " + units_text(self.means, digits)
        return shown


@dataclass(frozen=True)
class Verdict:
    metric: str  # "test_acc" or "test_loss"
    unit: str  # "points" (percentage points of accuracy) or "" (test loss)
    higher_is_better: bool
    arms: tuple[ArmResult, ...]
    dynamic_arm: str | None  # the first arm whose scheme is "dynamic"
    fixed_arm: str | None  # the first arm whose scheme is "fixed"
    main: Paired | None  # dynamic − fixed, paired by seed
    comparisons: tuple[Paired, ...]  # every arm but the fixed one − fixed
    comparison_sentences: tuple[str, ...]  # one per comparison
    sentence: str  # the answer, one plain sentence
    basis: str  # how many seeds and trials it rests on
    warnings: tuple[str, ...]
    # The searched arms short of their budget, as "arm k/n" (empty: the search is done). A
    # verdict on an unfinished search is provisional: the best configurations may change.
    unfinished: tuple[str, ...] = ()
    stale: int = 0  # stored evaluations of an earlier best configuration, left out
    # Searches per arm the main comparison rests on (1: one search, the interval covers the
    # evaluation seeds only) and how the interval was made (reports.replicates).
    replicates: int = 1
    seeds: int = 0  # distinct evaluation seeds the main comparison pairs
    components: Components | None = None  # of the main difference: search and seed sd
    method: str = "seeds only"
    # One decision per comparison (reports.decision), and the main comparison's.
    decisions: tuple[Decision, ...] = ()
    decision: Decision | None = None
    margin: float | None = None  # [evaluate] margin, in the verdict's unit
    # The main comparison's paired differences by replicate (what dynl2 plan reads)
    differences: Mapping[int, tuple[float, ...]] = field(default_factory=dict, hash=False)
    # Each comparison's replicate means of the difference, by replicate (what stands in for
    # an interval below MIN_UNITS replicates); empty with one search.
    replicate_differences: tuple[tuple[float, ...], ...] = ()

    @property
    def digits(self) -> int:
        """Decimals the verdict's numbers are shown with: 2 for accuracy points, 4 for a loss."""
        return 2 if self.metric == "test_acc" else 4


@dataclass(frozen=True)
class SearchSpace:
    name: str
    low: float
    high: float
    log: bool
    step: float | None


@dataclass(frozen=True)
class ArmSetup:
    arm: str
    scheme: str
    settings: Mapping[str, Any] = field(hash=False)  # the arm's fixed scheme settings
    spaces: tuple[SearchSpace, ...] = ()  # what is searched (train ranges included)
    budget: int = 0  # trials per the config (0: trained only in the final evaluation)
    trials: int = 0  # trials in the store
    trial_seconds: float = 0.0  # sum of trial durations
    eval_seconds: float = 0.0  # sum of evaluation seconds
    devices: tuple[str, ...] = ()  # from the trials' resolved `config` user attribute
    # Which reading of the dynamic scheme's source the arm tests (dynamic schemes only):
    # reports.experiment_setup.reading
    reading: str | None = None

    @property
    def compute_seconds(self) -> float:
        return self.trial_seconds + self.eval_seconds


@dataclass(frozen=True)
class Setup:
    data: Mapping[str, Any] = field(hash=False)
    model: Mapping[str, Any] = field(hash=False)
    train: Mapping[str, Any] = field(hash=False)  # fixed settings and ranges, as stored
    sampler: str = ""
    pruner: str = ""
    metric: str = ""  # the validation metric searched
    n_trials: int = 0  # per searched arm
    replicates: int = 1  # independent searches of every arm ([search] replicates)
    seeds: int = 0  # evaluation seeds asked for
    arms: tuple[ArmSetup, ...] = ()
    hardware: Mapping[str, str] = field(default_factory=dict, hash=False)  # the report's host
    versions: Mapping[str, str] = field(default_factory=dict, hash=False)
    config_toml: str = ""
    command: str = ""
    reproducibility: str = ""  # what a rerun of the config reproduces, and what it does not


@dataclass(frozen=True)
class Failure:
    number: int
    reason: str


@dataclass(frozen=True)
class ArmSearch:
    arm: str
    numbers: tuple[int, ...]  # complete trials with a value, by number
    values: tuple[float, ...]
    best_so_far: tuple[float, ...]
    counts: Mapping[str, int] = field(hash=False)  # state -> trials
    failures: tuple[Failure, ...] = ()


@dataclass(frozen=True)
class Search:
    metric: str
    direction: str  # "maximize" or "minimize"
    arms: tuple[ArmSearch, ...]
    message: str | None  # why the section is empty, if it is
    # Expected best validation metric after n trials, per arm (reports.budget), and what the
    # dynamic and fixed curves say in one sentence (None without both).
    budget: Mapping[str, tuple[BudgetPoint, ...]] = field(default_factory=dict, hash=False)
    budget_sentence: str | None = None


@dataclass(frozen=True)
class ParamSeries:
    name: str
    log: bool
    x: tuple[float, ...]
    y: tuple[float, ...]  # the validation metric


@dataclass(frozen=True)
class ArmSensitivity:
    arm: str
    n_complete: int
    params: tuple[ParamSeries, ...]
    alpha_floor: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None
    near_best_share: float | None  # share of complete trials within `near_best_tolerance`
    near_best_tolerance: str  # in words: "0.01" or "1% of the best"
    importances: tuple[tuple[str, float], ...]
    importance_note: str  # the evaluator used, or why there are no importances


@dataclass(frozen=True)
class Sensitivity:
    arms: tuple[ArmSensitivity, ...]
    message: str | None


@dataclass(frozen=True)
class ArmDynamics:
    arm: str
    scheme: str
    number: int  # the best trial's number
    value: float
    epochs: tuple[int, ...]
    series: Mapping[str, tuple[float, ...]] = field(hash=False)  # EPOCH_METRICS -> per epoch


@dataclass(frozen=True)
class Dynamics:
    arms: tuple[ArmDynamics, ...]
    message: str | None


@dataclass(frozen=True)
class TrialRow:
    arm: str
    number: int
    value: float | None
    params: Mapping[str, Any] = field(hash=False)
    best_epoch: int | None = None
    duration_s: float | None = None


@dataclass(frozen=True)
class EvaluationRow:
    arm: str
    seed: int
    metric: float | None  # the verdict's test metric in its display unit
    test_loss: float | None
    seconds: float | None


@dataclass(frozen=True)
class Tables:
    top_trials: tuple[TrialRow, ...]  # the 10 best complete trials of each arm
    evaluations: tuple[EvaluationRow, ...]
    message: str | None


@dataclass(frozen=True)
class ReportData:
    experiment: str
    generated: str  # ISO time (UTC) the data was read
    accuracy: bool  # a classification experiment: the test metric is accuracy
    verdict: Verdict
    setup: Setup
    search: Search
    sensitivity: Sensitivity
    dynamics: Dynamics
    tables: Tables
