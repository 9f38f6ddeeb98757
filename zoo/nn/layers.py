"""Layers: full-width circular and locally connected convolutions, and a plain MLP stack."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(
    in_dim: int, hidden_dims: Sequence[int], out_dim: int, activation: type[nn.Module]
) -> nn.Sequential:
    """``Linear, activation`` per hidden width, then a ``Linear`` to ``out_dim``.

    The linear layers sit at the even indices of the returned ``nn.Sequential`` and the
    output layer is its last entry, so callers can re-initialise it as ``net[-1]``.
    """
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), activation()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, out_dim))


class CircularConv2d(nn.Module):
    """Circular convolution with an image-sized kernel, computed as a product of spectra.

    .. math::
        y_o[n] = b_o + \\sum_c \\sum_m w_{oc}[m] \\, x_c[(n - m) \\bmod N]

    i.e. ``Y_o = b_o + sum_c W_oc * X_c`` in the 2-D Fourier domain; no image-sized
    ``nn.Conv2d`` is built.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        image_size: ``(H, W)``, the size of the kernel and of the inputs.
        bias: Add a learnable bias per output channel.

    Shapes:
        x: ``(B, in_channels, H, W)``; output: ``(B, out_channels, H, W)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, image_size: tuple[int, int], bias: bool = True
    ) -> None:
        super().__init__()
        self.image_size = tuple(image_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.image_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        fan_in = self.weight[0].numel()
        nn.init.uniform_(self.weight, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.image_size or x.shape[1] != self.weight.shape[1]:
            raise ValueError(
                f"CircularConv2d expects (B, {self.weight.shape[1]}, {self.image_size[0]}, "
                f"{self.image_size[1]}) inputs, got {tuple(x.shape)}"
            )
        spectrum = torch.einsum("bchw,ochw->bohw", torch.fft.rfft2(x), torch.fft.rfft2(self.weight))
        y = torch.fft.irfft2(spectrum, s=self.image_size)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        out_channels, in_channels = self.weight.shape[:2]
        return f"{in_channels}, {out_channels}, image_size={self.image_size}"


class LocallyConnected2d(nn.Module):
    """A convolution whose kernel differs at every output position (no weight sharing).

    .. math::
        y_o[p] = b_o[p] + \\sum_{c, k} w_{p, o, c, k} \\, x_c[p + k]

    The input patches are contracted with the per-position weights directly; no
    ``(B, positions, out, in * k * k)`` product tensor is formed.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        image_size: ``(H, W)`` of the inputs.
        kernel_size: Odd side of the square receptive field ("same" zero padding).
        bias: Add a learnable bias per output position and channel.

    Shapes:
        x: ``(B, in_channels, H, W)``; output: ``(B, out_channels, H, W)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        image_size: tuple[int, int],
        kernel_size: int = 3,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        self.image_size = tuple(image_size)
        self.kernel_size = kernel_size
        positions = self.image_size[0] * self.image_size[1]
        patch = in_channels * kernel_size**2
        self.weight = nn.Parameter(torch.empty(positions, out_channels, patch))
        self.bias = nn.Parameter(torch.empty(out_channels, positions)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1 / math.sqrt(self.weight.shape[-1])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        in_channels = self.weight.shape[-1] // self.kernel_size**2
        if tuple(x.shape[-2:]) != self.image_size or x.shape[1] != in_channels:
            raise ValueError(
                f"LocallyConnected2d expects (B, {in_channels}, {self.image_size[0]}, "
                f"{self.image_size[1]}) inputs, got {tuple(x.shape)}"
            )
        patches = F.unfold(x, self.kernel_size, padding=self.kernel_size // 2)  # (B, C k k, P)
        y = torch.einsum("bkp,pok->bop", patches, self.weight)
        if self.bias is not None:
            y = y + self.bias
        return y.view(len(x), -1, *self.image_size)

    def extra_repr(self) -> str:
        return (
            f"{self.weight.shape[-1] // self.kernel_size**2}, {self.weight.shape[1]}, "
            f"image_size={self.image_size}, kernel_size={self.kernel_size}"
        )
