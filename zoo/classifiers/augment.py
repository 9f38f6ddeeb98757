"""Per-image random affine transforms and noise, applied to batches on their device."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def random_affine(
    x: Tensor,
    scale: tuple[float, float] | None = None,
    translate: tuple[float, float] | None = None,
    degrees: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Warp every image by its own random scale, translation and rotation (zero fill).

    Args:
        x: Images.
        scale: Range of the zoom factor, e.g. ``(0.5, 1.5)``.
        translate: Largest shift as a fraction of the width and height, e.g. ``(0.4, 0.4)``.
        degrees: Largest rotation in degrees either way, e.g. ``180``.
        generator: Random generator.

    Shapes:
        x: ``(B, C, H, W)``; output: like ``x``.
    """
    batch = len(x)

    def uniform(low: float, high: float) -> Tensor:
        u = torch.rand(batch, generator=generator, device=generator.device if generator else None)
        return (low + (high - low) * u).to(x)

    zoom = uniform(*scale) if scale else torch.ones(batch).to(x)
    angle = uniform(-degrees, degrees) * math.pi / 180 if degrees else torch.zeros(batch).to(x)
    shift_x = uniform(-translate[0], translate[0]) * 2 if translate else torch.zeros(batch).to(x)
    shift_y = uniform(-translate[1], translate[1]) * 2 if translate else torch.zeros(batch).to(x)
    # the grid maps output to input coordinates: the inverse of the intended warp
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos, sin, -(cos * shift_x + sin * shift_y)], dim=-1),
            torch.stack([-sin, cos, -(-sin * shift_x + cos * shift_y)], dim=-1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
