"""The drop-in regularizers: held step for step to the built-in trainer on every scheme and
optimizer, the module's own example run, no host reads in a step, and bad values refused."""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

import trainers.dropin
from trainers import (
    AWD,
    SWD,
    AWDScheme,
    ConfigError,
    DigitsData,
    DropIn,
    DynamicL1,
    DynamicL1Scheme,
    DynamicL2,
    DynamicScheme,
    FixedL2,
    FixedScheme,
    MLPModel,
    NoneScheme,
    ScheduledL2,
    ScheduleScheme,
    Scheme,
    SWDScheme,
    TrainConfig,
    Trainer,
    build_model,
    flush_denormals,
    from_scheme,
    load_dataset,
    train,
)
from trainers.datasets import Dataset
from trainers.loop import make_optimizer, planned_steps

CPU = torch.device("cpu")
BASE = TrainConfig(
    data=DigitsData(), model=MLPModel(hidden=(16,)), epochs=2, batch_size=100, device="cpu"
)
NAMED: dict[type[Scheme], type[DropIn]] = {
    DynamicScheme: DynamicL2,
    DynamicL1Scheme: DynamicL1,
    FixedScheme: FixedL2,
    AWDScheme: AWD,
    SWDScheme: SWD,
    ScheduleScheme: ScheduledL2,
}
SCHEMES = [
    DynamicScheme(alpha=0.05, floor=1e-4),
    DynamicScheme(alpha=0.05, ceiling=0.015, loss_ema=0.9, apply="decoupled"),
    FixedScheme(lam=1e-2),
    FixedScheme(lam=1e-2, apply="decoupled", biases=True),
    DynamicL1Scheme(alpha=1e-2),
    AWDScheme(lam_awd=0.1),
    SWDScheme(lam=1e-3),
    ScheduleScheme(lam_start=1e-2, lam_end=0.0, shape="cosine"),
]
CASES = [
    (scheme, optimizer)
    for scheme in SCHEMES
    for optimizer in ("adam", "sgd")
    if scheme.optimizers is None or optimizer in scheme.optimizers
]


def named(model: nn.Module, scheme: Scheme, total_steps: int) -> DropIn:
    """The scheme's named drop-in class, built from the scheme's fields as keywords."""
    cls = NAMED[type(scheme)]
    fields = {f.name: getattr(scheme, f.name) for f in dataclasses.fields(scheme)}
    if cls is ScheduledL2:
        return ScheduledL2(model, total_steps, **fields)
    return cls(model, **fields)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset(BASE.data, CPU)


def orders(config: TrainConfig, n: int) -> Iterator[Tensor]:
    """Each epoch's batch order, drawn as :func:`trainers.train` draws it."""
    generator = torch.Generator(device=CPU)
    generator.manual_seed(config.batch_order_seed)
    for _ in range(config.epochs):
        yield torch.randperm(n, device=CPU, generator=generator)


def built_in(config: TrainConfig, data: Dataset) -> tuple[Tensor, list[Tensor]]:
    """The built-in trainer stepped as :func:`trainers.train` steps it: λ_t per step, and the
    final weights."""
    trainer = Trainer(config, data, CPU)
    batch = min(config.batch_size, len(data.x_train))
    lams = [trainer.train_epoch(order, batch)[1] for order in orders(config, len(data.x_train))]
    return torch.cat(lams).detach(), [p.detach().clone() for p in trainer.model.parameters()]


def drop_in(config: TrainConfig, data: Dataset) -> tuple[Tensor, list[Tensor], DropIn]:
    """The same run as a plain loop with the drop-in object: λ_t per step, final weights."""
    flush_denormals()  # as Trainer does
    model = build_model(config.model, data.n_features, data.n_classes, data.sequence, config.seed)
    optimizer = make_optimizer(config, list(model.parameters()))
    n = len(data.x_train)
    reg = named(model, config.scheme, planned_steps(config, n))
    lams = []
    for order in orders(config, n):
        for idx in order.split(min(config.batch_size, n)):
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            lams.append(reg.step(loss))
            optimizer.step()
            reg.after_step(config.lr)
    return torch.stack(lams), [p.detach().clone() for p in model.parameters()], reg


@pytest.mark.parametrize(
    ("scheme", "optimizer"), CASES, ids=[f"{s.name}-{s.apply}-{o}" for s, o in CASES]
)
def test_drop_in_matches_the_built_in_trainer(
    scheme: Scheme, optimizer: str, digits: Dataset
) -> None:
    config = BASE.with_(
        scheme=scheme, optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-2
    )
    want_lams, want_weights = built_in(config, digits)
    got_lams, got_weights, reg = drop_in(config, digits)
    assert reg.scheme == scheme and not got_lams.requires_grad  # no graph kept across steps
    assert want_lams.shape == got_lams.shape and bool(want_lams.gt(0).all())
    torch.testing.assert_close(got_lams, want_lams, rtol=1e-6, atol=1e-10)
    torch.testing.assert_close(got_weights, want_weights, rtol=1e-6, atol=1e-8)
    assert reg.lam == pytest.approx(float(want_lams[-1]), rel=1e-6)
    # and train() itself reports the same λ per epoch
    history = train(config, data=digits).history
    per_epoch = got_lams.view(config.epochs, -1)
    for record, lams in zip(history, per_epoch, strict=True):
        assert record.lam_last == pytest.approx(float(lams[-1]), rel=1e-6)
        assert record.lam_mean == pytest.approx(float(lams.mean()), rel=1e-6)


