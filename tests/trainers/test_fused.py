"""The fused engine: each member computes what its unfused run computes, pruning and divergence
touch one member only, and groups that cannot fuse are refused with the reason."""

from __future__ import annotations

import math

import pytest
import torch

from tests.trainers.histories import result_of, same_history
from trainers import (
    AWDScheme,
    CNNModel,
    ConfigError,
    DigitsData,
    DivergenceError,
    DynamicL1Scheme,
    DynamicScheme,
    EpochRecord,
    FixedScheme,
    LinearData,
    LinearModel,
    MLPModel,
    Mnist1dData,
    NoneScheme,
    ScheduleScheme,
    Scheme,
    SWDScheme,
    TrainConfig,
    fuse_problem,
    load_dataset,
    train,
    train_fused,
)
from trainers.fused import FusedTrainer
from trainers.stacked import StackedModel

CPU = torch.device("cpu")
SMALL = TrainConfig(
    data=DigitsData(), model=MLPModel(hidden=(32,)), epochs=3, batch_size=64, device="cpu"
)
SCHEMES: list[Scheme] = [
    NoneScheme(),
    FixedScheme(lam=1e-3),
    FixedScheme(lam=1e-3, apply="decoupled", biases=True),
    DynamicScheme(alpha=1e-2),
    DynamicScheme(alpha=1e-2, floor=1e-4, ceiling=1e-2, loss_ema=0.9),
    DynamicScheme(alpha=3e-2, apply="decoupled"),
    DynamicL1Scheme(alpha=1e-3),
    DynamicL1Scheme(alpha=1e-3, apply="decoupled"),
    AWDScheme(lam_awd=1e-2),
    SWDScheme(lam=1e-2),
    ScheduleScheme(lam_start=0.0, lam_end=1e-2),
    ScheduleScheme(lam_start=3e-2, lam_end=1e-3, shape="cosine", apply="decoupled"),
]
OPTIMIZERS = [
    {"optimizer": "adam", "lr": 1e-2},
    {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
    {"optimizer": "sgd", "lr": 0.05, "momentum": 0.5, "nesterov": True},
]


def _varied(scheme: Scheme, k: int) -> Scheme:
    """Member k's own values of the scheme's numbers (what a search would sample)."""
    factor = 1.0 + 0.5 * k
    if isinstance(scheme, FixedScheme):
        return FixedScheme(lam=scheme.lam * factor, apply=scheme.apply, biases=scheme.biases)
    if isinstance(scheme, DynamicScheme):
        return type(scheme)(
            alpha=scheme.alpha * factor,
            floor=scheme.floor * factor,
            ceiling=scheme.ceiling,
            loss_ema=scheme.loss_ema * (0.9 if k % 2 else 1.0),
            apply=scheme.apply,
            biases=scheme.biases,
        )
    if isinstance(scheme, AWDScheme):
        return AWDScheme(lam_awd=scheme.lam_awd * factor, apply=scheme.apply)
    if isinstance(scheme, SWDScheme):
        return SWDScheme(lam=scheme.lam * factor)
    if isinstance(scheme, ScheduleScheme):
        return ScheduleScheme(
            lam_start=scheme.lam_start * factor,
            lam_end=scheme.lam_end * factor,
            shape=scheme.shape,
            apply=scheme.apply,
        )
    return scheme


@pytest.fixture(scope="module")
def digits() -> object:
    return load_dataset(SMALL.data, CPU)


# each scheme with each optimizer it serves (swd: Adam only)
SERVED = [
    pytest.param(
        scheme, opt, id=f"{scheme.name}-{scheme.apply}-" + "-".join(map(str, opt.values()))
    )
    for scheme in SCHEMES
    for opt in OPTIMIZERS
    if scheme.optimizers is None or opt["optimizer"] in scheme.optimizers
]


@pytest.mark.parametrize(("scheme", "opt"), SERVED)
def test_one_member_equals_the_unfused_run(scheme: Scheme, opt: dict, digits: object) -> None:
    config = SMALL.with_(scheme=scheme, seed=7, **opt)
    unfused = train(config, data=digits)  # type: ignore[arg-type]
    (fused,) = train_fused([config], data=digits)  # type: ignore[arg-type]
    fused = result_of(fused)
    same_history(unfused.history, fused.history, len(digits.y_val))  # type: ignore[attr-defined]
    assert fused.test_acc == pytest.approx(unfused.test_acc, abs=1.5 / 360)
    assert fused.test_loss == pytest.approx(unfused.test_loss, rel=1e-4)
    assert (fused.config, fused.stopped, fused.device) == (config, False, unfused.device)


def test_one_member_stopped_by_its_callback_is_the_stopped_run(digits: object) -> None:
    """A single search trial's path: its pruner stops it after an epoch."""
    config = SMALL.with_(scheme=DynamicScheme(alpha=1e-2, loss_ema=0.5), epochs=6)

    def stop_at_3(heard: list[EpochRecord]):  # type: ignore[no-untyped-def]
        def on_epoch(record: EpochRecord) -> bool:
            heard.append(record)
            return record.epoch == 3

        return on_epoch

    heard_run: list[EpochRecord] = []
    heard_fused: list[EpochRecord] = []
    unfused = train(config, on_epoch=stop_at_3(heard_run), data=digits)  # type: ignore[arg-type]
    (outcome,) = train_fused([config], on_epoch=[stop_at_3(heard_fused)], data=digits)  # type: ignore[arg-type]
    fused = result_of(outcome)
    assert [r.epoch for r in heard_fused] == [r.epoch for r in heard_run] == [1, 2, 3]
    assert fused.stopped and unfused.stopped
    assert fused.test_loss is None and fused.test_acc is None
    same_history(unfused.history, fused.history, 360)
    assert list(fused.history) == heard_fused  # the callback heard what the result holds


def test_one_diverging_member_reports_what_its_run_raises(digits: object) -> None:
    config = SMALL.with_(optimizer="sgd", lr=10.0, momentum=0.99, seed=2, epochs=4)
    heard_run: list[EpochRecord] = []
    heard_fused: list[EpochRecord] = []
    with pytest.raises(DivergenceError) as raised:
        train(config, on_epoch=heard_run.append, data=digits)  # type: ignore[arg-type]
    (outcome,) = train_fused([config], on_epoch=[heard_fused.append], data=digits)  # type: ignore[arg-type]
    assert isinstance(outcome, DivergenceError)
    assert outcome.epoch == raised.value.epoch
    assert len(heard_fused) == len(heard_run) == outcome.epoch - 1  # not the diverged epoch


def test_an_error_in_a_member_s_callback_reaches_the_caller(digits: object) -> None:
    """As from a run: the worker's callback raises when its trial was taken away."""

    class Gone(Exception):
        pass

    def on_epoch(record: EpochRecord) -> bool:
        raise Gone

    with pytest.raises(Gone):
        train_fused([SMALL], on_epoch=[on_epoch], data=digits)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"{s.name}-{s.apply}")
