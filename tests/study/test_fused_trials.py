"""Fused groups in studies: claims of K trials, per-member pruning and divergence, stored
configs that replay, fused evaluation equal to unfused, the group-size defaults and flags."""

from __future__ import annotations

import signal

import optuna
import pytest
from optuna.trial import TrialState

import storage
from study.config.experiment import load_experiment, parse_experiment
from study.run.evaluate import EvalTask, run_group
from study.search import fused as fused_trials
from study.search import signals
from study.search import worker as worker_module
from study.search.keys import Heartbeat
from study.search.studies import open_studies, search_order_seed, trial_seed
from study.search.trials import ABANDONED
from trainers import TrainConfig, load_dataset, train

from .test_run_e2e import check_counts, dynl2, empty_url, write_config


def _open(tmp_path, name="f", n_trials=5, epochs=2, text=None):  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, name=name, n_trials=n_trials, epochs=epochs)
    if text is not None:
        path.write_text(text)
    config = load_experiment(path)
    store = storage.open(f"sqlite:///{tmp_path / 'f.db'}")
    store.create_experiment(config.name, config.to_dict())
    return store, config, open_studies(store, config, Heartbeat(10, 60))


@pytest.mark.slow
def _sizes(studies, k):
    """Claim sizes by arm (the studies are keyed by (arm, replicate))."""
    return dict.fromkeys((arm for arm, _ in studies), k)


def test_run_in_fused_groups_counts_exactly_and_its_trials_replay(tmp_path):
    """On SQLite: fused groups touch no backend-specific code (the claim's lock and Optuna's
    calls are the unfused worker's, which tests/study/test_run_e2e.py runs on PostgreSQL)."""
    config_path = write_config(tmp_path, name="fz", n_trials=5, epochs=2, seeds=3)
    with empty_url("sqlite", tmp_path) as url:
        done = dynl2("run", str(config_path), "--workers", "2", "--batch", "4", "--storage", url)
        assert done.returncode == 0, done.stderr
        assert "fused groups of up to 4 trials (--batch)" in done.stdout
        check_counts(url, "fz", n_trials=5, epochs=2)
        with storage.open(url, create=False) as store:
            epochs = store.epochs("fz")
            evals = store.evaluations("fz")
            stored = parse_experiment(store.get_experiment("fz").config)
            arms = {
                arm: optuna.load_study(
                    study_name=storage.study_name("fz", arm), storage=store.optuna_storage()
                ).get_trials()
                for arm in ("dynamic", "fixed", "none")
            }
    assert len(evals) == 9
    for arm, trials in arms.items():
        assert len(trials) == 5, arm
        for trial in trials:
            config = trial.user_attrs["config"]
            assert config["seed"] == trial_seed(stored, trial.number)  # its own initialization
            # and the batch order every search trial shares, whatever group it trained in, so
            # that its result does not depend on --batch (the claims' sizes: the next test)
            assert config["order_seed"] == search_order_seed(stored)
    # the stored config of a fused trial replays it unfused, epoch by epoch
    last = arms["dynamic"][-1]
    replay = train(TrainConfig.from_dict(last.user_attrs["config"]))
    recorded = epochs[epochs["trial_id"] == last._trial_id].sort_values("epoch")
    assert [e.val_acc for e in replay.history] == pytest.approx(list(recorded["val_acc"]))


def test_claims_take_up_to_k_trials_and_never_exceed_the_budget(tmp_path):
    store, config, studies = _open(tmp_path, n_trials=5)
    sizes = _sizes(studies, 4)
    claims = [worker_module._claim(store, config, studies, sizes) for _ in range(6)]
    taken = [c for c in claims if not isinstance(c, str)]
    assert [len(c.trials) for c in taken] == [4, 4, 4, 1, 1, 1]
    assert sorted(c.key for c in taken[:3]) == sorted(studies)  # arms interleave
    assert worker_module._claim(store, config, studies, sizes) == "wait"  # all slots running
    store.close()