def test_the_module_example_runs_and_lambda_grows_as_the_loss_falls() -> None:
    doc = trainers.dropin.__doc__
    assert doc is not None
    code = textwrap.dedent(doc.split("example on random data::\n", 1)[1])
    assert len([line for line in code.splitlines() if line.strip()]) == 15
    namespace: dict[str, object] = {}
    exec(code, namespace)
    seen = namespace["seen"]
    assert isinstance(seen, list) and len(seen) == 60
    (first_loss, first_lam), (last_loss, last_lam) = seen[0], seen[-1]
    assert last_loss < first_loss / 2 and last_lam > 2 * first_lam
    for loss, lam in seen:  # λ_t = max(0.5·lr / L_t, floor) (alpha "lr", lr 1e-2), step by step
        assert lam == pytest.approx(max(0.005 / loss, 1e-4), rel=1e-5)


class HostRead(Exception):
    pass


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: f"{s.name}-{s.apply}")
def test_a_step_reads_nothing_back_to_the_host(
    scheme: Scheme, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    reg = named(model, scheme, total_steps=3)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    losses = []
    for _ in range(3):
        loss = F.cross_entropy(model(x), y)
        model.zero_grad()
        loss.backward()
        losses.append(loss.detach())
        with monkeypatch.context() as patch:
            for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
                patch.setattr(Tensor, name, _refuse)
            reg.step(loss)
            reg.after_step(0.1)
            with pytest.raises(HostRead):  # the patch does catch a read
                reg.lam  # noqa: B018
    assert isinstance(reg.lam, float) and reg.lam > 0.0


def _refuse(*args: object) -> None:
    raise HostRead


def test_decoupled_shrinks_after_the_step_and_coupled_adds_to_the_gradient() -> None:
    model = nn.Linear(4, 2)
    w0, b0 = model.weight.detach().clone(), model.bias.detach().clone()
    model.weight.grad, model.bias.grad = torch.zeros(2, 4), torch.zeros(2)
    coupled = FixedL2(model, lam=0.5)
    assert coupled.lam == 0.0  # before any step
    coupled.step(torch.tensor(1.0))
    torch.testing.assert_close(model.weight.grad, 0.5 * w0)
    torch.testing.assert_close(model.bias.grad, torch.zeros(2))  # biases not covered
    coupled.after_step(0.1)  # a no-op, and so is calling it again
    coupled.after_step(0.1)
    torch.testing.assert_close(model.weight.detach(), w0)
    decoupled = FixedL2(model, lam=0.5, apply="decoupled", biases=True)
    with pytest.raises(RuntimeError, match="needs a step"):
        decoupled.after_step(0.1)
    decoupled.step(torch.tensor(1.0))
    with pytest.raises(RuntimeError, match="was not called"):
        decoupled.step(torch.tensor(1.0))
    decoupled.after_step(0.1)
    torch.testing.assert_close(model.weight.detach(), 0.95 * w0)
    torch.testing.assert_close(model.bias.detach(), 0.95 * b0)
    with pytest.raises(ValueError, match="0-d"):
        decoupled.step(torch.ones(3))


def test_frozen_parameters_are_left_alone_and_from_scheme_takes_any_scheme() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    model[0].requires_grad_(False)
    reg = from_scheme(model, FixedScheme(lam=0.1, biases=True))
    assert reg.params == [model[1].weight, model[1].bias]
    none = from_scheme(model, NoneScheme())
    none.step(torch.tensor(2.0))
    assert none.lam == 0.0


@pytest.mark.parametrize("cls", list(NAMED.values()), ids=lambda c: c.__name__)
def test_keywords_are_the_scheme_fields_with_their_defaults(cls: type[DropIn]) -> None:
    scheme = next(s for s, c in NAMED.items() if c is cls)
    parameters = inspect.signature(cls).parameters.values()
    keywords = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}
    assert keywords == {f.name: f.default for f in dataclasses.fields(scheme)}


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda m: DynamicL2(m, alpha=-1), "alpha"),
        (lambda m: DynamicL2(m, apply="sideways"), "apply"),
        (lambda m: DynamicL2(m, floor=0.5, ceiling=0.1), "floor"),
        (lambda m: DynamicL1(m, loss_ema=1.0), "loss_ema"),
        (lambda m: FixedL2(m, lam=-1e-3), "lam"),
        (lambda m: AWD(m, lam_awd=0.0), "lam_awd"),
        (lambda m: SWD(m, apply="coupled"), "apply"),
        (lambda m: ScheduledL2(m, 10, shape="square"), "shape"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(make, key: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError) as caught:
        make(nn.Linear(3, 2))
    assert caught.value.key == key


def test_refusals_of_a_run_that_cannot_be_regularized() -> None:
    with pytest.raises(ValueError, match=r"no trainable parameters .* nothing to regularize"):
        DynamicL2(nn.LayerNorm(4))  # a weight and a bias, both 1-d
    assert len(DynamicL2(nn.LayerNorm(4), biases=True).params) == 2
    with pytest.raises(ValueError, match="total steps"):
        ScheduledL2(nn.Linear(3, 2), 0)
    with pytest.raises(TypeError):
        DynamicL2(nn.Linear(3, 2), lam=0.1)  # type: ignore[call-arg]
