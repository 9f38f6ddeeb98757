"""Neural integral equations: the solver against closed forms, causality, modules, metrics."""

from __future__ import annotations

import math
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.integral import (
    ANIE,
    NIE,
    AttentionIntegral,
    IntegralSolver,
    MonteCarloIntegral,
    PatchDecoder1d,
    PatchDecoder2d,
    PatchEncoder1d,
    PatchEncoder2d,
)
from zoo.integral.module import RelativeL2, SquaredPearson
from zoo.integral.operators import IntegralAttention, interpolate


class SeparableKernel(nn.Module):
    """G(y(s), t, s) = lam * t * s * y(s): a rank-one Fredholm kernel."""

    def __init__(self, lam: float) -> None:
        super().__init__()
        self.lam = lam

    def forward(self, y_s, t, s):
        return self.lam * t * s * y_s


class IdentityKernel(nn.Module):
    def forward(self, y_s, t, s):
        return y_s


def grid(steps: int, batch: int = 1) -> torch.Tensor:
    return torch.linspace(0, 1, steps, dtype=torch.float64).expand(batch, steps)


def test_solver_recovers_linear_fredholm_closed_form():
    # y(t) = 1 + lam * int_0^1 t s y(s) ds has the solution y = 1 + c t with
    # c = lam * (1/2 + c/3), i.e. c = (lam / 2) / (1 - lam / 3)
    lam = 1.0
    t = grid(401)
    operator = MonteCarloIntegral(1, quadrature="trapezoid", kernel=SeparableKernel(lam)).double()
    solver = IntegralSolver(alpha=0.0, iterations=100, tol=1e-12)
    f = torch.ones(1, 401, 1, dtype=torch.float64)
    y = solver(f, lambda z: operator(z, t))
    c = (lam / 2) / (1 - lam / 3)
    torch.testing.assert_close(y[0, :, 0], 1 + c * t[0], atol=1e-5, rtol=0)
    assert solver.residuals[-1] < 1e-12 and len(solver.residuals) < 100


def test_solver_with_smoothing_and_monte_carlo_quadrature():
    lam = 1.0
    t = grid(101)
    torch.manual_seed(0)
    operator = MonteCarloIntegral(1, num_samples=4096, kernel=SeparableKernel(lam)).double()
    y = IntegralSolver(alpha=0.5, iterations=60)(
        torch.ones(1, 101, 1, dtype=torch.float64), lambda z: operator(z, t)
    )
    c = (lam / 2) / (1 - lam / 3)
    torch.testing.assert_close(y[0, :, 0], 1 + c * t[0], atol=0.02, rtol=0)


def test_volterra_closed_form():
    # y(t) = 1 + int_0^t y(s) ds has the solution exp(t)
    t = grid(401)
    operator = MonteCarloIntegral(
        1, volterra=True, quadrature="trapezoid", kernel=IdentityKernel()
    ).double()
    y = IntegralSolver(alpha=0.0, iterations=60)(
        torch.ones(1, 401, 1, dtype=torch.float64), lambda z: operator(z, t)
    )
    torch.testing.assert_close(y[0, :, 0], torch.exp(t[0]), atol=1e-4, rtol=0)


def test_interpolate_is_exact_on_linear_functions():
    t = torch.sort(torch.rand(2, 9), dim=1).values
    t[:, 0], t[:, -1] = 0, 1
    y = torch.stack([3 * t - 1, -t], dim=-1)
    s = torch.rand(2, 30)
    torch.testing.assert_close(interpolate(y, t, s), torch.stack([3 * s - 1, -s], dim=-1))


def test_solver_warns_when_diverging_and_raises_on_overflow():
    f = torch.ones(1, 5, 1)
    with pytest.warns(RuntimeWarning, match="residual .* at iteration"):
        IntegralSolver(alpha=0.0, iterations=6)(f, lambda y: 30 * y)
    with pytest.raises(FloatingPointError, match="at iteration"):
        IntegralSolver(alpha=0.0, iterations=200)(f, lambda y: 1e30 * y)
    with pytest.raises(ValueError, match="alpha"):
        IntegralSolver(alpha=1.0)
    with pytest.raises(ValueError, match="grad"):
        IntegralSolver(grad="some")


def test_last_iteration_gradients_only():
    weight = torch.tensor(0.3, requires_grad=True)
    calls = []

    def integral(y):
        calls.append(torch.is_grad_enabled())
        return weight * y

    f = torch.ones(1, 3, 1)
    IntegralSolver(iterations=4, grad="last")(f, integral).sum().backward()
    assert calls == [False, False, False, True]
    last = weight.grad.clone()
    weight.grad = None
    calls.clear()
    IntegralSolver(iterations=4, grad="all")(f, integral).sum().backward()
    assert calls == [True] * 4 and not torch.isclose(weight.grad, last)


