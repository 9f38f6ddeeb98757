"""Baselines that forecast trajectories next to ANIE: an FNO, a neural ODE and a transformer.

Each is a :class:`~zoo.integral.module.TrajectoryModule`: it sees the first ``context``
frames of a trajectory through the free function ``f`` and predicts all of it, with the
same normalisation, loss, metrics and optimiser as NIE and ANIE, so that one data config
trains and scores all of them.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from zoo.integral.module import NeuralIntegralEquation, TrajectoryModule
from zoo.integral.operators import AttentionIntegral
from zoo.nn.config import build_module, save_module_hyperparameters
from zoo.nn.layers import mlp
from zoo.registry import register_model

log = logging.getLogger(__name__)

ODEMethod = Literal[
    "dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "euler", "midpoint", "heun3", "rk4"
]
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_STEP_METHODS = ("euler", "midpoint", "heun3", "rk4")


def _neuraloperator_fno() -> type[nn.Module]:
    """The ``neuralop.models.FNO`` class, imported on first use.

    Importing neuraloperator installs a process-wide ``"once"`` filter for every
    ``UserWarning``; importing it inside ``catch_warnings`` keeps the caller's filters. It
    also takes a second, which ``import zoo`` does not pay unless an FNO is built.
    """
    with warnings.catch_warnings():
        from neuralop.models import FNO
    return FNO


def _drop_neuraloperator_metadata(module: nn.Module, state_dict: dict, *args: object) -> None:
    """Remove the ``_metadata`` entry that neuraloperator models add to state dicts.

    ``neuralop``'s ``BaseModel.state_dict`` stores its constructor arguments (a function
    and a class among them) under the top-level key ``_metadata``: a checkpoint holding it
    fails to load with ``weights_only=True``, and strict loading rejects the key. The
    architecture is rebuilt from the forecaster's hyper-parameters instead.
    """
    state_dict.pop("_metadata", None)


@register_model("fno_forecaster")
class FNOForecaster(TrajectoryModule):
    """Fourier neural operator forecaster: one FNO pass from the context to the trajectory.

    Two mappings, chosen by which of ``state_dim`` and ``num_times`` is given:

    * vector states ``(B, T, D)`` (``state_dim=D``) have no spatial grid, so the FNO runs
      over time: its input is the free function ``f`` with the normalised time as one more
      channel, ``(B, D + 1, T)``, and its output ``(B, D, T)`` is added to ``f``. The
      time grid must be uniform (the Fourier transform assumes it), and any number of
      frames works.
    * fields ``(B, T, *space)`` (``num_times=T``) follow the FNO paper's time-as-channels
      setup: the context frames are the input channels over the spatial grid (with the
      grid's coordinates appended) and the output channels are the frames to predict,
      added to the last context frame. ``len(n_modes)`` sets the spatial dimension (1 for
      ``(B, T, X)``, 2 for ``(B, T, H, W)``); the times themselves are not seen, so the
      model assumes the time grid it was trained on.

    With ``keep_context`` the prediction's context frames are the given frames and, for
    fields, the FNO predicts only the ``T - context`` later ones.

    From "Fourier Neural Operator for Parametric Partial Differential Equations" (Li et
    al., ICLR 2021), with ``neuralop.models.FNO`` as the operator.

    Args:
        n_modes: Fourier modes kept per dimension of the FNO's grid: one entry (time) for
            vector states, one per spatial dimension for fields.
        hidden_dim: Width of the FNO's Fourier layers (its ``hidden_channels``).
        num_layers: Fourier layers (its ``n_layers``).
        state_dim: Size ``D`` of vector states: run the FNO over time.
        num_times: Frames ``T`` of field trajectories: run the FNO over space.
        keep_context: Return the given frames as the prediction's context frames.
        domain_padding: Fraction of the grid to zero-pad on each side before the Fourier
            layers (0: none), which helps grids that are not periodic.
        context, target, normalize, lr, weight_decay: See :class:`TrajectoryModule`.

    Shapes:
        y: ``(B, T, state_dim)``, or ``(B, num_times, *space)`` with ``len(space) ==
        len(n_modes)``; t: ``(B, T)``; output: as ``y``.
    """

    def __init__(
        self,
        n_modes: tuple[int, ...] = (16,),
        hidden_dim: int = 32,
        num_layers: int = 4,
        state_dim: int | None = None,
        num_times: int | None = None,
        keep_context: bool = True,
        domain_padding: float = 0.0,
        context: int = 1,
        target: Literal["future", "all"] = "future",
        normalize: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(context, target, normalize, lr, weight_decay)
        self.save_hyperparameters(logger=False)
        n_modes = tuple(n_modes)
        if (state_dim is None) == (num_times is None):
            raise ValueError(
                "FNOForecaster needs exactly one of state_dim (vector states (B, T, D): an FNO "
                "over time) and num_times (fields (B, T, *space): an FNO over space with frames "
                f"as channels); got state_dim={state_dim} and num_times={num_times}"
            )
        if not n_modes or any(m < 1 for m in n_modes):
            raise ValueError(f"n_modes must be positive integers, got {n_modes}")
        if state_dim is not None and len(n_modes) != 1:
            raise ValueError(
                f"vector states run a 1-D FNO over time: n_modes needs one entry, got {n_modes}"
            )
        if num_times is not None and num_times <= context:
            raise ValueError(
                f"num_times={num_times} leaves no frame to predict after context={context}"
            )
        if domain_padding < 0:
            raise ValueError(f"domain_padding must be non-negative, got {domain_padding}")
        self.n_modes, self.state_dim, self.num_times = n_modes, state_dim, num_times
        self.keep_context = keep_context
        if state_dim is not None:
            in_channels, out_channels, embedding = state_dim + 1, state_dim, None
        else:
            in_channels, embedding = context, "grid"
            out_channels = num_times - context if keep_context else num_times
        self.fno = _neuraloperator_fno()(
            n_modes=n_modes,
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_dim,
            n_layers=num_layers,
            positional_embedding=embedding,
            domain_padding=domain_padding or None,
        )
        self.register_state_dict_post_hook(_drop_neuraloperator_metadata)
        log.debug(
            "FNOForecaster over %s: %d -> %d channels",
            "time" if state_dim is not None else f"{len(n_modes)}-D space",
            in_channels,
            out_channels,
        )

    @property
    def is_vector_state(self) -> bool:
        return self.state_dim is not None

    def solve(self, f: Tensor, t: Tensor) -> Tensor:
        if self.state_dim is not None:
            return self._solve_over_time(f, t)
        return self._solve_over_space(f)

    def _solve_over_time(self, f: Tensor, t: Tensor) -> Tensor:
        if f.ndim != 3 or f.shape[-1] != self.state_dim:
            raise ValueError(
                f"FNOForecaster(state_dim={self.state_dim}) expects vector states "
                f"(B, T, {self.state_dim}), got {tuple(f.shape)}"
            )
        dt = t.diff(dim=1)
        if not torch.allclose(dt, dt[:, :1].expand_as(dt), rtol=1e-3, atol=1e-6):
            raise NotImplementedError(
                "an FNO over time needs uniformly spaced time stamps; non-uniform time grids "
                "are not supported yet"
            )

        x = torch.cat([f, t.unsqueeze(-1)], dim=-1).transpose(1, 2)  # (B, D + 1, T)
        prediction = f + self.fno(x).transpose(1, 2)

        if self.keep_context:
            prediction = torch.cat([f[:, : self.context], prediction[:, self.context :]], dim=1)
        return prediction

    def _solve_over_space(self, f: Tensor) -> Tensor:
        if f.shape[1] != self.num_times or f.ndim - 2 != len(self.n_modes):
            raise ValueError(
                f"FNOForecaster(num_times={self.num_times}, n_modes={self.n_modes}) expects "
                f"fields (B, {self.num_times}, ...) with {len(self.n_modes)} spatial "
                f"dimension(s), got {tuple(f.shape)}"
            )

        change = self.fno(f[:, : self.context])  # frames are channels

        if self.keep_context:
            return torch.cat([f[:, : self.context], f[:, self.context :] + change], dim=1)
        return f + change


class VectorField(nn.Module):
    """The right-hand side ``g(z, t)`` of ``dz/dt = g(z, t)``, as an MLP on ``[z, t]``.

    The output layer starts small, so that at initialisation the state barely moves and the
    forecast is close to holding the last context frame.

    Shapes:
        t: ``()``; z: ``(B, state_dim)``; output: ``(B, state_dim)``.
    """

    def __init__(self, state_dim: int, hidden_dim: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        self.net = mlp(state_dim + 1, [hidden_dim] * num_layers, state_dim, nn.SiLU)
        nn.init.xavier_uniform_(self.net[-1].weight, gain=0.01)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        time = t.to(z).reshape(1, 1).expand(len(z), 1)
        return self.net(torch.cat([z, time], dim=-1))


@register_model("neural_ode")
class NeuralODE(TrajectoryModule):
    """Neural ODE forecaster: integrates ``dz/dt = g(z, t)`` from the last context frame.

    ``z(t_{c-1})`` is the last context frame (flattened, or encoded to tokens and
    flattened), ``g`` is a :class:`VectorField` MLP, and ``z`` is integrated with
    ``torchdiffeq`` over the normalised time stamps from ``t_{c-1}`` on; the frames after
    the context are ``z`` at the later time stamps (decoded with an encoder). The context
    frames of the prediction are the given frames. Trajectories of a batch may have
    different time grids: each distinct grid is integrated on its own.

    From "Neural Ordinary Differential Equations" (Chen et al., NeurIPS 2018).

    Args:
        state_dim: Size of the ODE state: the vector state's size, a field's number of
            grid points (without an encoder), or patches times token size (with one).
        hidden_dim: Width of the vector field's hidden layers.
        num_layers: Hidden layers of the vector field.
        encoder: Field encoder to tokens (``zoo.integral.PatchEncoder1d`` / ``2d``), or
            ``None``: the state is the frame itself, flattened (fields without an encoder
            are then normalised per grid point, as vector states are per dimension).
        decoder: The encoder's inverse.
        method: ``torchdiffeq`` solver: adaptive (``dopri5``, ...) or fixed-step (``rk4``,
            ...).
        rtol: Relative tolerance of an adaptive solver.
        atol: Absolute tolerance of an adaptive solver.
        step_size: Step of a fixed-step solver in normalised time; ``None`` steps from one
            time stamp to the next.
        adjoint: Back-propagate with the adjoint method (memory constant in the number of
            solver steps, at the cost of a second integration backwards).
        context, target, normalize, lr, weight_decay: See :class:`TrajectoryModule`.

    Shapes:
        y: ``(B, T, D)``, ``(B, T, X)`` or ``(B, T, H, W)``; t: ``(B, T)``; output: as ``y``.
    """

    def __init__(
        self,
        state_dim: int = 1,
        hidden_dim: int = 64,
        num_layers: int = 2,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        method: ODEMethod = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-4,
        step_size: float | None = None,
        adjoint: bool = False,
        context: int = 1,
        target: Literal["future", "all"] = "future",
        normalize: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(context, target, normalize, lr, weight_decay)
        save_module_hyperparameters(self, ("encoder", "decoder"))
        if (encoder is None) != (decoder is None):
            raise ValueError("give both an encoder and a decoder, or neither")
        if state_dim < 1:
            raise ValueError(f"state_dim must be positive, got {state_dim}")
        if method not in ADAPTIVE_METHODS + FIXED_STEP_METHODS:
            raise ValueError(
                f"unknown ODE method {method!r}; expected one of "
                f"{ADAPTIVE_METHODS + FIXED_STEP_METHODS}"
            )
        if step_size is not None and step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        if step_size is not None and method in ADAPTIVE_METHODS:
            warnings.warn(
                f"step_size={step_size} is ignored by the adaptive method {method!r}; "
                f"choose one of {FIXED_STEP_METHODS} to step at a fixed size",
                UserWarning,
                stacklevel=2,
            )
        self.state_dim, self.method, self.rtol, self.atol = state_dim, method, rtol, atol
        self.step_size, self.adjoint = step_size, adjoint
        self.encoder = None if encoder is None else build_module(encoder)
        self.decoder = None if decoder is None else build_module(decoder)
        self.vector_field = VectorField(state_dim, hidden_dim, num_layers)

    @property
    def is_vector_state(self) -> bool:
        return self.encoder is None

    def solve(self, f: Tensor, t: Tensor) -> Tensor:
        c = self.context
        z0 = f[:, c - 1 : c] if self.encoder is None else self.encoder(f[:, c - 1 : c])
        latent_shape = z0.shape[2:]
        z0 = z0.flatten(2)[:, 0]  # (B, state_dim)
        if z0.shape[-1] != self.state_dim:
            raise ValueError(
                f"NeuralODE(state_dim={self.state_dim}) got states of shape "
                f"{tuple(latent_shape)} ({z0.shape[-1]} values); set state_dim={z0.shape[-1]}"
            )

        z = self._integrate(z0, t[:, c - 1 :])  # (B, T - c + 1, state_dim)

        z = z.view(*z.shape[:2], *latent_shape)
        future = z if self.decoder is None else self.decoder(z)
        return torch.cat([f[:, :c], future[:, 1:]], dim=1)

    def _integrate(self, z0: Tensor, times: Tensor) -> Tensor:
        """``z`` at ``times`` ``(B, S)`` from ``z0`` ``(B, state_dim)`` at ``times[:, 0]``."""
        grids, group = torch.unique(times, dim=0, return_inverse=True)
        if len(grids) == 1:
            return self._odeint(z0, grids[0]).transpose(0, 1)
        log.debug("integrating %d distinct time grids separately", len(grids))
        z = z0.new_empty(len(z0), times.shape[1], z0.shape[-1])
        for k, grid in enumerate(grids):
            rows = group == k
            z[rows] = self._odeint(z0[rows], grid).transpose(0, 1)
        return z

    def _odeint(self, z0: Tensor, grid: Tensor) -> Tensor:
        options = None
        if self.step_size is not None and self.method in FIXED_STEP_METHODS:
            options = {"step_size": self.step_size}
        integrate = odeint_adjoint if self.adjoint else odeint
        return integrate(
            self.vector_field,
            z0,
            grid.to(z0),
            rtol=self.rtol,
            atol=self.atol,
            method=self.method,
            options=options,
        )


@register_model("transformer_forecaster")
class TransformerForecaster(NeuralIntegralEquation):
    """A transformer forecaster: ANIE's operator applied once, ``z = f + I[f]``, no solver.

    The tokens are ANIE's (one per time stamp for vector states, one per time stamp and
    patch of an encoded field, with their time and patch coordinates) and ``I`` is the same
    :class:`~zoo.integral.operators.AttentionIntegral`; the prediction is ``f`` plus one
    pass of it, decoded for fields. This is :class:`~zoo.integral.module.ANIE` with a single
    Picard step and no smoothing (``iterations=1, alpha=0``): the ablation of the
    integral-equation solver, which shows what iterating ``z = f + I[z]`` adds over a plain
    residual transformer.

    From "Learning integral operators via neural integral equations" (Zappala et al.,
    Nature Machine Intelligence, 2024), its transformer baseline.

    Args:
        integral: The attention operator ``I`` (a module or its config); ``None`` builds
            one for 1-D states.
        encoder: Field encoder to tokens (``zoo.integral.PatchEncoder1d`` / ``2d``);
            ``None`` for vector states.
        decoder: The encoder's inverse.
        context, target, normalize, lr, weight_decay: See :class:`TrajectoryModule`.

    Shapes:
        y: ``(B, T, D)``, ``(B, T, X)`` or ``(B, T, H, W)``; t: ``(B, T)``; output: as ``y``.
    """

    def __init__(
        self,
        integral: nn.Module | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        context: int = 1,
        target: Literal["future", "all"] = "future",
        normalize: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(
            integral,
            encoder,
            decoder,
            alpha=0.0,
            iterations=1,
            context=context,
            target=target,
            normalize=normalize,
            lr=lr,
            weight_decay=weight_decay,
        )
        for fixed in ("alpha", "iterations", "tol", "grad"):  # not arguments of this class
            self.hparams.pop(fixed, None)
        if not isinstance(self.integral, AttentionIntegral):
            raise TypeError(
                f"integral must be an AttentionIntegral, got {type(self.integral).__name__}"
            )