def test_eight_members_with_a_shared_order_each_equal_their_unfused_run(
    scheme: Scheme, digits: object
) -> None:
    configs = [
        SMALL.with_(scheme=_varied(scheme, k), seed=100 + k, order_seed=42, lr=0.004 * (1 + k / 4))
        for k in range(8)
    ]
    fused = train_fused(configs, data=digits, shared_order=42)  # type: ignore[arg-type]
    for config, outcome in zip(configs, fused, strict=True):
        unfused = train(config, data=digits)  # type: ignore[arg-type]
        same_history(unfused.history, result_of(outcome).history, 360)


def test_members_without_a_shared_order_each_get_their_seeds_order(digits: object) -> None:
    """The final evaluation's path: seed k's member equals the plain unfused run of seed k."""
    configs = [SMALL.with_(scheme=DynamicScheme(alpha=1e-2), seed=s) for s in (3, 11, 12, 500)]
    fused = train_fused(configs, data=digits)  # type: ignore[arg-type]
    for config, outcome in zip(configs, fused, strict=True):
        same_history(train(config, data=digits).history, result_of(outcome).history, 360)  # type: ignore[arg-type]
    # and the orders differ: two seeds trained alike would give identical first epochs
    losses = {result_of(o).history[0].train_loss for o in fused}
    assert len(losses) == len(configs)


