"""Conditional paths between paired endpoints: straight lines bent by a learned network.

The path between ``x0`` at time ``t0`` and ``x1`` at ``t1`` is, with ``s = (t - t0) / (t1
- t0)``,

.. math::
    x_t = (1 - s)\\, x_0 + s\\, x_1 + 2 s (1 - s)\\, \\varphi_\\eta(x_0, x_1, t)

so that it meets both endpoints whatever the bend network ``phi`` outputs, and its tangent
``u_t = dx_t/dt`` is exact (forward-mode differentiation in ``t``). Trained to minimise the
kinetic energy in a data-dependent metric ``G``, the path follows the data manifold: the
geodesic interpolants of "Metric Flow Matching for Smooth Interpolations on the Data
Manifold" (Kapusniak et al., NeurIPS 2024), used by FLUX between adjacent marginals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from zoo.nn.config import ConfigurableModule
from zoo.nn.layers import mlp


class BendNetwork(ConfigurableModule):
    """The bend ``phi(x0, x1, t)`` of a conditional path: an MLP with SELU activations.

    The output layer starts at zero, so an untrained network gives straight lines.

    Args:
        dim: Dimension ``D`` of the points.
        hidden_dims: Widths of the hidden layers.

    Shapes:
        x0, x1: ``(N, D)``; t: ``(N,)``; output: ``(N, D)``.
    """

    def __init__(self, dim: int, hidden_dims: Sequence[int] = (64, 64, 64)) -> None:
        super().__init__()
        hidden_dims = list(hidden_dims)
        if dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim}")
        if not hidden_dims or any(w < 1 for w in hidden_dims):
            raise ValueError(f"hidden_dims must be positive widths, got {hidden_dims}")
        self.net = mlp(2 * dim + 1, hidden_dims, dim, nn.SELU)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.dim = dim

    def forward(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x0, x1, t.reshape(-1, 1).to(x0)], dim=-1))

    def forward_and_time_derivative(
        self, x0: Tensor, x1: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``phi`` and its exact partial derivative in ``t``, both ``(N, D)``.

        Forward-mode differentiation written out for the MLP: the tangent of the input is
        the unit vector of its time entry, a linear layer maps a tangent by its weight
        (no bias) and SELU multiplies it by ``selu'(z)`` at the layer's pre-activation
        ``z``. It is differentiable with respect to the parameters, and several times
        cheaper than a generic ``torch.func.jvp``.
        """
        h = torch.cat([x0, x1, t.reshape(-1, 1).to(x0)], dim=-1)
        tangent: Tensor | None = None
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                if tangent is None:  # d(input)/dt is the unit vector of the time entry
                    tangent = layer.weight[:, -1].expand(len(h), -1)
                else:
                    tangent = tangent @ layer.weight.T
                h = layer(h)
            else:
                tangent = tangent * _selu_derivative(h)
                h = layer(h)
        return h, tangent


_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805


def _selu_derivative(z: Tensor) -> Tensor:
    """``d selu(z) / dz``: ``scale`` for ``z > 0``, ``scale * alpha * exp(z)`` otherwise."""
    return _SELU_SCALE * torch.where(
        z > 0, torch.ones_like(z), _SELU_ALPHA * torch.exp(z.clamp(max=0))
    )


Bend = Callable[[Tensor, Tensor, Tensor], Tensor]


def geodesic_path(
    x0: Tensor,
    x1: Tensor,
    t0: Tensor,
    t1: Tensor,
    t: Tensor,
    phi: Bend | None = None,
) -> tuple[Tensor, Tensor]:
    """Point ``x_t`` and tangent ``u_t = dx_t/dt`` of the conditional path at time ``t``.

    ``phi=None`` gives the straight line, ``x_t = (1 - s) x0 + s x1`` and ``u_t = (x1 -
    x0) / (t1 - t0)``. With a bend, ``u_t`` is the exact total derivative in ``t`` (the
    bend's factor ``2s(1 - s)`` and ``phi``'s own time input included),

    .. math::
        u_t = \\frac{x_1 - x_0 + 2 (1 - 2s)\\, \\varphi}{t_1 - t_0} + 2 s (1 - s)\\,
        \\partial_t \\varphi

    with ``d_t phi`` from :meth:`BendNetwork.forward_and_time_derivative`, or from
    ``torch.func.jvp`` of the whole path for any other callable ``phi``. It stays
    differentiable with respect to ``phi``'s parameters.

    Args:
        x0: Start points ``(N, D)`` at times ``t0``.
        x1: End points ``(N, D)`` at times ``t1``.
        t0: Start times ``(N,)`` (or a scalar).
        t1: End times ``(N,)`` (or a scalar), ``t1 > t0``.
        t: Times ``(N,)`` on the path, normally in ``[t0, t1]``.
        phi: The bend network, or ``None``.

    Returns:
        ``(x_t, u_t)``, both ``(N, D)``.
    """
    if x0.shape != x1.shape or x0.ndim != 2:
        raise ValueError(
            f"x0 and x1 must be (N, D) of equal shape, got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    n = len(x0)
    t0, t1, t = (torch.as_tensor(v).to(x0).expand(n).contiguous() for v in (t0, t1, t))
    span = t1 - t0
    if (span <= 0).any():
        raise ValueError("every path needs t1 > t0")

    def point(time: Tensor) -> Tensor:
        s = ((time - t0) / span)[:, None]
        line = (1 - s) * x0 + s * x1
        if phi is None:
            return line
        return line + 2 * s * (1 - s) * phi(x0, x1, time)

    if phi is None:
        return point(t), ((x1 - x0) / span[:, None]).expand_as(x0)
    if isinstance(phi, BendNetwork):
        s = ((t - t0) / span)[:, None]
        bend, bend_dt = phi.forward_and_time_derivative(x0, x1, t)
        x_t = (1 - s) * x0 + s * x1 + 2 * s * (1 - s) * bend
        u_t = (x1 - x0 + 2 * (1 - 2 * s) * bend) / span[:, None] + 2 * s * (1 - s) * bend_dt
        return x_t, u_t
    x_t, u_t = torch.func.jvp(point, (t,), (torch.ones_like(t),))
    return x_t, u_t


def kinetic_energy(
    x_t: Tensor, u_t: Tensor, metric: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """Mean kinetic energy ``E[sum_d G_dd(x_t) u_{t,d}^2]`` in a diagonal metric.

    Args:
        x_t: Points ``(N, D)``.
        u_t: Tangents ``(N, D)``.
        metric: Maps points ``(N, D)`` to the metric's diagonal ``(N, D)``; ``None`` is
            the Euclidean metric ``G = I``, giving the mean of ``||u_t||^2``.

    Returns:
        A scalar tensor.
    """
    if x_t.shape != u_t.shape:
        raise ValueError(f"x_t and u_t must match, got {tuple(x_t.shape)} and {tuple(u_t.shape)}")
    squared = u_t.square()
    if metric is not None:
        squared = metric(x_t) * squared
    return squared.sum(dim=-1).mean()
