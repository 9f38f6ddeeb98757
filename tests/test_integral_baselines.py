"""Baselines next to ANIE: FNO, neural ODE and transformer forecasters."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_integral import Trajectories
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from zoo.integral import (
    ANIE,
    AttentionIntegral,
    FNOForecaster,
    NeuralODE,
    PatchDecoder1d,
    PatchDecoder2d,
    PatchEncoder1d,
    PatchEncoder2d,
    TransformerForecaster,
)

# name: (build the model, state shape, whether its context frames are the given frames)
MODELS = {
    "fno-vector": lambda: (FNOForecaster((4,), 8, 2, state_dim=3, context=2), (3,), True),
    "fno-1d": lambda: (FNOForecaster((6,), 8, 2, num_times=5, context=2), (16,), True),
    "fno-2d": lambda: (
        FNOForecaster((4, 4), 8, 2, num_times=5, keep_context=False, domain_padding=0.25),
        (8, 8),
        False,
    ),
    "node-vector": lambda: (NeuralODE(3, 16, context=2), (3,), True),
    "node-1d-flat": lambda: (NeuralODE(16, 16, method="rk4", step_size=0.25), (16,), True),
    "node-1d": lambda: (
        NeuralODE(16, 16, encoder=PatchEncoder1d(16, 4, 4), decoder=PatchDecoder1d(4, 4)),
        (16,),
        True,
    ),
    "node-2d-adjoint": lambda: (
        NeuralODE(
            16,
            16,
            encoder=PatchEncoder2d((8, 8), 4, 4),
            decoder=PatchDecoder2d((8, 8), 4, 4),
            adjoint=True,
            context=2,
        ),
        (8, 8),
        True,
    ),
    "transformer-vector": lambda: (
        TransformerForecaster(AttentionIntegral(3, hidden_dim=16), context=2),
        (3,),
        False,
    ),
    "transformer-1d": lambda: (
        TransformerForecaster(
            AttentionIntegral(4, coord_dim=2, hidden_dim=16),
            PatchEncoder1d(16, 4, 4),
            PatchDecoder1d(4, 4),
        ),
        (16,),
        False,
    ),
    "transformer-2d": lambda: (
        TransformerForecaster(
            AttentionIntegral(4, coord_dim=3, hidden_dim=16, attention="softmax"),
            PatchEncoder2d((8, 8), 4, 4),
            PatchDecoder2d((8, 8), 4, 4),
        ),
        (8, 8),
        False,
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_shapes_gradients_context_and_checkpoint_round_trip(name, tmp_path, quiet_trainer):
    torch.manual_seed(0)
    model, state, keeps_context = MODELS[name]()
    y = torch.randn(8, 5, *state)
    t = torch.linspace(0, 2, 5).expand(8, 5)
    model.fit_statistics(y, t)
    out = model(y, t)
    assert out.shape == y.shape and torch.isfinite(out).all()
    if keeps_context:
        torch.testing.assert_close(out[:, : model.context], y[:, : model.context])
    model.zero_grad()
    out.square().sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing

    trainer = quiet_trainer(max_steps=1)
    trainer.fit(model, DataLoader(TensorDataset(y, t), batch_size=4))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    assert "_metadata" not in torch.load(path, weights_only=True)["state_dict"]
    loaded = type(model).load_from_checkpoint(path, weights_only=True)
    model.eval()
    loaded.eval()
    torch.testing.assert_close(loaded(y, t), model(y, t))


@pytest.mark.parametrize("state", [(2,), (16,)])
def test_transformer_is_anie_with_one_picard_step(state):
    torch.manual_seed(0)
    if state == (2,):
        anie = ANIE(AttentionIntegral(2, init_gain=1.0), alpha=0.0, iterations=1, context=3)
        transformer = TransformerForecaster(AttentionIntegral(2), context=3)
    else:
        parts = lambda: (  # noqa: E731
            AttentionIntegral(4, coord_dim=2, init_gain=1.0),
            PatchEncoder1d(16, 4, 4),
            PatchDecoder1d(4, 4),
        )
        anie = ANIE(*parts(), alpha=0.0, iterations=1, context=3)
        transformer = TransformerForecaster(*parts(), context=3)
    y = torch.randn(4, 7, *state)
    t = torch.sort(torch.rand(4, 7), dim=1).values
    anie.fit_statistics(y, t)
    transformer.load_state_dict(anie.state_dict())
    torch.testing.assert_close(transformer(y, t), anie(y, t))


class Rotation(nn.Module):
    """dz/dt = A z with A a rotation generator: z(t) = expm(A t) z(0)."""

    def __init__(self, omega: float) -> None:
        super().__init__()
        self.register_buffer("A", torch.tensor([[0.0, omega], [-omega, 0.0]]))

    def forward(self, t, z):
        return z @ self.A.to(z).T


def test_neural_ode_matches_the_closed_form_on_mixed_time_grids():
    model = NeuralODE(2, context=3, normalize=False, rtol=1e-9, atol=1e-10).double()
    model.vector_field = Rotation(1.5).double()
    t = torch.linspace(0, 3, 6, dtype=torch.float64).repeat(4, 1)
    t[2:] = torch.tensor([0.0, 0.2, 0.5, 1.1, 1.7, 3.5], dtype=torch.float64)  # a second grid
    torch.manual_seed(0)
    y = torch.randn(4, 6, 2, dtype=torch.float64)
    out = model(y, t)
    dt = t[:, 2:] - t[:, 2:3]  # time since the last context frame
    propagator = torch.linalg.matrix_exp(dt[..., None, None] * model.vector_field.A)
    expected = torch.einsum("bkij,bj->bki", propagator, y[:, 2])
    torch.testing.assert_close(out[:, 2:], expected, atol=1e-7, rtol=1e-7)
    torch.testing.assert_close(out[:, :3], y[:, :3])


def test_adjoint_gradients_match_backpropagation_through_the_solver():
    torch.manual_seed(0)
    y = torch.randn(4, 6, 3, dtype=torch.float64)
    t = torch.linspace(0, 1, 6, dtype=torch.float64).expand(4, 6)
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(1)
        model = NeuralODE(3, 16, rtol=1e-9, atol=1e-10, adjoint=adjoint, context=2).double()
        for p in model.vector_field.parameters():  # a field that moves the state visibly
            nn.init.normal_(p, std=0.5)
        model(y, t).square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[1], grads[0], atol=1e-6, rtol=1e-5)


def test_fno_forecaster_follows_the_documented_channel_layout():
    from neuralop.models import FNO

    torch.manual_seed(0)
    model = FNOForecaster((6,), 8, 2, num_times=5, context=2, normalize=False)
    reference = FNO((6,), in_channels=2, out_channels=3, hidden_channels=8, n_layers=2)
    reference.load_state_dict(model.fno.state_dict())
    y = torch.randn(3, 5, 16)
    t = torch.linspace(0, 1, 5).expand(3, 5)
    expected = torch.cat([y[:, :2], y[:, 1:2] + reference(y[:, :2])], dim=1)
    torch.testing.assert_close(model(y, t), expected)

    model = FNOForecaster((6,), 8, 2, state_dim=2, context=2, normalize=False)
    reference = FNO((6,), 3, 2, 8, n_layers=2, positional_embedding=None)
    reference.load_state_dict(model.fno.state_dict())
    for steps in (5, 11):  # an FNO over time takes any number of frames
        y = torch.randn(3, steps, 2)
        t = torch.linspace(0, 1, steps).expand(3, steps)
        f = torch.cat([y[:, :2], y[:, 1:2].expand(-1, steps - 2, -1)], dim=1)
        change = reference(torch.cat([f, t[..., None]], dim=-1).transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(model(y, t)[:, 2:], (f + change)[:, 2:])


def test_errors_name_the_problem():
    t = torch.linspace(0, 1, 5).expand(2, 5)
    with pytest.raises(ValueError, match="exactly one of state_dim .* and num_times"):
        FNOForecaster()
    with pytest.raises(ValueError, match="exactly one of state_dim"):
        FNOForecaster(state_dim=2, num_times=5)
    with pytest.raises(ValueError, match="n_modes needs one entry"):
        FNOForecaster((4, 4), state_dim=2)
    with pytest.raises(ValueError, match="num_times=5 leaves no frame"):
        FNOForecaster(num_times=5, context=5)
    with pytest.raises(ValueError, match=r"expects fields \(B, 6, ...\) with 1 spatial"):
        FNOForecaster((4,), 8, 1, num_times=6)(torch.randn(2, 5, 8), t)
    uneven = torch.tensor([0.0, 0.1, 0.3, 0.6, 1.0]).expand(2, 5)
    with pytest.raises(NotImplementedError, match="non-uniform time grids are not supported yet"):
        FNOForecaster((4,), 8, 1, state_dim=2)(torch.randn(2, 5, 2), uneven)

    with pytest.raises(ValueError, match="set state_dim=16"):
        NeuralODE(4)(torch.randn(2, 5, 16), t)
    with pytest.raises(ValueError, match="unknown ODE method 'rk5'.*dopri5"):
        NeuralODE(2, method="rk5")
    with pytest.raises(ValueError, match="both an encoder and a decoder"):
        NeuralODE(16, encoder=PatchEncoder1d(16, 4, 4))
    with pytest.warns(UserWarning, match="step_size=0.1 is ignored by the adaptive method"):
        NeuralODE(2, step_size=0.1)

    with pytest.raises(TypeError, match="must be an AttentionIntegral"):
        linear = {
            "class_path": "torch.nn.Linear",
            "init_args": {"in_features": 2, "out_features": 2},
        }
        TransformerForecaster(linear)
    with pytest.raises(ValueError, match="need an encoder"):
        TransformerForecaster(AttentionIntegral(2))(torch.randn(2, 5, 4, 4), t)


FITS = {
    "neural_ode": (lambda: NeuralODE(2, 32, context=4, lr=1e-2), 25),
    "transformer": (
        lambda: TransformerForecaster(
            AttentionIntegral(2, hidden_dim=32, num_heads=2), context=4, lr=3e-3
        ),
        20,
    ),
    "fno": (lambda: FNOForecaster((8,), 16, 2, state_dim=2, context=4, lr=3e-3), 20),
}


@pytest.mark.parametrize("name", list(FITS))
def test_short_fit_beats_holding_the_last_frame(name, quiet_trainer):
    torch.manual_seed(0)
    build, epochs = FITS[name]
    model = build()
    data = Trajectories()
    quiet_trainer(max_epochs=epochs).fit(model, datamodule=data)
    assert model.std.shape == (2,)  # fitted per state dimension on the training split
    results = quiet_trainer(limit_val_batches=1.0).validate(model, datamodule=data, verbose=False)
    assert results[0]["val/mse"] < 0.5 * results[0]["val/mse_hold_last"]


def test_registered_names():
    assert {"fno_forecaster", "neural_ode", "transformer_forecaster"} <= set(zoo.list_models())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default operator records its config
        model = zoo.create_model("transformer_forecaster", context=2)
    assert model.hparams["integral"]["class_path"].endswith("AttentionIntegral")
    assert isinstance(zoo.create_model("neural_ode", state_dim=3), NeuralODE)
    assert isinstance(zoo.create_model("fno_forecaster", state_dim=3), FNOForecaster)