@pytest.mark.parametrize(
    "model", [LinearModel(), MLPModel(hidden=(24, 16)), CNNModel(channels=6)], ids=str
)
def test_every_model_fuses(model: object) -> None:
    data_config = Mnist1dData(n_val=500)
    data = load_dataset(data_config, CPU)
    configs = [
        TrainConfig(
            data=data_config,
            model=model,  # type: ignore[arg-type]
            scheme=FixedScheme(lam=1e-3 * (k + 1)),
            epochs=2,
            lr=3e-3,
            seed=k,
            order_seed=9,
            device="cpu",
        )
        for k in range(3)
    ]
    fused = train_fused(configs, data=data, shared_order=9)
    for config, outcome in zip(configs, fused, strict=True):
        same_history(train(config, data=data).history, result_of(outcome).history, 500)


def test_regression_fuses() -> None:
    config = TrainConfig(
        data=LinearData(n_train=40, n_features=30),
        model=LinearModel(),
        scheme=DynamicScheme(alpha=0.1),
        optimizer="sgd",
        lr=0.01,
        epochs=4,
        batch_size=8,
        device="cpu",
    )
    configs = [config.with_(seed=s) for s in (1, 2)]
    fused = train_fused(configs)
    for c, outcome in zip(configs, fused, strict=True):
        result = result_of(outcome)
        assert result.test_acc is None and result.history[0].val_acc is None
        same_history(train(c).history, result.history, 500)


def test_a_stopped_member_leaves_alone_and_the_others_are_unaffected(digits: object) -> None:
    configs = [
        SMALL.with_(scheme=FixedScheme(lam=1e-3 * (k + 1)), seed=k, order_seed=5, epochs=5)
        for k in range(4)
    ]
    seen: dict[int, list[int]] = {k: [] for k in range(4)}
    ended: list[list[int]] = []

    def stop_at(k: int, epoch: int | None):  # type: ignore[no-untyped-def]
        def on_epoch(record: EpochRecord) -> bool:
            seen[k].append(record.epoch)
            return record.epoch == epoch

        return on_epoch

    fused = train_fused(
        configs,
        on_epoch=[stop_at(0, None), stop_at(1, 2), stop_at(2, None), stop_at(3, 4)],
        data=digits,  # type: ignore[arg-type]
        shared_order=5,
        on_ends=lambda together: ended.append([k for k, _ in together]),
    )
    assert seen == {0: [1, 2, 3, 4, 5], 1: [1, 2], 2: [1, 2, 3, 4, 5], 3: [1, 2, 3, 4]}
    assert ended == [[1], [3], [0, 2]]  # as they ended, those that ended together at once
    stopped = result_of(fused[1])
    assert stopped.stopped and stopped.test_acc is None and len(stopped.history) == 2
    for k in (0, 2):
        result = result_of(fused[k])
        assert not result.stopped and result.test_acc is not None
        same_history(train(configs[k], data=digits).history, result.history, 360)  # type: ignore[arg-type]
    # the stopped member's epochs before it left are its unfused run's
    same_history(train(configs[1], data=digits).history[:2], stopped.history, 360)  # type: ignore[arg-type]


def test_a_diverging_member_fails_alone(digits: object) -> None:
    good = SMALL.with_(optimizer="sgd", lr=0.05, order_seed=3, epochs=4)
    configs = [good.with_(seed=1), good.with_(seed=2, lr=10.0, momentum=0.99), good.with_(seed=3)]
    fused = train_fused(configs, data=digits, shared_order=3)  # type: ignore[arg-type]
    failure = fused[1]
    assert isinstance(failure, DivergenceError)
    with pytest.raises(DivergenceError) as unfused_failure:
        train(configs[1], data=digits)  # type: ignore[arg-type]
    assert failure.epoch == unfused_failure.value.epoch
    for k in (0, 2):
        result = result_of(fused[k])
        assert all(math.isfinite(e.train_loss) for e in result.history)
        same_history(train(configs[k], data=digits).history, result.history, 360)  # type: ignore[arg-type]


def test_all_members_leaving_ends_the_group_early(digits: object) -> None:
    configs = [SMALL.with_(seed=k, epochs=50) for k in range(3)]
    epochs: list[int] = []

    def stop(record: EpochRecord) -> bool:
        epochs.append(record.epoch)
        return True

    fused = train_fused(configs, on_epoch=[stop] * 3, data=digits)  # type: ignore[arg-type]
    assert epochs == [1, 1, 1]
    assert all(result_of(o).stopped for o in fused)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"epochs": 4}, "'epochs'"),
        ({"batch_size": 32}, "'batch_size'"),
        ({"optimizer": "sgd"}, "'optimizer'"),
        ({"model": MLPModel(hidden=(8,))}, "'model'"),
        ({"scheme": FixedScheme()}, "scheme"),
        ({"scheme": NoneScheme(apply="decoupled")}, "'apply'"),
        ({"data": DigitsData(seed=1)}, "'data'"),
    ],
)
def test_groups_that_cannot_fuse_are_refused_with_the_reason(changes: dict, problem: str) -> None:
    configs = [SMALL, SMALL.with_(seed=4, **changes)]
    reason = fuse_problem(configs)
    assert reason is not None and problem in reason
    with pytest.raises(ConfigError, match="fused"):
        FusedTrainer(configs, load_dataset(SMALL.data, CPU), CPU)


