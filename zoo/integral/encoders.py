"""Patch encoders and decoders that turn fields into tokens and back.

An encoder maps a trajectory of fields ``(B, T, *space)`` to tokens ``(B, T, P, dim)``
(``P`` patches per time) and gives the patches' centres in [0, 1]; a decoder inverts it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.nn.config import ConfigurableModule


def _check_divisible(size: int, patch_size: int, what: str) -> None:
    if patch_size < 1 or size % patch_size:
        raise ValueError(f"{what} {size} is not divisible by patch_size {patch_size}")


class PatchEncoder1d(ConfigurableModule):
    """Non-overlapping patches of a 1-D field, each embedded linearly.

    Args:
        size: Grid points of the field.
        patch_size: Points per patch.
        dim: Token size.

    Shapes:
        y: ``(B, T, size)``; output: ``(B, T, size // patch_size, dim)``.
    """

    def __init__(self, size: int, patch_size: int = 8, dim: int = 16) -> None:
        super().__init__()
        _check_divisible(size, patch_size, "field size")
        self.size, self.patch_size, self.dim = size, patch_size, dim
        self.proj = nn.Conv1d(1, dim, patch_size, stride=patch_size)

    @property
    def positions(self) -> Tensor:
        """Patch centres in [0, 1], ``(P, 1)``."""
        count = self.size // self.patch_size
        return ((torch.arange(count) + 0.5) / count).unsqueeze(-1)

    def forward(self, y: Tensor) -> Tensor:
        if y.shape[-1] != self.size:
            raise ValueError(f"PatchEncoder1d(size={self.size}) got fields {tuple(y.shape)}")
        batch, steps = y.shape[:2]
        tokens = self.proj(y.reshape(batch * steps, 1, self.size))  # (B T, dim, P)
        return tokens.transpose(1, 2).reshape(batch, steps, -1, self.dim)


class PatchDecoder1d(ConfigurableModule):
    """Maps each token back to its patch of a 1-D field.

    Shapes:
        z: ``(B, T, P, dim)``; output: ``(B, T, P * patch_size)``.
    """

    def __init__(self, patch_size: int = 8, dim: int = 16, hidden_dim: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, patch_size)
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).flatten(2)


class PatchEncoder2d(ConfigurableModule):
    """Non-overlapping square patches of a 2-D field, each embedded linearly.

    Args:
        size: ``(H, W)`` of the field.
        patch_size: Side of a patch.
        dim: Token size.

    Shapes:
        y: ``(B, T, H, W)``; output: ``(B, T, (H // p) * (W // p), dim)``.
    """

    def __init__(
        self, size: tuple[int, int] = (32, 32), patch_size: int = 4, dim: int = 32
    ) -> None:
        super().__init__()
        for side in size:
            _check_divisible(side, patch_size, "field side")
        self.size, self.patch_size, self.dim = tuple(size), patch_size, dim
        self.proj = nn.Conv2d(1, dim, patch_size, stride=patch_size)

    @property
    def positions(self) -> Tensor:
        """Patch centres in [0, 1]^2, ``(P, 2)``, row-major."""
        rows, cols = (side // self.patch_size for side in self.size)
        y = (torch.arange(rows) + 0.5) / rows
        x = (torch.arange(cols) + 0.5) / cols
        return torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(-1, 2)

    def forward(self, y: Tensor) -> Tensor:
        if tuple(y.shape[-2:]) != self.size:
            raise ValueError(f"PatchEncoder2d(size={self.size}) got fields {tuple(y.shape)}")
        batch, steps = y.shape[:2]
        tokens = self.proj(y.reshape(batch * steps, 1, *self.size))  # (B T, dim, h, w)
        return tokens.flatten(2).transpose(1, 2).reshape(batch, steps, -1, self.dim)


class PatchDecoder2d(ConfigurableModule):
    """Maps each token back to its square patch of a 2-D field.

    Shapes:
        z: ``(B, T, P, dim)``; output: ``(B, T, H, W)``.
    """

    def __init__(
        self,
        size: tuple[int, int] = (32, 32),
        patch_size: int = 4,
        dim: int = 32,
        hidden_dim: int = 128,
    ) -> None:
        super().__init__()
        for side in size:
            _check_divisible(side, patch_size, "field side")
        self.size, self.patch_size = tuple(size), patch_size
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, patch_size**2)
        )

    def forward(self, z: Tensor) -> Tensor:
        batch, steps = z.shape[:2]
        rows, cols = (side // self.patch_size for side in self.size)
        p = self.patch_size
        patches = self.net(z).view(batch, steps, rows, cols, p, p)
        return patches.permute(0, 1, 2, 4, 3, 5).reshape(batch, steps, *self.size)