def test_pruned_members_are_told_at_once_and_the_rest_complete(tmp_path, monkeypatch):
    store, config, studies = _open(tmp_path, n_trials=4, epochs=3)
    claim = worker_module._claim(store, config, studies, _sizes(studies, 4))
    assert not isinstance(claim, str)
    study = studies[claim.key]
    pruned_numbers = {t.number for t in claim.trials if t.number % 2 == 1}
    told_while_training: list[int] = []
    original_report = fused_trials.report_many

    def report(study_, reports):  # type: ignore[no-untyped-def]
        if reports[0][1] == 2:  # after the odd members were pruned at epoch 1, they are finished
            states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
            told_while_training.extend(n for n in pruned_numbers if states[n].is_finished())
            assert {t.number for t, _, _ in reports} == {
                t.number for t in claim.trials
            } - pruned_numbers
        return original_report(study_, reports)

    study.pruner = _OddPruner()
    monkeypatch.setattr(fused_trials, "report_many", report)
    data = load_dataset(TrainConfig.from_dict({"data": dict(config.data)}).data, _cpu())
    outcomes = fused_trials.run_trials(store, config, claim.arm, study, claim.trials, lambda: data)
    assert outcomes == ["pruned" if t.number % 2 else "complete" for t in claim.trials]
    assert set(told_while_training) == pruned_numbers
    frozen = {t.number: t for t in study.get_trials()}
    epochs = store.epochs(config.name)
    for trial in claim.trials:
        state = frozen[trial.number].state
        assert state == (TrialState.PRUNED if trial.number % 2 else TrialState.COMPLETE)
        rows = epochs[epochs["trial_id"] == trial._trial_id]
        assert len(rows) == (1 if trial.number % 2 else 3)
    store.close()


def test_a_member_declared_stale_stops_alone(tmp_path, monkeypatch):
    """Another worker fails one member as stale mid-training: that member is dropped (its
    retry belongs to whoever asks next); its neighbours train on and complete."""
    store, config, studies = _open(tmp_path, n_trials=3, epochs=3)
    claim = worker_module._claim(store, config, studies, _sizes(studies, 3))
    assert not isinstance(claim, str)
    study = studies[claim.key]
    victim = claim.trials[1]
    original_report = fused_trials.report_many
    sizes: list[int] = []

    def report(study_, reports):  # type: ignore[no-untyped-def]
        sizes.append(len(reports))
        if reports[0][1] == 2:
            study.tell(victim, state=TrialState.FAIL)  # what a stale-trial sweep does
        return original_report(study_, reports)

    monkeypatch.setattr(fused_trials, "report_many", report)
    data = load_dataset(TrainConfig.from_dict({"data": dict(config.data)}).data, _cpu())
    outcomes = fused_trials.run_trials(store, config, claim.arm, study, claim.trials, lambda: data)
    assert outcomes == ["complete", ABANDONED, "complete"]
    assert sizes == [3, 3, 2]  # epoch 3 reports the two that stayed
    frozen = {t.number: t for t in study.get_trials()}
    assert frozen[victim.number].state == TrialState.FAIL
    assert sorted(frozen[victim.number].intermediate_values) == [1]  # epoch 2 not written
    for trial in (claim.trials[0], claim.trials[2]):
        assert frozen[trial.number].state == TrialState.COMPLETE
        assert sorted(frozen[trial.number].intermediate_values) == [1, 2, 3]
    store.close()


