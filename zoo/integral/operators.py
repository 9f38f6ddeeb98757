"""Learned integral operators ``I[y](t) = integral over Omega(t) of G(y(s), t, s) ds``.

:class:`MonteCarloIntegral` is the NIE operator: a kernel network evaluated at quadrature
points. :class:`AttentionIntegral` is the ANIE operator: self-attention over tokens
``[y(s_j), s_j]``, read as a quadrature whose kernel is the attention matrix. Both come
from "Learning integral operators via neural integral equations" (Zappala et al., Nature
Machine Intelligence, 2024). ``Omega(t)`` is the whole domain (Fredholm) or the part up to
``t`` (Volterra).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.nn.config import ConfigurableModule, build_module
from zoo.nn.layers import mlp

ATTENTION_TYPES = ("softmax", "galerkin")


class IntegralAttention(nn.Module):
    """Multi-head self-attention as a quadrature over tokens.

    ``softmax``: ``softmax(Q K^T / sqrt(d)) V``. ``galerkin`` (Cao, "Choose a transformer:
    Fourier or Galerkin", 2021): ``Q (LN(K)^T LN(V)) / n``, linear in the number of tokens
    ``n``. With ``volterra: true`` token ``i`` sees only tokens whose time index is at most
    its own: a causal mask for softmax, running sums of ``K^T V`` for Galerkin (divided
    by the number of tokens seen).

    Shapes:
        x: ``(B, N, dim)``; time_index: ``(N,)``, non-decreasing; output: ``(B, N, dim)``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 4,
        attention: Literal["softmax", "galerkin"] = "galerkin",
        volterra: bool = False,
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_TYPES:
            raise ValueError(
                f"unknown attention type {attention!r}; expected one of {ATTENTION_TYPES}"
            )
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.num_heads, self.attention, self.volterra = (
            dim,
            num_heads,
            attention,
            volterra,
        )
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        head_dim = dim // num_heads
        self.k_norm = nn.LayerNorm(head_dim) if attention == "galerkin" else nn.Identity()
        self.v_norm = nn.LayerNorm(head_dim) if attention == "galerkin" else nn.Identity()

    def forward(self, x: Tensor, time_index: Tensor | None = None) -> Tensor:
        batch, n, _ = x.shape
        q, k, v = self.qkv(x).view(batch, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        if self.volterra and time_index is None:
            time_index = torch.arange(n, device=x.device)
        if self.attention == "softmax":
            scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
            if self.volterra:
                allowed = time_index[None, :] <= time_index[:, None]
                scores = scores.masked_fill(~allowed, float("-inf"))
            mixed = scores.softmax(dim=-1) @ v
        else:
            k, v = self.k_norm(k), self.v_norm(v)
            if self.volterra:
                mixed = self._causal_galerkin(q, k, v, time_index)
            else:
                mixed = q @ (k.transpose(-2, -1) @ v) / n
        return self.out(mixed.transpose(1, 2).reshape(batch, n, self.dim))

    @staticmethod
    def _causal_galerkin(q: Tensor, k: Tensor, v: Tensor, time_index: Tensor) -> Tensor:
        running = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=2)  # (B, H, N, d, d)
        # the last token at or before each token's time (tokens sharing a time see each other)
        last = torch.searchsorted(time_index.contiguous(), time_index, right=True) - 1
        seen = (last + 1).to(q.dtype).view(1, 1, -1, 1)
        return torch.einsum("bhnd,bhnde->bhne", q, running[:, :, last]) / seen


class AttentionBlock(nn.Module):
    """Pre-norm transformer block: attention and a feed-forward net, each with a residual."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        ff_dim: int,
        attention: Literal["softmax", "galerkin"],
        volterra: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = IntegralAttention(dim, num_heads, attention, volterra)
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, time_index: Tensor | None = None) -> Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), time_index))
        return x + self.dropout(self.ff(self.norm2(x)))


class AttentionIntegral(ConfigurableModule):
    """ANIE's integral operator: attention over tokens ``[y(s_j), coords_j]``.

    ``I[y]_i = W_out(T(W_in [y_j, c_j])_i)``, where ``T`` is a stack of attention blocks.
    Each attention layer is a quadrature ``sum_j K(c_i, c_j) V(y_j)`` with a kernel ``K``
    that depends on the tokens, so ``I`` is an integral operator over ``Omega(t)``. The
    output layer starts small (``init_gain``), so that at initialisation ``I`` is close
    to zero and the solver's iteration contracts.

    Args:
        state_dim: Size of a token's state ``y_j``.
        coord_dim: Size of a token's coordinates (1 for time, 2 for time and space, ...).
        hidden_dim: Width of the attention layers.
        num_heads: Attention heads.
        num_layers: Attention blocks.
        ff_dim: Hidden width of each block's feed-forward net.
        attention: ``galerkin`` (linear in the number of tokens) or ``softmax``.
        volterra: Integrate over the past only (``Omega(t) = [t_0, t]``).
        dropout: Dropout in the blocks.
        init_gain: Scale of the output layer's initial weights.

    Shapes:
        y: ``(B, N, state_dim)``; coords: ``(B, N, coord_dim)``; time_index: ``(N,)``;
        output: ``(B, N, state_dim)``.
    """

    def __init__(
        self,
        state_dim: int,
        coord_dim: int = 1,
        hidden_dim: int = 64,
        num_heads: int = 4,
        num_layers: int = 2,
        ff_dim: int = 128,
        attention: Literal["softmax", "galerkin"] = "galerkin",
        volterra: bool = False,
        dropout: float = 0.0,
        init_gain: float = 0.01,
    ) -> None:
        super().__init__()
        self.state_dim, self.coord_dim = state_dim, coord_dim
        self.volterra = volterra
        self.inp = nn.Linear(state_dim + coord_dim, hidden_dim)
        self.blocks = nn.ModuleList(
            AttentionBlock(hidden_dim, num_heads, ff_dim, attention, volterra, dropout)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self.outp = nn.Linear(hidden_dim, state_dim)
        nn.init.xavier_uniform_(self.outp.weight, gain=init_gain)
        nn.init.zeros_(self.outp.bias)

    def forward(self, y: Tensor, coords: Tensor, time_index: Tensor | None = None) -> Tensor:
        if y.shape[-1] != self.state_dim or coords.shape[-1] != self.coord_dim:
            raise ValueError(
                f"AttentionIntegral(state_dim={self.state_dim}, coord_dim={self.coord_dim}) got "
                f"states {tuple(y.shape)} and coordinates {tuple(coords.shape)}"
            )
        h = self.inp(torch.cat([y, coords], dim=-1))
        for block in self.blocks:
            h = block(h, time_index)
        return self.outp(self.norm(h))


class KernelMLP(ConfigurableModule):
    """The kernel ``G(y(s), t, s)`` of a neural integral equation, as an MLP.

    Shapes:
        y_s: ``(..., state_dim)``; t, s: ``(..., 1)``; output: ``(..., state_dim)``.
    """

    def __init__(self, state_dim: int, hidden_dim: int = 64, num_layers: int = 2) -> None:
        super().__init__()
        self.net = mlp(state_dim + 2, [hidden_dim] * num_layers, state_dim, nn.SiLU)
        nn.init.xavier_uniform_(self.net[-1].weight, gain=0.01)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, y_s: Tensor, t: Tensor, s: Tensor) -> Tensor:
        return self.net(torch.cat([y_s, t, s], dim=-1))


def interpolate(y: Tensor, t: Tensor, s: Tensor) -> Tensor:
    """Piecewise-linear interpolation of ``y`` sampled at ``t`` at the times ``s``.

    Shapes:
        y: ``(B, T, D)``; t: ``(B, T)`` increasing; s: ``(B, M)``; output: ``(B, M, D)``.
    """
    right = torch.searchsorted(t.contiguous(), s.contiguous()).clamp(1, t.shape[1] - 1)
    left = right - 1
    t_left, t_right = t.gather(1, left), t.gather(1, right)
    w = ((s - t_left) / (t_right - t_left)).unsqueeze(-1)
    index = lambda i: i.unsqueeze(-1).expand(-1, -1, y.shape[-1])  # noqa: E731
    return (1 - w) * y.gather(1, index(left)) + w * y.gather(1, index(right))


class MonteCarloIntegral(ConfigurableModule):
    """NIE's integral operator: quadrature of a kernel over ``Omega(t)``.

    ``I[y](t) = |Omega(t)| mean_m G(y(s_m), t, s_m)`` with ``s_m`` uniform on ``Omega(t)``
    and ``y(s)`` interpolated linearly between the grid points (``monte_carlo``), or the
    trapezoidal rule on the grid itself (``trapezoid``, deterministic). ``Omega(t)`` is
    ``[t_0, t_end]`` (Fredholm) or ``[t_0, t]`` (Volterra).

    Args:
        state_dim: Size of the state ``y(t)``.
        hidden_dim: Width of the default kernel :class:`KernelMLP`.
        num_layers: Hidden layers of the default kernel.
        num_samples: Monte-Carlo points per output time.
        volterra: Integrate over the past only.
        quadrature: ``monte_carlo`` or ``trapezoid``.
        kernel: A kernel module ``G(y_s, t, s)`` (or its config) instead of the MLP.

    Shapes:
        y: ``(B, T, state_dim)``; t: ``(B, T)`` increasing; output: ``(B, T, state_dim)``.
    """

    def __init__(
        self,
        state_dim: int,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_samples: int = 64,
        volterra: bool = False,
        quadrature: Literal["monte_carlo", "trapezoid"] = "monte_carlo",
        kernel: nn.Module | dict | None = None,
    ) -> None:
        super().__init__()
        if quadrature not in ("monte_carlo", "trapezoid"):
            raise ValueError(f"quadrature must be 'monte_carlo' or 'trapezoid', got {quadrature!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        self.state_dim, self.num_samples = state_dim, num_samples
        self.volterra, self.quadrature = volterra, quadrature
        self.kernel = (
            KernelMLP(state_dim, hidden_dim, num_layers) if kernel is None else build_module(kernel)
        )

    def forward(self, y: Tensor, t: Tensor) -> Tensor:
        if y.shape[-1] != self.state_dim or y.shape[:2] != t.shape:
            raise ValueError(
                f"MonteCarloIntegral(state_dim={self.state_dim}) expects y (B, T, "
                f"{self.state_dim}) and t (B, T), got {tuple(y.shape)} and {tuple(t.shape)}"
            )
        if self.quadrature == "trapezoid":
            return self._trapezoid(y, t)
        batch, steps, _ = y.shape
        start = t[:, :1, None]
        end = t[:, :, None] if self.volterra else t[:, -1:, None].expand(-1, steps, 1)
        u = torch.rand(batch, steps, self.num_samples, device=y.device, dtype=y.dtype)
        s = start + (end - start) * u  # (B, T, M)
        y_s = interpolate(y, t, s.flatten(1)).view(batch, steps, self.num_samples, -1)
        t_out = t[:, :, None, None].expand(-1, -1, self.num_samples, 1)
        values = self.kernel(y_s, t_out, s.unsqueeze(-1))
        return (end - start) * values.mean(dim=2)

    def _trapezoid(self, y: Tensor, t: Tensor) -> Tensor:
        steps = y.shape[1]
        t_out = t[:, :, None, None].expand(-1, -1, steps, 1)
        s = t[:, None, :, None].expand(-1, steps, -1, 1)
        values = self.kernel(y[:, None].expand(-1, steps, -1, -1), t_out, s)  # (B, T, S, D)
        dt = t.diff(dim=1)  # (B, T - 1)
        # trapezoid weights of node j on [t_0, t_i]: half of each interval next to j, up to i
        intervals = torch.ones(steps, steps - 1, device=y.device, dtype=y.dtype)
        if self.volterra:
            intervals = torch.tril(intervals, diagonal=-1)  # interval k lies in [t_0, t_i] if k < i
        spans = intervals[None] * dt[:, None, :]  # (B, T, T - 1)
        weights = 0.5 * (F.pad(spans, (0, 1)) + F.pad(spans, (1, 0)))  # (B, T, S)
        return torch.einsum("bis,bisd->bid", weights, values)