def volterra_models():
    return {
        "anie-softmax": ANIE(AttentionIntegral(2, attention="softmax", volterra=True)),
        "anie-galerkin": ANIE(AttentionIntegral(2, attention="galerkin", volterra=True)),
        "nie-trapezoid": NIE(MonteCarloIntegral(2, volterra=True, quadrature="trapezoid")),
        "nie-monte-carlo": NIE(MonteCarloIntegral(2, volterra=True)),
    }


@pytest.mark.parametrize("name", list(volterra_models()))
def test_volterra_output_ignores_the_future(name):
    model = volterra_models()[name].eval()
    for p in model.parameters():  # large weights, so that any leak would show
        nn.init.normal_(p, std=0.5)
    t = torch.linspace(0, 1, 12).expand(3, 12)
    f = torch.randn(3, 12, 2)
    changed = f.clone()
    changed[:, 7:] += torch.randn(3, 5, 2)
    torch.manual_seed(1)
    before = model.solve(f, t)
    torch.manual_seed(1)
    after = model.solve(changed, t)
    torch.testing.assert_close(after[:, :7], before[:, :7], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(after[:, 7:], before[:, 7:])


def test_causal_galerkin_equals_masked_sums():
    attention = IntegralAttention(8, num_heads=2, attention="galerkin", volterra=True)
    x = torch.randn(2, 6, 8)
    time_index = torch.tensor([0, 0, 1, 1, 2, 2])  # two patches per time stamp
    q, k, v = attention.qkv(x).view(2, 6, 3, 2, 4).permute(2, 0, 3, 1, 4)
    k, v = attention.k_norm(k), attention.v_norm(v)
    expected = torch.zeros_like(q)
    for i in range(6):
        seen = time_index <= time_index[i]
        kv = k[:, :, seen].transpose(-2, -1) @ v[:, :, seen]
        expected[:, :, i] = torch.einsum("bhd,bhde->bhe", q[:, :, i], kv) / seen.sum()
    expected = attention.out(expected.transpose(1, 2).reshape(2, 6, 8))
    torch.testing.assert_close(attention(x, time_index), expected, atol=1e-5, rtol=1e-5)


def test_unknown_attention_and_bad_shapes():
    with pytest.raises(ValueError, match="unknown attention type 'fourier'.*softmax"):
        AttentionIntegral(2, attention="fourier")
    model = ANIE(AttentionIntegral(2))
    t = torch.linspace(0, 1, 6).expand(2, 6)
    with pytest.raises(ValueError, match=r"expected trajectories \(B, T, ...\) and times"):
        model(torch.randn(2, 6, 2), t[:, :5])
    with pytest.raises(ValueError, match="strictly increasing"):
        model(torch.randn(2, 6, 2), t.flip(1))
    with pytest.raises(ValueError, match="AttentionIntegral.state_dim=2"):
        model(torch.randn(2, 6, 3), t)
    with pytest.raises(ValueError, match="need an encoder"):
        model(torch.randn(2, 6, 4, 4), t)
    with pytest.raises(ValueError, match="both an encoder and a decoder"):
        ANIE(AttentionIntegral(2), encoder=PatchEncoder1d(8, 4, 2))
    with pytest.raises(TypeError, match="AttentionIntegral or a MonteCarloIntegral"):
        ANIE(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        PatchEncoder1d(10, 4)


FIELD_MODELS = {
    "ode-anie": lambda: (ANIE(AttentionIntegral(3), context=2), (3,)),
    "ode-nie": lambda: (NIE(MonteCarloIntegral(3, num_samples=8), context=2), (3,)),
    "1d-anie": lambda: (
        ANIE(AttentionIntegral(4, coord_dim=2), PatchEncoder1d(16, 4, 4), PatchDecoder1d(4, 4)),
        (16,),
    ),
    "2d-anie": lambda: (
        ANIE(
            AttentionIntegral(4, coord_dim=3, attention="softmax", volterra=True),
            PatchEncoder2d((8, 8), 4, 4),
            PatchDecoder2d((8, 8), 4, 4),
        ),
        (8, 8),
    ),
    "2d-nie": lambda: (
        NIE(
            MonteCarloIntegral(16, num_samples=8),
            PatchEncoder2d((8, 8), 4, 4),
            PatchDecoder2d((8, 8), 4, 4),
        ),
        (8, 8),
    ),
}


@pytest.mark.parametrize("name", list(FIELD_MODELS))
def test_shapes_gradients_and_checkpoint_round_trip(name, tmp_path, quiet_trainer):
    model, state = FIELD_MODELS[name]()
    y = torch.randn(8, 5, *state)
    t = torch.linspace(0, 2, 5).expand(8, 5)
    model.fit_statistics(y, t)
    out = model(y, t)
    assert out.shape == y.shape and torch.isfinite(out).all()
    model.zero_grad()
    out.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing

    trainer = quiet_trainer(max_epochs=1, enable_checkpointing=False)
    loader = DataLoader(TensorDataset(y, t), batch_size=4)
    trainer.fit(model, loader)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = type(model).load_from_checkpoint(path, weights_only=True)
    model.eval()
    loaded.eval()
    torch.manual_seed(0)
    first = model(y, t)
    torch.manual_seed(0)
    torch.testing.assert_close(loaded(y, t), first)


class Trajectories(L.LightningDataModule):
    """Damped oscillations x'' = -x - 0.2 x' from random starts: a forecastable system."""

    def __init__(self, batch_size: int = 16) -> None:
        super().__init__()
        self.batch_size = batch_size
        generator = torch.Generator().manual_seed(0)
        t = torch.linspace(0, 6, 24)
        phase = 2 * math.pi * torch.rand(96, 1, generator=generator)
        amplitude = 1 + torch.rand(96, 1, generator=generator)
        decay = torch.exp(-0.1 * t)
        x = amplitude * decay * torch.cos(t + phase)
        v = amplitude * decay * -torch.sin(t + phase)
        y = torch.stack([x, v], dim=-1)
        times = t.expand(96, -1)
        self.splits = {
            "train": TensorDataset(y[:64], times[:64]),
            "val": TensorDataset(y[64:80], times[64:80]),
            "test": TensorDataset(y[80:], times[80:]),
        }

    def train_dataloader(self):
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.splits["val"], batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.splits["test"], batch_size=self.batch_size)


def test_anie_learns_to_beat_holding_the_last_frame(quiet_trainer):
    torch.manual_seed(0)
    model = ANIE(AttentionIntegral(2, hidden_dim=32, num_heads=2), context=4, lr=3e-3)
    trainer = quiet_trainer(max_epochs=40)
    data = Trajectories()
    trainer.fit(model, datamodule=data)
    assert model.std.shape == (2,)  # fitted per state dimension on the training split
    results = trainer.test(model, datamodule=data, verbose=False)[0]
    assert results["test/mse"] < 0.5 * results["test/mse_hold_last"]
    assert set(results) >= {"test/rel_l2", "test/r2", "test/pearson_r2"}


def test_metrics_against_hand_computation():
    prediction = torch.tensor([[1.0, 2.0, 2.0], [0.0, 1.0, 3.0]])
    target = torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]])
    metric = RelativeL2()
    metric.update(prediction, target)
    expected = (1 / math.sqrt(14) + math.sqrt(5) / math.sqrt(3)) / 2
    assert float(metric.compute()) == pytest.approx(expected, rel=1e-6)
    pearson = SquaredPearson()
    pearson.update(prediction.flatten(), target.flatten())
    r = np.corrcoef(prediction.flatten().numpy(), target.flatten().numpy())[0, 1]
    assert float(pearson.compute()) == pytest.approx(r**2, rel=1e-5)


def test_registered_names():
    assert {"anie", "nie"} <= set(zoo.list_models())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # default operators record their configs
        model = zoo.create_model("anie", context=2)
    assert model.hparams["integral"]["class_path"].endswith("AttentionIntegral")


def test_cli_fit_then_test_from_the_checkpoint_alone(tmp_path, capsys):
    from zoo.cli import main

    config = tmp_path / "anie.yaml"
    config.write_text(
        """
seed_everything: 0
model:
  class_path: ANIE
  init_args:
    integral:
      class_path: zoo.integral.AttentionIntegral
      init_args: {state_dim: 2, hidden_dim: 8, num_heads: 2, num_layers: 1, ff_dim: 8}
    context: 3
data:
  class_path: LotkaVolterra
  init_args: {num_trajectories: 20, num_snapshots: 40, time_stride: 4, batch_size: 8}
trainer:
  max_epochs: 2
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
"""
    )
    main(["fit", "-c", str(config)])
    (checkpoint,) = (tmp_path / "runs" / "anie").glob("*/checkpoints/last.ckpt")
    capsys.readouterr()
    main(["test", "--ckpt_path", str(checkpoint)])
    printed = capsys.readouterr().out
    assert "test/mse_hold_last" in printed and "test/pearson_r2" in printed