def test_a_stop_whose_raise_was_lost_ends_the_group_at_the_next_epoch(tmp_path, monkeypatch):
    """A stop signal that landed where Python drops the raise (a garbage-collection callback)
    is only recorded: the group must not train on to its end, but stop at the next epoch, so
    the worker hands the trials back instead of telling them complete."""
    store, config, studies = _open(tmp_path, n_trials=2, epochs=4)
    claim = worker_module._claim(store, config, studies, _sizes(studies, 2))
    assert not isinstance(claim, str)
    study = studies[claim.key]
    original_report = fused_trials.report_many
    monkeypatch.setattr(signals, "_requested", None)  # restored after the test
    monkeypatch.setattr(signals, "_stopping", False)

    def report(study_, reports):  # type: ignore[no-untyped-def]
        finished = original_report(study_, reports)
        if reports[0][1] == 1:
            signals._handle(signal.SIGTERM, None)  # raised here: where the raise is lost
        return finished

    def lost(study_, reports):  # type: ignore[no-untyped-def]
        try:
            return report(study_, reports)
        except signals.Stopped:
            return set()

    monkeypatch.setattr(fused_trials, "report_many", lost)
    data = load_dataset(TrainConfig.from_dict({"data": dict(config.data)}).data, _cpu())
    with pytest.raises(signals.Stopped):
        fused_trials.run_trials(store, config, claim.arm, study, claim.trials, lambda: data)
    for frozen in study.get_trials():
        assert frozen.state == TrialState.RUNNING  # left for the worker to hand back
        assert sorted(frozen.intermediate_values) == [1]  # epoch 2 not written: the stop first
    store.close()


class _OddPruner(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return trial.number % 2 == 1


@pytest.mark.parametrize("epoch", [1, 2, 3, 6, 8])
def test_the_group_s_median_pruner_decides_as_optuna_s_own_call(tmp_path, epoch):
    """One study read per epoch for the whole group gives each member Optuna's own decision."""
    store, config, _ = _open(tmp_path)
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
        storage=store.optuna_storage(),
        study_name="pruning",
    )
    for value in (0.2, 0.5, 0.6, 0.9):  # complete trials, rising curves
        done = study.ask()
        for step in range(1, 9):
            done.report(value * step / 8, step)
        study.tell(done, value)
    running = [study.ask() for _ in range(5)]
    group = fused_trials._Group(store, config, study, running)
    for k, trial in enumerate(running):
        for step in range(1, epoch + 1):
            trial.report((0.1 + 0.2 * k) * step / 8, step)
        assert group.should_prune(trial, epoch) == trial.should_prune(), (k, epoch)
    decisions = {group.should_prune(t, epoch) for t in running}
    assert decisions == ({False} if epoch < 2 else {True, False})  # both kinds are exercised
    store.close()


DIVERGING = """
[experiment]
name = "f"
[data]
dataset = "digits"
[model]
kind = "mlp"
hidden = [16]
[train]
optimizer = "sgd"
momentum = 0.99
lr = { low = 1e-3, high = 10.0, log = true }
epochs = 3
batch_size = 64
device = "cpu"
[search]
n_trials = 3
sampler = "random"
pruner = "none"
[arms.fixed]
scheme = "fixed"
lam = { low = 1e-6, high = 1e-3, log = true }
"""


def test_a_diverging_member_fails_alone_and_counts_as_a_result(tmp_path):
    store, config, studies = _open(tmp_path, text=DIVERGING)
    study = studies[("fixed", 1)]
    for lr in (0.01, 10.0, 0.02):
        study.enqueue_trial({"lr": lr, "lam": 1e-4})
    claim = worker_module._claim(store, config, studies, {"fixed": 3})
    assert not isinstance(claim, str) and len(claim.trials) == 3
    data = load_dataset(TrainConfig.from_dict({"data": dict(config.data)}).data, _cpu())
    outcomes = fused_trials.run_trials(store, config, "fixed", study, claim.trials, lambda: data)
    assert outcomes == ["complete", "diverged", "complete"]
    from study.search.studies import count

    counts = count(study, config.direction)
    assert (counts.complete, counts.diverged, counts.lost, counts.running) == (2, 1, 0, 0)
    store.close()


def test_fused_evaluation_equals_the_unfused_one(tmp_path):
    store, config, _ = _open(tmp_path)
    params = {"lr": 0.01, "alpha": 0.01}
    tasks = [EvalTask("dynamic", i, params) for i in range(3)]
    fused = run_group(store, config, tasks)
    one_by_one = [run_group(store, config, [t])[0] for t in tasks]
    assert fused == pytest.approx(one_by_one, abs=1.5 / 360)
    assert len(set(fused)) > 1  # each seed its own initialization and batch order
    assert len(store.evaluations(config.name)) == 3  # recorded once per seed, not per run
    store.close()


