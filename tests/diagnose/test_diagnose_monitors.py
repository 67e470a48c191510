"""Diagnostics against references computed in the test from .grad and raw activations."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F  # noqa: N812 (torch convention)
from matplotlib.figure import Figure
from torch import Tensor, nn

from dltricks.diagnose import ActivationStats, Diagnostics, GradientNorms, UpdateRatios
from dltricks.nn import MLP


def _batch(seed: int, n: int = 128, d: int = 64) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randint(0, 10, (n,), generator=g)


def _mlp(activation: str, seed: int, init: str = "auto") -> MLP:
    return MLP(
        64, 10, 256, 10, activation, init=init, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize(
    ("activation", "low", "high"),
    [
        # Measured at init over seeds 0-4 (first / last Linear weight-gradient norm):
        # sigmoid 1.7e-7 .. 3.3e-7, tanh (Xavier) 1.08 .. 1.27, ReLU (He) 0.12 .. 0.34.
        ("sigmoid", 0.0, 1e-4),
        ("tanh", 0.1, 10.0),
        ("relu", 0.05, 10.0),
    ],
)
@pytest.mark.parametrize("seed", [0, 1])
def test_vanishing_picture_at_init(activation: str, low: float, high: float, seed: int) -> None:
    model = _mlp(activation, seed)
    x, y = _batch(seed)
    with GradientNorms(model) as grads:
        F.cross_entropy(model(x), y).backward()
    reference = [layer.weight.grad.norm().item() for layer in model.linear_layers]  # type: ignore[union-attr]
    measured = grads.per_layer("weight")
    assert list(measured) == [f"net.{2 * i}" for i in range(10)] + ["net.20"]
    for ref, got in zip(reference, measured.values(), strict=True):
        assert got == pytest.approx(ref, rel=1e-5)
    ratio = reference[0] / reference[-1]
    assert grads.vanishing_ratio() == pytest.approx(ratio, rel=1e-5)
    assert low <= ratio <= high
    bias_norms = grads.per_layer("bias")
    ref_bias = [layer.bias.grad.norm().item() for layer in model.linear_layers]  # type: ignore[union-attr]
    for ref, got in zip(ref_bias, bias_norms.values(), strict=True):
        assert got == pytest.approx(ref, rel=1e-5)


def _reference_outputs(
    model: nn.Module, x: Tensor, types: tuple[type[nn.Module], ...]
) -> list[Tensor]:
    outputs: list[Tensor] = []
    handles = [
        m.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach().clone()) and None)
        for m in model.modules()
        if isinstance(m, types)
    ]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return outputs


def test_activation_stats_relu_dead_units() -> None:
    model = _mlp("relu", 3)
    with torch.no_grad():
        model.hidden_layers[4].bias[:64] = -1e3  # kill a quarter of layer 5's units
    x, _ = _batch(3)
    reference = _reference_outputs(model, x, (nn.ReLU,))
    with ActivationStats(model) as stats, torch.no_grad():
        model(x)
    rows = stats.records()
    assert len(rows) == 10
    for row, out in zip(rows, reference, strict=True):
        assert row["kind"] == "rectifier"
        assert row["mean"] == pytest.approx(out.mean().item(), rel=1e-4, abs=1e-6)
        assert row["std"] == pytest.approx(out.std(unbiased=False).item(), rel=1e-3)
        never_active = (out <= 0).all(dim=0).float().mean().item()
        assert row["dead"] == pytest.approx(never_active, abs=1e-12)
        assert row["saturated"] is None
    assert rows[4]["dead"] >= 0.25


@pytest.mark.parametrize(
    ("activation", "low", "high"), [("sigmoid", 0.0, 1.0), ("tanh", -1.0, 1.0)]
)
def test_activation_stats_saturation(activation: str, low: float, high: float) -> None:
    # Large inputs and He-scale weights push the units into their flat tails.
    model = _mlp(activation, 4, init="he")
    x = 4.0 * _batch(4)[0]
    eps = 0.01
    reference = _reference_outputs(model, x, (nn.Sigmoid, nn.Tanh))
    with ActivationStats(model, saturation_eps=eps) as stats, torch.no_grad():
        model(x)
    saturated = []
    for row, out in zip(stats.records(), reference, strict=True):
        expected = ((out < low + eps) | (out > high - eps)).float().mean().item()
        assert row["saturated"] == pytest.approx(expected, abs=1e-6)
        assert row["mean"] == pytest.approx(out.mean().item(), abs=1e-5)
        assert row["std"] == pytest.approx(out.std(unbiased=False).item(), rel=1e-3, abs=1e-5)
        assert row["dead"] is None
        saturated.append(row["saturated"])
    assert max(saturated) > 0.2  # the test exercises a saturated regime


def _sgd_setup(seed: int) -> tuple[MLP, torch.optim.Optimizer, Tensor, Tensor]:
    model = MLP(8, 3, 16, 3, "relu", generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = _batch(seed, n=32, d=8)
    return model, opt, x, y % 3


def _step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor) -> None:
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("mode", ["optimizer_hooks", "manual"])
def test_update_ratios_match_weights_before_and_after(mode: str) -> None:
    model, opt, x, y = _sgd_setup(5)
    ratios = UpdateRatios(model, opt if mode == "optimizer_hooks" else None, every=1)
    expected = []
    with ratios:
        for _ in range(3):
            before = [
                p.detach().clone()
                for layer in model.linear_layers
                for p in (layer.weight, layer.bias)
            ]
            if mode == "manual":
                opt.zero_grad()
                F.cross_entropy(model(x), y).backward()
                with ratios.measure():
                    opt.step()
            else:
                _step(model, opt, x, y)
            after = [
                p.detach() for layer in model.linear_layers for p in (layer.weight, layer.bias)
            ]
            expected.append(
                [
                    (a - b).norm().item() / b.norm().item() if b.norm() > 0 else math.inf
                    for a, b in zip(after, before, strict=True)
                ]
            )
    rows = ratios.records()
    assert [r["step"] for r in rows[::8]] == [0, 1, 2]
    for step in range(3):
        got = [r["ratio"] for r in rows if r["step"] == step]
        assert got == pytest.approx(expected[step], rel=1e-5)
    assert list(ratios.per_layer("weight")) == ["net.0", "net.2", "net.4", "net.6"]


def test_every_n_and_detach_leaves_no_hooks() -> None:
    model, opt, x, y = _sgd_setup(6)
    diag = Diagnostics(
        GradientNorms(model, every=2),
        ActivationStats(model, every=2),
        UpdateRatios(model, opt, every=2),
    )
    with diag:
        for _ in range(5):
            _step(model, opt, x, y)
    assert diag.gradients is not None
    assert diag.activations is not None
    assert diag.updates is not None
    assert diag.gradients.steps == [0, 2, 4]
    assert sorted({r["step"] for r in diag.activations.records()}) == [0, 2, 4]
    assert sorted({r["step"] for r in diag.updates.records()}) == [0, 2, 4]
    # Detached: no hook is left on parameters, modules or the optimizer.
    assert all(not getattr(p, "_post_accumulate_grad_hooks", None) for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())
    assert not opt._optimizer_step_pre_hooks
    assert not opt._optimizer_step_post_hooks
    count = len(diag.gradients.records())
    _step(model, opt, x, y)
    assert len(diag.gradients.records()) == count


def test_any_module_conv_net_and_tables_and_plots() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.act = nn.ReLU()
            self.head = nn.Linear(4 * 6 * 6, 2)

        def forward(self, x: Tensor) -> Tensor:
            return self.head(self.act(self.conv(x)).flatten(1))

    torch.manual_seed(0)
    net = Net()
    x = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    with Diagnostics.for_model(net, opt) as diag:
        opt.zero_grad()
        net(x).sum().backward()
        opt.step()
    assert diag.gradients is not None
    assert diag.activations is not None
    assert diag.gradients.per_layer()["conv"] == pytest.approx(
        net.conv.weight.grad.norm().item(), rel=1e-5
    )  # type: ignore[union-attr]
    assert diag.activations.records()[0]["dead"] is not None
    table = str(diag)
    for text in ("gradient norms at step 0", "conv", "head", "dead units", "||dW||/||W||"):
        assert text in table
    figures = diag.plots()
    assert len(figures) == 3
    assert all(isinstance(f, Figure) for f in figures)
    assert figures[0].axes[0].get_yscale() == "log"


def test_records_are_plain_data() -> None:
    model, opt, x, y = _sgd_setup(8)
    with GradientNorms(model) as grads:
        _step(model, opt, x, y)
    row = grads.records()[0]
    assert set(row) == {"step", "layer", "param", "shape", "grad_norm"}
    assert isinstance(row["grad_norm"], float)
    assert math.isfinite(row["grad_norm"])


class _FunctionalNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.fc(x))


BAD_INPUTS: list[tuple[Callable[[], object], str]] = [
    (
        lambda: GradientNorms(nn.Sequential(nn.ReLU(), nn.Tanh())),
        r"Sequential has no matching layers.*Linear",
    ),
    (lambda: ActivationStats(_FunctionalNet()), r"_FunctionalNet has no matching layers.*ReLU"),
    (lambda: UpdateRatios(nn.Sequential(nn.Sigmoid())), r"no matching layers"),
    (lambda: UpdateRatios(nn.Linear(2, 2).requires_grad_(False)), r"no trainable parameters"),
    (lambda: GradientNorms(nn.Linear(2, 2), every=0), r"every must be a positive integer"),
    (
        lambda: ActivationStats(nn.ReLU(), saturation_eps=0.7),
        r"saturation_eps must be a float in \(0, 0.5\)",
    ),
    (lambda: GradientNorms(nn.Linear(2, 2)).vanishing_ratio(), r"no records yet"),
    (lambda: ActivationStats(nn.ReLU()).per_layer("median"), r"unknown statistic 'median'"),
    (lambda: GradientNorms("model"), r"expected an nn.Module"),  # type: ignore[arg-type]
    (lambda: Diagnostics(), r"at least one monitor"),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_bad_inputs_raise_clear_errors(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_attach_twice_is_an_error() -> None:
    grads = GradientNorms(nn.Linear(2, 2)).attach()
    with pytest.raises(RuntimeError, match="already attached"):
        grads.attach()
    grads.detach()


# --- The batched paths: norms reduced once per backward, results in preallocated rows ---


def _mixed_net() -> nn.Sequential:
    # float32 and float64 layers: one backward's norms come in two dtypes.
    torch.manual_seed(11)
    return nn.Sequential(
        nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 5).double(), nn.Tanh(), nn.Linear(5, 2).double()
    )


def _mixed_forward(net: nn.Sequential, x: Tensor) -> Tensor:
    h = net[1](net[0](x))
    return net[4](net[3](net[2](h.double())))


@pytest.mark.parametrize("every", [1, 2])
def test_gradient_norms_match_grad_after_each_backward(
    every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Few rows per buffer, so the run crosses several flushes and buffer reuses.
    monkeypatch.setattr("dltricks.diagnose.gradients._ROWS", 2)
    net = _mixed_net()
    x = torch.randn(7, 6, generator=torch.Generator().manual_seed(12))
    expected: dict[int, list[float]] = {}
    with GradientNorms(net, every=every) as grads:
        for step in range(7):
            if step % 3 == 0:
                net.zero_grad()  # else accumulate: the norm is that of the running sum
            _mixed_forward(net, x * (step + 1)).pow(2).sum().backward()
            norms = [p.grad.norm().item() for p in net.parameters()]  # type: ignore[union-attr]
            if step % every == 0:
                expected[step] = norms
            # Clipping after backward must not change what was recorded for this pass.
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1e-3)
    rows = grads.records()
    assert sorted({r["step"] for r in rows}) == sorted(expected)
    for step, norms in expected.items():
        got = [r["grad_norm"] for r in rows if r["step"] == step]
        assert [r["layer"] for r in rows if r["step"] == step] == ["0", "0", "2", "2", "4", "4"]
        assert got == pytest.approx(norms, rel=1e-6)


def test_gradient_norms_survive_grads_taken_in_a_later_hook() -> None:
    # Optimizer-in-backward: a later hook steps and frees .grad before backward ends.
    model = _mlp("relu", 13)
    x, y = _batch(13)
    seen: dict[int, float] = {}
    with GradientNorms(model) as grads:
        handles = []
        for i, p in enumerate(model.parameters()):

            def take(param: Tensor, i: int = i) -> None:
                seen[i] = param.grad.norm().item()  # type: ignore[union-attr]
                param.grad = None

            handles.append(p.register_post_accumulate_grad_hook(take))
        F.cross_entropy(model(x), y).backward()
        for h in handles:
            h.remove()
    assert all(p.grad is None for p in model.parameters())
    got = [r["grad_norm"] for r in grads.records()]
    assert got == pytest.approx([seen[i] for i in range(len(seen))], rel=1e-6)


def test_gradient_norms_one_backward_after_attach_no_hooks_after_detach() -> None:
    model, opt, x, y = _sgd_setup(14)
    grads = GradientNorms(model, every=1)  # counts every backward while attached
    _step(model, opt, x, y)  # not attached: nothing recorded
    with grads:
        _step(model, opt, x, y)
    _step(model, opt, x, y)
    assert grads.steps == [0]
    assert all(not getattr(p, "_post_accumulate_grad_hooks", None) for p in model.parameters())
    grads.clear()
    with pytest.raises(ValueError, match="no records yet"):
        grads.per_layer()
    with grads:
        _step(model, opt, x, y)
    assert grads.steps == [1]
    assert len(grads.records()) == 8


@pytest.mark.parametrize("module", [nn.ReLU(), nn.LeakyReLU(0.1), nn.Tanh(), nn.Sigmoid()])
def test_activation_stats_across_flushes_and_widths(
    module: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One activation module reused at two widths (unit rows of two sizes), a 1-D output,
    # and few rows per buffer so that records cross flushes.
    monkeypatch.setattr("dltricks.diagnose.activations._ROWS", 2)
    g = torch.Generator().manual_seed(15)
    inputs = [
        3 * torch.randn(16, 8, generator=g) - 0.5,
        3 * torch.randn(16, 4, generator=g),
        torch.randn(5, generator=g),
        torch.randn(16, 8, generator=g).double(),
        torch.randn(4, 3, 5, 5, generator=g),
    ]
    with ActivationStats(module, every=1) as stats:
        for x in inputs:
            module(x)
    rows = stats.records()
    assert [r["step"] for r in rows] == list(range(len(inputs)))
    for row, x in zip(rows, inputs, strict=True):
        out = module(x).double()
        assert row["mean"] == pytest.approx(out.mean().item(), rel=1e-5, abs=1e-6)
        assert row["std"] == pytest.approx(out.std(unbiased=False).item(), rel=1e-4)
        units = out if out.ndim >= 2 else out.unsqueeze(0)
        units = units.transpose(0, 1).reshape(units.shape[1], -1)
        if isinstance(module, (nn.ReLU, nn.LeakyReLU)):
            dead = (units <= 0).all(dim=1).double().mean().item()
            assert row["dead"] == pytest.approx(dead, abs=1e-12)
            assert row["saturated"] is None
        else:
            low, high = (0.0, 1.0) if isinstance(module, nn.Sigmoid) else (-1.0, 1.0)
            saturated = ((out < low + 0.01) | (out > high - 0.01)).double().mean().item()
            assert row["saturated"] == pytest.approx(saturated, abs=1e-12)
            assert row["dead"] is None


def test_update_ratios_across_flushes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dltricks.diagnose.updates._ROWS", 2)
    model, opt, x, y = _sgd_setup(16)
    expected = []
    with UpdateRatios(model, opt, every=1) as ratios:
        for _ in range(5):
            before = [p.detach().clone() for p in model.parameters()]
            _step(model, opt, x, y)
            expected.append(
                [
                    ((p.detach() - b).norm().item(), b.norm().item())
                    for p, b in zip(model.parameters(), before, strict=True)
                ]
            )
    rows = ratios.records()
    assert [r["step"] for r in rows[::8]] == list(range(5))
    for step in range(5):
        got = [(r["update_norm"], r["weight_norm"]) for r in rows if r["step"] == step]
        for (upd, w), (ref_upd, ref_w) in zip(got, expected[step], strict=True):
            assert upd == pytest.approx(ref_upd, rel=1e-5, abs=1e-9)
            assert w == pytest.approx(ref_w, rel=1e-5, abs=1e-9)


def test_update_ratios_default_cadence() -> None:
    # With an optimizer the default records one step in 10 (0, 10, 20); by hand, every step
    # that the caller brackets.
    model, opt, x, y = _sgd_setup(17)
    with UpdateRatios(model, opt) as hooked:
        for _ in range(21):
            _step(model, opt, x, y)
    assert hooked.every == 10
    assert sorted({r["step"] for r in hooked.records()}) == [0, 10, 20]
    manual = UpdateRatios(model)
    assert manual.every == 1
    for _ in range(3):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        with manual.measure():
            opt.step()
    assert sorted({r["step"] for r in manual.records()}) == [0, 1, 2]


@pytest.mark.parametrize("eps", [0.01, 0.2, 0.25, 0.3, 0.49])
@pytest.mark.parametrize("module", [nn.Sigmoid(), nn.Tanh()])
def test_activation_saturation_for_any_eps(module: nn.Module, eps: float) -> None:
    # Saturation is counted by truncating |y| / threshold; wide margins (sigmoid eps >= 1/4)
    # make that quotient reach 2, which must still count once. Outputs at the bounds and in
    # the middle included.
    g = torch.Generator().manual_seed(18)
    x = torch.cat([4 * torch.randn(64, 16, generator=g), torch.full((2, 16), 40.0)])
    x[-1] = -40.0
    with ActivationStats(module, saturation_eps=eps) as stats:
        module(x)
    out = module(x).double()
    low, high = (0.0, 1.0) if isinstance(module, nn.Sigmoid) else (-1.0, 1.0)
    expected = ((out <= low + eps) | (out >= high - eps)).double().mean().item()
    row = stats.records()[0]
    # At most a few outputs within float32 rounding of the threshold may count either way.
    assert row["saturated"] == pytest.approx(expected, abs=3 / out.numel())
    assert row["mean"] == pytest.approx(out.mean().item(), abs=1e-6)
    assert row["std"] == pytest.approx(out.std(unbiased=False).item(), rel=1e-4)


@pytest.mark.parametrize("module", [nn.ReLU(), nn.ELU(), nn.Sigmoid(), nn.Tanh()])
def test_activation_stats_half_precision_and_strided_outputs(module: nn.Module) -> None:
    # bfloat16 outputs are reduced in float32; a transposed (non-contiguous) output works.
    g = torch.Generator().manual_seed(19)
    x16 = (2 * torch.randn(32, 12, generator=g)).bfloat16()
    xt = torch.randn(12, 32, generator=g).t()
    xt[:, :3] = -5.0  # three units dead for the rectifiers
    with ActivationStats(module, every=1) as stats:
        module(x16)
        module(xt)
    rows = stats.records()
    for row, x in zip(rows, [x16, xt], strict=True):
        out = module(x).double()
        assert row["mean"] == pytest.approx(out.mean().item(), rel=1e-5, abs=1e-6)
        assert row["std"] == pytest.approx(out.std(unbiased=False).item(), rel=1e-4)
        if isinstance(module, (nn.ReLU, nn.ELU)):
            assert row["dead"] == pytest.approx((out <= 0).all(dim=0).double().mean().item())
        else:
            low, high = (0.0, 1.0) if isinstance(module, nn.Sigmoid) else (-1.0, 1.0)
            sat = ((out < low + 0.01) | (out > high - 0.01)).double().mean().item()
            assert row["saturated"] == pytest.approx(sat, abs=1e-12)


def test_gradient_norms_parameters_that_skip_backward_passes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The second layer only gets gradients on odd passes, so its step counter lags the
    # first layer's; records stay in (step, layer order) across flushes and reads.
    monkeypatch.setattr("dltricks.diagnose.gradients._ROWS", 2)
    torch.manual_seed(20)
    first, second = nn.Linear(3, 3), nn.Linear(3, 1)
    net = nn.Sequential(first, second)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(21))
    expected: list[tuple[int, str, str, float]] = []
    calls = {"0": 0, "1": 0}
    with GradientNorms(net, every=1) as grads:
        for i in range(7):
            net.zero_grad()
            out = second(first(x)).sum() if i % 2 else first(x).pow(2).sum()
            out.backward()
            for name, layer in (("0", first), ("1", second)):
                if layer.weight.grad is None:
                    continue
                for param in ("weight", "bias"):
                    value = getattr(layer, param).grad.norm().item()
                    expected.append((calls[name], name, param, value))
                calls[name] += 1
            if i == 3:
                grads.records()  # a read in the middle: later records are merged in order
    expected.sort(key=lambda r: (r[0], r[1]))
    got = [(r["step"], r["layer"], r["param"], r["grad_norm"]) for r in grads.records()]
    assert [g[:3] for g in got] == [e[:3] for e in expected]
    assert [g[3] for g in got] == pytest.approx([e[3] for e in expected], rel=1e-6)


# --- The default cadence: one step in 10, the same steps for every layer and monitor ---


def test_default_every_is_ten_and_for_model_shares_it() -> None:
    model, opt, _, _ = _sgd_setup(22)
    assert GradientNorms(model).every == 10
    assert ActivationStats(model).every == 10
    assert UpdateRatios(model, opt).every == 10
    periods = {
        "defaults": Diagnostics.for_model(model, opt),
        "every=1": Diagnostics.for_model(model, opt, every=1),
        "every=1, update_every=10": Diagnostics.for_model(model, opt, every=1, update_every=10),
    }
    assert {name: [m.every for m in d.monitors] for name, d in periods.items()} == {
        "defaults": [10, 10, 10],
        "every=1": [1, 1, 1],
        "every=1, update_every=10": [1, 1, 10],
    }
    with pytest.raises(ValueError, match="every must be a positive integer"):
        Diagnostics.for_model(model, every=0)


def _activation_reference(out: Tensor, sigmoid: bool) -> tuple[float, float, float]:
    """(mean, population std, fraction saturated within 0.01 of 0 or 1 for sigmoid outputs,
    else fraction of units never above 0 over the batch) of one activation output."""
    out = out.double()
    if sigmoid:
        extra = ((out < 0.01) | (out > 0.99)).double().mean().item()
    else:
        extra = (out <= 0).all(dim=0).double().mean().item()
    return out.mean().item(), out.std(unbiased=False).item(), extra


@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("build", ["for_model defaults", "explicit every=10"])
def test_default_cadence_records_the_same_steps_for_every_layer_and_monitor(
    activation: str, build: str
) -> None:
    model = MLP(8, 3, 16, 3, activation, generator=torch.Generator().manual_seed(23))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    if build == "for_model defaults":
        diag = Diagnostics.for_model(model, opt)
    else:
        diag = Diagnostics(
            GradientNorms(model, every=10),
            ActivationStats(model, every=10),
            UpdateRatios(model, opt, every=10),
        )
    # The test's own reference hooks see every activation output of every step.
    outputs: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: object, out: Tensor) -> None:
        outputs.append(out.detach().clone())

    handles = [
        m.register_forward_hook(keep)
        for m in model.modules()
        if isinstance(m, (nn.ReLU, nn.Sigmoid))
    ]
    params = [p for layer in model.linear_layers for p in (layer.weight, layer.bias)]
    expected_grads: list[list[float]] = []
    expected_acts: list[list[tuple[float, float, float]]] = []
    expected_updates: list[list[tuple[float, float]]] = []
    g = torch.Generator().manual_seed(24)
    with diag:
        for _ in range(25):
            x, y = 3 * torch.randn(32, 8, generator=g), torch.randint(0, 3, (32,), generator=g)
            outputs.clear()
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            expected_grads.append([p.grad.norm().item() for p in params])  # type: ignore[union-attr]
            sigmoid = activation == "sigmoid"
            expected_acts.append([_activation_reference(out, sigmoid) for out in outputs])
            before = [p.detach().clone() for p in params]
            opt.step()
            expected_updates.append(
                [
                    ((p.detach() - b).norm().item(), b.norm().item())
                    for p, b in zip(params, before, strict=True)
                ]
            )
    for handle in handles:
        handle.remove()
    assert diag.gradients is not None
    assert diag.activations is not None
    assert diag.updates is not None
    recorded = [0, 10, 20]
    linear_names = [f"net.{2 * i}" for i in range(3)] + ["net.6"]
    act_names = [f"net.{2 * i + 1}" for i in range(3)]

    grads = diag.gradients.records()
    for layer in linear_names:
        for param in ("weight", "bias"):
            steps = [r["step"] for r in grads if r["layer"] == layer and r["param"] == param]
            assert steps == recorded, (layer, param)
    for step in recorded:
        got = [r["grad_norm"] for r in grads if r["step"] == step]
        assert got == pytest.approx(expected_grads[step], rel=1e-5)

    acts = diag.activations.records()
    for layer in act_names:
        assert [r["step"] for r in acts if r["layer"] == layer] == recorded, layer
    for step in recorded:
        rows = [r for r in acts if r["step"] == step]
        assert [r["layer"] for r in rows] == act_names
        for row, (mean, std, extra) in zip(rows, expected_acts[step], strict=True):
            assert row["mean"] == pytest.approx(mean, rel=1e-5, abs=1e-6)
            assert row["std"] == pytest.approx(std, rel=1e-4)
            fraction, other = (
                ("saturated", "dead") if activation == "sigmoid" else ("dead", "saturated")
            )
            assert row[fraction] == pytest.approx(extra, abs=1e-12)
            assert row[other] is None

    updates = diag.updates.records()
    for layer in linear_names:
        for param in ("weight", "bias"):
            steps = [r["step"] for r in updates if r["layer"] == layer and r["param"] == param]
            assert steps == recorded, (layer, param)
    for step in recorded:
        got = [(r["update_norm"], r["weight_norm"]) for r in updates if r["step"] == step]
        for (upd, w), (ref_upd, ref_w) in zip(got, expected_updates[step], strict=True):
            assert upd == pytest.approx(ref_upd, rel=1e-5, abs=1e-9)
            assert w == pytest.approx(ref_w, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("activation", [torch.nn.Sigmoid, torch.nn.Tanh])
def test_activation_stats_of_nan_outputs_are_nan_not_an_error(
    activation: type[torch.nn.Module],
) -> None:
    # A diverged network's outputs are NaN; its statistics say so instead of raising.
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), activation())
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    with ActivationStats(model) as stats, torch.no_grad():
        model(torch.ones(5, 3))
    (saturated,) = stats.per_layer("saturated").values()
    (mean,) = stats.per_layer("mean").values()
    assert saturated is not None
    assert math.isnan(saturated)
    assert mean is not None
    assert math.isnan(mean)
