"""A velocity field as a mixture of expert fields, chosen per point by a Gumbel router.

.. math::
    v_\\theta(x, t) = \\sum_{m=1}^{M} r_m(x, t)\\, v_m(x, t)

where ``r(x, t)`` is one-hot: during training a Straight-Through Gumbel-Softmax sample of
the router's logits, at evaluation their argmax. The index of the chosen expert is an
unsupervised regime label of the point. From "FLUX: Geometry-Aware Longitudinal Flow
Matching with Mixture of Experts" (Ortega Caro et al., 2026).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn.config import ConfigurableModule
from zoo.nn.layers import mlp


def _check_width(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _time_column(t: Tensor, x: Tensor) -> Tensor:
    t = torch.as_tensor(t).to(x)
    return t.reshape(-1, 1).expand(len(x), 1) if t.numel() == 1 else t.reshape(len(x), 1)


class TimeMLP(ConfigurableModule):
    """A vector field ``v(x, t)``: an MLP on ``[x, t]`` with SELU activations.

    Args:
        dim: Dimension ``D`` of the points.
        hidden_dim: Width of the hidden layers.
        num_layers: Number of hidden layers.
        out_dim: Output size (default ``dim``).

    Shapes:
        x: ``(N, D)``; t: ``(N,)`` or a scalar; output: ``(N, out_dim)``.
    """

    def __init__(
        self, dim: int, hidden_dim: int = 64, num_layers: int = 3, out_dim: int | None = None
    ) -> None:
        super().__init__()
        _check_width("dim", dim)
        _check_width("hidden_dim", hidden_dim)
        _check_width("num_layers", num_layers)
        self.net = mlp(dim + 1, [hidden_dim] * num_layers, out_dim or dim, nn.SELU)
        self.dim = dim

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x, _time_column(t, x)], dim=-1))


class TemperatureSchedule:
    """Exponential annealing of the Gumbel-Softmax temperature.

    .. math::
        \\tau(k) = \\tau_{start} \\, (\\tau_{end} / \\tau_{start})^{\\min(k, K) / K}

    Args:
        start: Temperature at step 0.
        end: Temperature from step ``steps`` on (``end <= start``).
        steps: Steps ``K`` of the anneal.
    """

    def __init__(self, start: float = 1.0, end: float = 0.1, steps: int = 1000) -> None:
        if not (start > 0 and end > 0 and math.isfinite(start) and math.isfinite(end)):
            raise ValueError(
                f"temperatures tau_start and tau_end must be positive, got {start} and {end}"
            )
        if end > start:
            raise ValueError(
                f"the temperature anneals downwards: tau_end={end} must not exceed "
                f"tau_start={start}"
            )
        _check_width("tau_steps", steps)
        self.start, self.end, self.steps = float(start), float(end), steps

    def __call__(self, step: int) -> float:
        fraction = min(max(int(step), 0), self.steps) / self.steps
        return self.start * (self.end / self.start) ** fraction

    def __repr__(self) -> str:
        return f"TemperatureSchedule(start={self.start}, end={self.end}, steps={self.steps})"


class GumbelRouter(ConfigurableModule):
    """Router logits ``l(x, t)`` and one-hot expert choices by Straight-Through Gumbel-Softmax.

    In training mode (or ``hard=False``) with temperature ``tau``:

    .. math::
        y_{soft} = \\mathrm{softmax}((l + g) / \\tau), \\quad g \\sim \\mathrm{Gumbel}(0, 1),
        \\qquad y = \\mathrm{onehot}(\\arg\\max y_{soft}) - \\mathrm{sg}(y_{soft}) + y_{soft}

    so the forward value is exactly one-hot and the gradient is that of ``y_soft``. In
    evaluation mode (or ``hard=True``) ``y = onehot(argmax l)``, without noise.

    Args:
        dim: Dimension ``D`` of the points.
        num_experts: Number of experts ``M``.
        hidden_dim: Width of the hidden layers.
        num_layers: Number of hidden layers.

    Shapes:
        x: ``(N, D)``; t: ``(N,)`` or a scalar; outputs: ``(N, M)`` each.
    """

    def __init__(
        self, dim: int, num_experts: int, hidden_dim: int = 64, num_layers: int = 2
    ) -> None:
        super().__init__()
        _check_width("num_experts", num_experts)
        self.net = TimeMLP(dim, hidden_dim, num_layers, out_dim=num_experts)
        self.num_experts = num_experts

    def logits(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t)

    def forward(
        self, x: Tensor, t: Tensor, tau: float = 1.0, hard: bool | None = None
    ) -> tuple[Tensor, Tensor]:
        """One-hot choices ``y`` and the noise-free router probabilities ``softmax(l)``."""
        logits = self.logits(x, t)
        probs = logits.softmax(dim=-1)
        stochastic = self.training if hard is None else not hard
        if not stochastic:
            return F.one_hot(logits.argmax(dim=-1), self.num_experts).to(logits), probs
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}")
        uniform = torch.rand_like(logits).clamp(1e-10, 1 - 1e-10)
        gumbel = -torch.log(-torch.log(uniform))
        soft = ((logits + gumbel) / tau).softmax(dim=-1)
        onehot = F.one_hot(soft.argmax(dim=-1), self.num_experts).to(soft)
        return onehot - soft.detach() + soft, probs


class MixtureVelocity(ConfigurableModule):
    """``v(x, t) = sum_m r_m(x, t) v_m(x, t)``: expert MLPs of ``(x, t)`` and a Gumbel router.

    With one expert there is no router: ``r = 1``.

    Args:
        dim: Dimension ``D`` of the points.
        num_experts: Number of experts ``M``.
        hidden_dim: Width of each expert's hidden layers.
        num_layers: Hidden layers of each expert.
        router_hidden_dim: Width of the router's hidden layers.
        router_layers: Hidden layers of the router.

    Shapes:
        x: ``(N, D)``; t: ``(N,)`` or a scalar; outputs: velocity ``(N, D)``, router
        choices ``(N, M)`` and router probabilities ``(N, M)``.
    """

    def __init__(
        self,
        dim: int,
        num_experts: int = 2,
        hidden_dim: int = 64,
        num_layers: int = 3,
        router_hidden_dim: int = 64,
        router_layers: int = 2,
    ) -> None:
        super().__init__()
        _check_width("num_experts", num_experts)
        self.experts = nn.ModuleList(
            TimeMLP(dim, hidden_dim, num_layers) for _ in range(num_experts)
        )
        self.router = (
            GumbelRouter(dim, num_experts, router_hidden_dim, router_layers)
            if num_experts > 1
            else None
        )
        self.dim, self.num_experts = dim, num_experts

    def route(
        self, x: Tensor, t: Tensor, tau: float = 1.0, hard: bool | None = None
    ) -> tuple[Tensor, Tensor]:
        """Router choices and probabilities ``(N, M)`` (all ones with one expert)."""
        if self.router is None:
            ones = x.new_ones(len(x), 1)
            return ones, ones
        return self.router(x, t, tau, hard)

    def forward(
        self, x: Tensor, t: Tensor, tau: float = 1.0, hard: bool | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points (N, {self.dim}), got {tuple(x.shape)}")
        weights, probs = self.route(x, t, tau, hard)
        velocities = torch.stack([expert(x, t) for expert in self.experts], dim=1)  # (N, M, D)
        return (weights.unsqueeze(-1) * velocities).sum(dim=1), weights, probs


def load_balance(probs: Tensor) -> Tensor:
    """``KL(mean usage || uniform) = sum_m pbar_m log(M pbar_m)``; 0 when usage is uniform.

    ``pbar`` is the mean of the router probabilities over the batch.
    """
    usage = probs.mean(dim=0)
    return (usage * (usage.clamp_min(1e-12) * probs.shape[-1]).log()).sum()


def routing_entropy(probs: Tensor) -> Tensor:
    """Mean entropy of the per-point router probabilities; 0 for one-hot routing."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(dim=-1).mean()


def temporal_coherence(probs: Tensor, probs_later: Tensor) -> Tensor:
    """Mean ``||p(x_t, t) - p(x_{t+delta}, t+delta)||^2`` along the same paths."""
    return (probs - probs_later).square().sum(dim=-1).mean()