def test_default_group_sizes_leave_the_sampler_rounds_of_feedback():
    assert fused_trials.default_batch("cpu", 128) == 32
    assert fused_trials.default_batch("cpu", 40) == 10
    assert fused_trials.default_batch("cpu", 4) == 1
    assert fused_trials.default_batch("cuda", 10_000) == 128
    assert fused_trials.default_batch("xpu", 100) == 1  # an unmeasured device: unfused


def test_an_arm_searching_a_shared_setting_trains_one_trial_at_a_time(tmp_path):
    path = write_config(tmp_path, name="u", n_trials=8)
    path.write_text(path.read_text().replace("epochs = 2", "epochs = { low = 1, high = 3 }"))
    config = load_experiment(path)
    notes: list[str] = []
    sizes = fused_trials.group_sizes(config, "cpu", 4, notes.append)
    assert sizes == {"dynamic": 1, "fixed": 1, "none": 1}
    assert len(notes) == 3 and all("searches epochs" in n for n in notes)
    plain = load_experiment(write_config(tmp_path, name="p", n_trials=8))
    assert fused_trials.group_sizes(plain, "cpu", 4) == {"dynamic": 4, "fixed": 4, "none": 4}
    assert fused_trials.group_sizes(plain, "cpu", None) == dict.fromkeys(
        ["dynamic", "fixed", "none"], 2
    )


@pytest.mark.parametrize("value", ["0", "-3", "5000", "two"])
def test_a_bad_batch_flag_is_one_line_and_exit_2(tmp_path, value):
    config = write_config(tmp_path)
    db = tmp_path / "b.db"
    proc = dynl2("run", str(config), "--batch", value, "--storage", f"sqlite:///{db}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert "--batch" in lines[-1] and "Traceback" not in proc.stderr
    assert not db.exists()


def _cpu():  # type: ignore[no-untyped-def]
    import torch

    return torch.device("cpu")


@pytest.mark.parametrize(
    ("size", "seeds", "arms", "workers", "expected"),
    [
        (32, 10, 3, 1, 10),  # one process: one group per arm
        (32, 10, 3, 2, 5),  # 6 groups: 3 rounds on 2 workers, none alone
        (32, 10, 3, 3, 10),  # one group per arm and worker
        (32, 10, 2, 8, 3),  # 8 groups for 8 workers
        (4, 10, 3, 2, 3),  # never above the asked size
        (32, 2, 3, 2, 1),
    ],
)
def test_evaluation_groups_divide_evenly_among_workers(size, seeds, arms, workers, expected):
    from study.run.evaluate import balanced_size

    got = balanced_size(size, seeds, arms, workers)
    assert got == expected
    groups_per_arm = -(-seeds // got)
    assert got <= size and (workers == 1 or (arms * groups_per_arm) % workers == 0)


def test_groups_hold_back_until_the_median_pruner_has_its_reference_trials(tmp_path):
    path = write_config(tmp_path, name="m", n_trials=20)
    path.write_text(path.read_text().replace('pruner = "none"', 'pruner = "median"'))
    config = load_experiment(path)
    store = storage.open(f"sqlite:///{tmp_path / 'm.db'}")
    store.create_experiment(config.name, config.to_dict())
    studies = open_studies(store, config, Heartbeat(10, 60))
    sizes = _sizes(studies, 8)
    first = worker_module._claim(store, config, studies, sizes)
    assert not isinstance(first, str) and len(first.trials) == 5  # the pruner's 5 come first
    study = studies[first.key]
    for trial in first.trials:  # they complete
        study.tell(trial, 0.5)
    claims = [worker_module._claim(store, config, studies, sizes) for _ in range(3)]
    again = next(c for c in claims if not isinstance(c, str) and c.arm == first.arm)
    assert len(again.trials) == 8  # with its reference trials done, the arm's groups are full
    store.close()
