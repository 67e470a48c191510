"""The training loop: modes, determinism, metrics, callbacks, argument errors."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from dltricks.train import Callback, EarlyStopping, StepContext, TrainConfig, evaluate, fit
from tests.train.helpers import adam, small_data, small_mlp, states_equal


def test_same_seed_bit_identical_with_dropout() -> None:
    data = small_data()
    config = TrainConfig(epochs=4, batch_size=32, l1=1e-4, l2=1e-3, seed=5)
    a, b = small_mlp(dropout=0.5), small_mlp(dropout=0.5)
    # The caller's global RNG state must not matter: fit forks and seeds its own.
    torch.manual_seed(123)
    ra = fit(a, adam, data, config, progress=False)
    torch.manual_seed(456)
    rb = fit(b, adam, data, config, progress=False)
    assert ra.to_dict() == rb.to_dict()
    assert json.dumps(ra.to_dict()) == json.dumps(rb.to_dict())
    assert states_equal(a, b)
    rc = fit(small_mlp(dropout=0.5), adam, data, TrainConfig(epochs=4, batch_size=32, seed=6))
    assert rc.history[0].train_loss != ra.history[0].train_loss


def test_fit_leaves_global_rng_untouched() -> None:
    data = small_data()
    model = small_mlp(dropout=0.3)
    torch.manual_seed(7)
    before = torch.get_rng_state()
    fit(model, adam, data, TrainConfig(epochs=1), progress=False)
    assert torch.equal(torch.get_rng_state(), before)


class ModeRecorder(nn.Module):
    """Wraps a model and records (training flag, grad enabled) at every forward pass."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((self.training, torch.is_grad_enabled()))
        return self.inner(x)


def test_train_mode_for_steps_eval_mode_for_metrics() -> None:
    data = small_data()
    model = ModeRecorder(small_mlp(dropout=0.5))
    model.eval()
    fit(model, adam, data, TrainConfig(epochs=2, batch_size=64), progress=False)
    steps = [c for c in model.calls if c[1]]
    evals = [c for c in model.calls if not c[1]]
    assert steps
    assert all(training for training, _ in steps)
    assert evals
    assert not any(training for training, _ in evals)
    assert not model.training  # mode restored to what it was


def test_train_metrics_are_eval_mode_full_split() -> None:
    data = small_data()
    model = small_mlp(dropout=0.5)
    result = fit(model, adam, data, TrainConfig(epochs=3, batch_size=16), progress=False)
    model.eval()
    loss, acc = evaluate(model, data.x_train, data.y_train, nn.functional.cross_entropy, 7)
    with torch.no_grad():
        logits = model(data.x_train).double()
    ref_loss = float(nn.functional.cross_entropy(logits, data.y_train))
    ref_acc = float((logits.argmax(1) == data.y_train).double().mean())
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert acc == ref_acc
    assert result.final.train_loss == pytest.approx(ref_loss, rel=1e-5)
    assert result.history[-1].train_accuracy == ref_acc
    assert result.history[-1].steps == 3 * math.ceil(data.n_train / 16)


def test_learns_and_result_fields() -> None:
    data = small_data()
    config = TrainConfig(epochs=15, batch_size=32, early_stopping=EarlyStopping(patience=20))
    result = fit(small_mlp(), adam, data, config, progress=False)
    # Chance is 1/3 on these overlapping blobs; a nearest-mean classifier gets about 0.75.
    assert result.history[-1].train_accuracy > 0.7
    assert result.history[-1].val_accuracy > 0.6
    assert result.history[-1].train_loss < result.history[0].train_loss
    d = result.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["epochs_run"] == 15
    assert result.curve("val_loss") == [r.val_loss for r in result.history]
    with pytest.raises(ValueError, match="unknown metric"):
        result.curve("nope")


class Counter(Callback):
    def __init__(self) -> None:
        self.after_backward: list[tuple[int, int]] = []
        self.step_end = 0
        self.epochs: list[int] = []

    def on_after_backward(self, ctx: StepContext) -> None:
        assert all(p.grad is not None for p in ctx.model.parameters())
        self.after_backward.append((ctx.epoch, ctx.step))
        torch.rand(100)  # a callback drawing random numbers must not change the run
        ctx.model.eval()  # nor may leaving the model in eval mode

    def on_step_end(self, ctx: StepContext) -> None:
        self.step_end += 1

    def on_epoch_end(self, ctx) -> None:
        self.epochs.append(ctx.record.epoch)


