"""The training loop: reproducibility, divergence, stopping, λ statistics, every scheme."""

from __future__ import annotations

import math

import pytest
import torch

from trainers import (
    AWDScheme,
    CNNModel,
    ConfigError,
    DigitsData,
    DivergenceError,
    DynamicL1Scheme,
    DynamicScheme,
    FixedScheme,
    LinearData,
    LinearModel,
    MLPModel,
    Mnist1dData,
    NoneScheme,
    ScheduleScheme,
    SWDScheme,
    TrainConfig,
    Trainer,
    load_dataset,
    resolve_device,
    train,
)

SMALL = TrainConfig(
    data=DigitsData(), model=MLPModel(hidden=(32,)), epochs=3, batch_size=64, device="cpu"
)

ALL_SCHEMES = [
    NoneScheme(),
    FixedScheme(lam=1e-3),
    DynamicScheme(alpha=1e-2),
    DynamicScheme(alpha=1e-2, floor=1e-4, ceiling=1e-2, loss_ema=0.9),
    DynamicL1Scheme(alpha=1e-3),
    AWDScheme(lam_awd=1e-2),
    SWDScheme(lam=1e-2),
    ScheduleScheme(lam_start=1e-2, lam_end=0.0, shape="cosine"),
]


# every scheme in each mode it takes (swd is decoupled by definition)
APPLIED = [
    type(scheme)(**{**scheme.__dict__, "apply": apply})
    for scheme in ALL_SCHEMES
    for apply in ("coupled", "decoupled")
    if not (scheme.name == "swd" and apply == "coupled")
]


@pytest.mark.parametrize("scheme", APPLIED, ids=lambda s: f"{s.name}-{s.apply}")
def test_every_scheme_trains_and_reports(scheme):
    config = SMALL.with_(scheme=scheme)
    result = train(config)
    assert len(result.history) == 3
    for r in result.history:
        slack = 1e-6 * r.lam_max  # float32 rounding of the mean
        assert r.lam_min - slack <= r.lam_mean <= r.lam_max + slack
        assert r.lam_min <= r.lam_last <= r.lam_max
        assert all(math.isfinite(v) for v in (r.train_loss, r.val_loss, r.weight_norm, r.seconds))
        assert 0.0 <= r.train_acc <= 1.0 and 0.0 <= r.val_acc <= 1.0
    assert result.test_loss is not None and 0.0 <= result.test_acc <= 1.0


def test_lambda_statistics_match_the_scheme():
    none = train(SMALL).history
    assert all(r.lam_max == 0.0 for r in none)
    fixed = train(SMALL.with_(scheme=FixedScheme(lam=0.03))).history
    assert all(
        r.lam_min == pytest.approx(0.03) and r.lam_max == pytest.approx(0.03) for r in fixed
    )
    dyn = train(SMALL.with_(scheme=DynamicScheme(alpha=0.02, ceiling=1.0))).history
    assert dyn[-1].lam_max > dyn[-1].lam_min  # it moves with the minibatch loss
    # λ·L ≈ alpha/2 on average: the mean λ lies near 0.01 / (typical training loss)
    r = dyn[-1]
    assert 0.01 / (3 * r.train_loss) < r.lam_mean < 3 * 0.01 / r.train_loss
    capped = train(SMALL.with_(scheme=DynamicScheme(alpha=10.0, ceiling=0.5))).history
    assert all(r.lam_max <= 0.5 + 1e-6 for r in capped)


def test_same_seed_same_history_other_seed_differs():
    config = SMALL.with_(scheme=DynamicScheme(alpha=1e-2))
    a, b = train(config), train(config)
    strip = [{**r.to_dict(), "seconds": 0} for r in a.history]
    assert strip == [{**r.to_dict(), "seconds": 0} for r in b.history]
    assert a.test_loss == b.test_loss
    c = train(config.with_(seed=1))
    assert c.history[0].train_loss != a.history[0].train_loss


def test_regularization_shrinks_the_weights():
    base = SMALL.with_(epochs=5)
    free = train(base).history[-1].weight_norm
    heavy = train(base.with_(scheme=FixedScheme(lam=0.5))).history[-1].weight_norm
    assert heavy < 0.5 * free