@pytest.mark.parametrize(("biases", "expected"), [(False, [1, 0, 1, 0]), (True, [1, 1, 1, 1])])
def test_the_penalty_covers_each_member_s_weights_and_biases_when_asked(
    biases: bool, expected: list[int], digits: object
) -> None:
    configs = [SMALL.with_(scheme=FixedScheme(lam=1.0, biases=biases), seed=k) for k in range(2)]
    trainer = FusedTrainer(configs, digits, CPU)  # type: ignore[arg-type]
    assert trainer.model.names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert trainer.mask == [bool(e) for e in expected]


def test_members_may_differ_in_every_per_member_number() -> None:
    configs = [
        SMALL,
        SMALL.with_(seed=9, order_seed=2, lr=0.5, momentum=0.1),
        SMALL.with_(scheme=NoneScheme()),
    ]
    assert fuse_problem(configs) is None
    assert fuse_problem([]) == "no configs to train"


def test_a_stack_starts_where_each_member_s_model_starts() -> None:
    from trainers import build_model

    stack = StackedModel(CNNModel(channels=4), [5, 6], 40, 10, True, CPU)
    x = torch.randn(7, 40)
    out = stack.forward(x)
    for k, seed in enumerate((5, 6)):
        model = build_model(CNNModel(channels=4), 40, 10, True, seed)
        state = stack.member_state(k)
        for name, value in model.state_dict().items():
            assert torch.equal(state[name], value), name
        torch.testing.assert_close(out[k], model(x), rtol=1e-5, atol=1e-6)
    stack.keep(torch.tensor([1]))
    assert stack.size == 1
    assert torch.equal(stack.member_state(0)["head.weight"], model.state_dict()["head.weight"])


class _HostRead(AssertionError):
    pass


def _no_host_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of reading a tensor's value back to the host raise."""

    def refuse(self: torch.Tensor, *args: object, **kwargs: object) -> object:
        raise _HostRead("a tensor was read back to the host inside a step")

    for name in ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"{s.name}-{s.apply}")
def test_a_fused_step_never_reads_a_tensor_back(
    scheme: Scheme, digits: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    optimizer = (scheme.optimizers or ("sgd",))[0]  # SGD unless the scheme serves Adam only
    configs = [
        SMALL.with_(scheme=_varied(scheme, k), seed=k, optimizer=optimizer) for k in range(3)
    ]
    trainer = FusedTrainer(configs, digits, CPU)  # type: ignore[arg-type]
    order = torch.randperm(len(digits.x_train))  # type: ignore[attr-defined]
    trainer.train_epoch(order, 64)  # first steps create the optimizer's state
    with monkeypatch.context() as patch:
        _no_host_reads(patch)
        losses, lams, correct = trainer.train_epoch(order, 64)
        with pytest.raises(_HostRead):  # the guard is live
            losses.sum().item()
    assert torch.isfinite(losses).all() and lams.shape == losses.shape == correct.shape


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_members_match_unfused_runs_without_syncs() -> None:  # pragma: no cover
    gpu = torch.device("cuda")
    base = SMALL.with_(device="cuda", scheme=DynamicScheme(alpha=1e-2), order_seed=4)
    configs = [base.with_(seed=k, lr=0.004 * (k + 1)) for k in range(4)]
    data = load_dataset(base.data, gpu)
    trainer = FusedTrainer(configs, data, gpu)
    order = torch.randperm(len(data.x_train), device=gpu)
    trainer.train_epoch(order, 64)
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.train_epoch(order, 64)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    fused = train_fused(configs, data=data, shared_order=4)
    for config, outcome in zip(configs, fused, strict=True):
        same_history(train(config, data=data).history, result_of(outcome).history, 360)