def test_callbacks_called_and_do_not_change_the_run() -> None:
    data = small_data()
    config = TrainConfig(epochs=2, batch_size=64)
    counter = Counter()
    with_cb = fit(small_mlp(dropout=0.5), adam, data, config, progress=False, callbacks=[counter])
    without = fit(small_mlp(dropout=0.5), adam, data, config, progress=False)
    steps_per_epoch = math.ceil(data.n_train / 64)
    assert counter.after_backward == [
        (e, s) for s, e in enumerate(e for e in (1, 2) for _ in range(steps_per_epoch))
    ]
    assert counter.step_end == 2 * steps_per_epoch
    assert counter.epochs == [1, 2]
    assert with_cb.to_dict() == without.to_dict()


def test_full_batch_and_no_validation() -> None:
    from dltricks.data import make_gaussian_mixture, make_split_dataset

    x, y = make_gaussian_mixture(100, 8, 3, seed=0)
    data = make_split_dataset("nv", x, y, x, y, n_classes=3, val_fraction=0.0)
    result = fit(small_mlp(), adam, data, TrainConfig(epochs=2, batch_size=None), progress=False)
    assert [r.steps for r in result.history] == [1, 2]
    assert result.history[0].val_loss is None
    assert result.best_epoch is None
    with pytest.raises(ValueError, match="validation split"):
        fit(small_mlp(), adam, data, TrainConfig(epochs=1, early_stopping=EarlyStopping()))


def test_divergence_stops_the_run() -> None:
    data = small_data()
    config = TrainConfig(epochs=5, batch_size=None)
    result = fit(
        small_mlp(), lambda p: torch.optim.SGD(p, lr=math.inf), data, config, progress=False
    )
    assert result.stop_reason == "diverged"
    assert result.stopped_epoch == 1
    assert math.isnan(result.history[0].train_loss)


def test_optimizer_instance_accepted_and_foreign_one_refused() -> None:
    data = small_data()
    model = small_mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, opt, data, TrainConfig(epochs=1), progress=False)
    other = torch.optim.SGD(small_mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not the model's"):
        fit(model, other, data, TrainConfig(epochs=1), progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"optimizer": 3}, "optimizer must be"),
        ({"optimizer": lambda p: "sgd"}, "not an Optimizer"),
        ({"model": "mlp"}, "model must be"),
        ({"data": (1, 2)}, "data must be"),
        ({"config": {"epochs": 1}}, "config must be"),
        ({"resume": True}, "checkpoint_path"),
        ({"callbacks": [print]}, "Callback"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {
        "model": small_mlp(),
        "optimizer": adam,
        "data": small_data(),
        "config": TrainConfig(epochs=1),
    }
    extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in args}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        fit(args["model"], args["optimizer"], args["data"], args["config"], **extra)


def test_progress_bar_writes_nothing_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    fit(small_mlp(), adam, small_data(), TrainConfig(epochs=2), progress=True)
    assert capsys.readouterr().out == ""
    fit(small_mlp(), adam, small_data(), TrainConfig(epochs=2), progress=False)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_result_round_trips_through_dict() -> None:
    from dltricks.train import TrainResult

    config = TrainConfig(epochs=2, early_stopping=EarlyStopping(patience=0))
    result = fit(small_mlp(), adam, small_data(), config, progress=False)
    again = TrainResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again == result
    assert TrainConfig.from_dict(again.config) == config


def test_a_schedule_free_optimizer_is_switched_with_the_model() -> None:
    """Trained in train mode (parameters y), evaluated and left in eval mode (the average x):
    the recorded validation loss is that of the weights fit leaves in the model."""
    from dltricks.optim import ScheduleFreeAdamW

    data = small_data()
    model = small_mlp()
    opt = ScheduleFreeAdamW(model.parameters(), lr=1e-2)
    result = fit(model, opt, data, TrainConfig(epochs=3, batch_size=32, seed=1), progress=False)
    assert opt.param_groups[0]["train_mode"] is False
    model.eval()
    loss, _ = evaluate(model, data.x_val, data.y_val, nn.functional.cross_entropy, 1024)
    assert loss == pytest.approx(result.history[-1].val_loss, rel=1e-6)
    opt.train()  # back to y: other weights, a different loss
    moved, _ = evaluate(model, data.x_val, data.y_val, nn.functional.cross_entropy, 1024)
    assert moved != pytest.approx(loss, rel=1e-6)