def test_divergence_raises_with_epoch_and_lambda():
    config = TrainConfig(
        data=LinearData(n_train=50, n_features=20),
        model=LinearModel(),
        scheme=FixedScheme(lam=0.1),
        optimizer="sgd",
        momentum=0.0,
        lr=10.0,
        epochs=50,
        batch_size=50,
        device="cpu",
    )
    with pytest.raises(DivergenceError) as info:
        train(config)
    assert 1 <= info.value.epoch < 50
    assert info.value.last_lam == pytest.approx(0.1)
    assert "diverged" in str(info.value)


def test_callback_can_stop_the_run():
    seen = []

    def on_epoch(record):
        seen.append(record.epoch)
        return record.epoch == 2

    result = train(SMALL.with_(epochs=10), on_epoch=on_epoch)
    assert seen == [1, 2]
    assert result.stopped and len(result.history) == 2
    assert result.test_loss is None and result.test_acc is None


def test_regression_reports_no_accuracy():
    config = TrainConfig(
        data=LinearData(n_train=30, n_features=60), model=LinearModel(), epochs=2, device="cpu"
    )
    result = train(config, data=load_dataset(config.data, torch.device("cpu")))
    assert all(r.train_acc is None and r.val_acc is None for r in result.history)
    assert result.test_acc is None and result.test_loss is not None


def test_sgd_nesterov_and_cnn_train():
    config = TrainConfig(
        data=Mnist1dData(),
        model=CNNModel(channels=8),
        optimizer="sgd",
        momentum=0.9,
        nesterov=True,
        lr=0.05,
        epochs=2,
        device="cpu",
    )
    result = train(config)
    assert result.history[-1].train_loss < result.history[0].train_loss * 1.05
    assert result.test_acc is not None


def test_one_sgd_step_is_the_coupled_update():
    """w ← w − lr·(∇L + λ·w) for plain SGD, biases without the penalty term."""
    lam, lr = 0.2, 0.1
    config = SMALL.with_(
        scheme=FixedScheme(lam=lam), optimizer="sgd", momentum=0.0, lr=lr, model=LinearModel()
    )
    data = load_dataset(config.data, torch.device("cpu"))
    trainer = Trainer(config, data, torch.device("cpu"))
    w0, b0 = (p.detach().clone() for p in trainer.model.parameters())
    xb, yb = data.x_train[:16], data.y_train[:16]
    ref = torch.nn.Linear(w0.shape[1], w0.shape[0])
    with torch.no_grad():
        ref.weight.copy_(w0)
        ref.bias.copy_(b0)
    torch.nn.functional.cross_entropy(ref(xb), yb).backward()
    trainer.step(xb, yb)
    w1, b1 = (p.detach() for p in trainer.model.parameters())
    torch.testing.assert_close(w1, w0 - lr * (ref.weight.grad + lam * w0))
    torch.testing.assert_close(b1, b0 - lr * ref.bias.grad)


@pytest.mark.parametrize(("biases", "expected"), [(False, ["weight"]), (True, ["weight", "bias"])])
def test_the_penalty_covers_the_weights_and_the_biases_when_asked(biases, expected):
    config = SMALL.with_(model=LinearModel(), scheme=FixedScheme(lam=1.0, biases=biases))
    trainer = Trainer(config, load_dataset(config.data, torch.device("cpu")), torch.device("cpu"))
    names = {id(p): name for name, p in trainer.model.named_parameters()}
    assert [names[id(p)] for p in trainer.penalized] == expected


def test_short_mnist1d_run_beats_chance_widely():
    config = TrainConfig(data=Mnist1dData(), epochs=15, device="cpu")
    result = train(config)
    assert result.test_acc is not None and result.test_acc > 0.45  # chance is 0.10


def test_model_that_does_not_fit_the_dataset_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        SMALL.with_(model=CNNModel())
    assert info.value.key == "model.kind"


def test_missing_cuda_is_a_config_error():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda")
    assert info.value.key == "device"


def test_cpu_training_flushes_subnormal_floats():
    from trainers import flush_denormals

    try:
        if not flush_denormals():
            pytest.skip("this processor cannot flush subnormal floats")
        tiny = torch.tensor([1e-39])  # a subnormal float32
        assert float(tiny * 1.0) == 0.0
    finally:
        torch.set_flush_denormal(False)
    assert float(torch.tensor([1e-39]) * 1.0) != 0.0  # the switch is what made the difference
