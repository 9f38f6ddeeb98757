"""Two-dimensional Fourier helpers shared by every frequency analysis in the zoo.

Conventions: images and masks have the spatial axes last, ``(..., H, W)``. Masks are
stored in the unshifted order of ``torch.fft.fft2`` (DC at index ``[0, 0]``);
``torch.fft.fftshift`` is applied only for display. Radii are measured in units of the
Nyquist frequency, so the edge midpoints of the spectrum lie at radius 1 and its corners
at radius sqrt(2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "angular_band_energy",
    "angular_bands",
    "apply_fourier_mask",
    "band_energy",
    "effective_filter",
    "frequency_angle",
    "frequency_radius",
    "high_frequency_fraction",
    "high_pass",
    "low_pass",
    "power_spectrum",
    "radial_band_energy",
    "radial_bands",
    "radial_profile",
]


def _check_image(x: Tensor, name: str = "x") -> None:
    if x.ndim < 2:
        raise ValueError(f"{name} must have shape (..., H, W), got {tuple(x.shape)}")


def frequency_radius(
    height: int, width: int, device: torch.device | None = None, shifted: bool = False
) -> Tensor:
    """Radius of every FFT bin in units of the Nyquist frequency, shape ``(H, W)``."""
    fy = torch.fft.fftfreq(height, device=device)
    fx = torch.fft.fftfreq(width, device=device)
    radius = 2.0 * torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return torch.fft.fftshift(radius) if shifted else radius


def frequency_angle(
    height: int, width: int, device: torch.device | None = None, shifted: bool = False
) -> Tensor:
    """Angle of every FFT bin in ``[0, 2 pi)``, measured from the positive x frequency axis."""
    fy = torch.fft.fftfreq(height, device=device)
    fx = torch.fft.fftfreq(width, device=device)
    angle = torch.atan2(fy[:, None].expand(height, width), fx[None, :].expand(height, width))
    angle = torch.remainder(angle, 2 * math.pi)
    return torch.fft.fftshift(angle) if shifted else angle


def apply_fourier_mask(x: Tensor, mask: Tensor) -> Tensor:
    """Filter images by a real mask over their unshifted spectrum: ``Re(ifft2(M * fft2(x)))``.

    Because ``x`` and ``M`` are real, the filter that acts is the symmetrised mask
    ``(M(k) + M(-k)) / 2`` (see :func:`effective_filter`).

    Args:
        x: Real images.
        mask: Real mask broadcastable to ``x``, with the same two trailing axes.

    Shapes:
        x: ``(..., H, W)``; mask: ``(..., H, W)``; output: like ``x``.
    """
    _check_image(x)
    if mask.shape[-2:] != x.shape[-2:]:
        raise ValueError(
            f"mask spatial size {tuple(mask.shape[-2:])} does not match the images' "
            f"{tuple(x.shape[-2:])}; the mask must be (..., H, W) with the images' H and W"
        )
    return torch.fft.ifft2(mask * torch.fft.fft2(x)).real


def effective_filter(mask: Tensor) -> Tensor:
    """The symmetric filter ``(M(k) + M(-k)) / 2`` that a real mask applies to real images."""
    _check_image(mask, "mask")
    mirrored = torch.roll(torch.flip(mask, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))
    return 0.5 * (mask + mirrored)


def power_spectrum(x: Tensor) -> Tensor:
    """Unshifted power ``|fft2(x)|^2`` of images ``(..., H, W)``."""
    _check_image(x)
    return torch.fft.fft2(x).abs().square()


def radial_profile(x: Tensor, num_bins: int | None = None) -> Tensor:
    """Mean power of ``x`` in rings of equal width from DC to the spectrum's corner.

    Args:
        x: Real images.
        num_bins: Number of rings; default ``min(H, W) // 2``.

    Shapes:
        x: ``(..., H, W)``; output: ``(..., num_bins)``.
    """
    power = power_spectrum(x)
    height, width = x.shape[-2:]
    num_bins = num_bins or min(height, width) // 2
    bands = radial_bands(height, width, num_bins, device=x.device).to(power.dtype)
    counts = bands.sum(dim=(-2, -1)).clamp_min(1)
    return torch.einsum("...hw,bhw->...b", power, bands) / counts


def high_frequency_fraction(x: Tensor, radius: float = 0.5) -> Tensor:
    """Fraction of the spectral energy of ``x`` at radii above ``radius`` (Nyquist units).

    The DC bin is excluded from both numerator and denominator, so a constant offset
    does not dilute the fraction. Shapes: ``(..., H, W)`` to ``(...)``.
    """
    if not 0.0 <= radius <= math.sqrt(2):
        raise ValueError(f"radius must lie in [0, sqrt(2)] (Nyquist units), got {radius}")
    power = power_spectrum(x)
    r = frequency_radius(*x.shape[-2:], device=x.device)
    total = (power * (r > 0)).sum(dim=(-2, -1))
    high = (power * (r > radius)).sum(dim=(-2, -1))
    return high / total.clamp_min(torch.finfo(power.dtype).tiny)


def _radial_filter(x: Tensor, radius: float, keep_low: bool) -> Tensor:
    if radius < 0:
        raise ValueError(f"radius must be non-negative (Nyquist units), got {radius}")
    r = frequency_radius(*x.shape[-2:], device=x.device)
    mask = (r <= radius) if keep_low else (r > radius)
    return apply_fourier_mask(x, mask.to(x.dtype))


def low_pass(x: Tensor, radius: float) -> Tensor:
    """Ideal low-pass filter keeping frequencies with radius ``<= radius`` (Nyquist units)."""
    return _radial_filter(x, radius, keep_low=True)


def high_pass(x: Tensor, radius: float) -> Tensor:
    """Ideal high-pass filter keeping frequencies with radius ``> radius`` (Nyquist units)."""
    return _radial_filter(x, radius, keep_low=False)


def radial_bands(
    height: int, width: int, num_bands: int, device: torch.device | None = None
) -> Tensor:
    """Boolean rings of equal width in radius, from DC to the corner, shape ``(n, H, W)``.

    The rings partition the spectrum: every bin belongs to exactly one ring.
    """
    if num_bands < 1:
        raise ValueError(f"num_bands must be a positive integer, got {num_bands}")
    r = frequency_radius(height, width, device=device)
    edges = torch.linspace(0.0, math.sqrt(2), num_bands + 1, device=device)
    index = torch.bucketize(r, edges[1:-1], right=True)
    return index[None] == torch.arange(num_bands, device=device)[:, None, None]


def angular_bands(
    height: int, width: int, num_bands: int, device: torch.device | None = None
) -> Tensor:
    """Boolean wedges of equal angle over ``[0, 2 pi)``, inside the unit disk, ``(n, H, W)``."""
    if num_bands < 1:
        raise ValueError(f"num_bands must be a positive integer, got {num_bands}")
    angle = frequency_angle(height, width, device=device)
    inside = frequency_radius(height, width, device=device) <= 1.0
    index = torch.floor(angle / (2 * math.pi / num_bands)).long().clamp_max(num_bands - 1)
    wedges = index[None] == torch.arange(num_bands, device=device)[:, None, None]
    return wedges & inside


def band_energy(mask: Tensor, bands: Tensor) -> Tensor:
    """Energy of a mask in each band: ``|| band * M / ||M||_2 ||_2``.

    Shapes:
        mask: ``(..., H, W)``; bands: ``(n, H, W)``; output: ``(..., n)``.
    """
    _check_image(mask, "mask")
    norm = mask.flatten(-2).norm(dim=-1).clamp_min(torch.finfo(mask.dtype).tiny)
    squared = torch.einsum("...hw,bhw->...b", mask.square(), bands.to(mask.dtype))
    return squared.sqrt() / norm[..., None]


def radial_band_energy(mask: Tensor, num_bands: int = 32) -> Tensor:
    """Normalised energy of an unshifted mask in ``num_bands`` rings, ``(..., n)``."""
    return band_energy(mask, radial_bands(*mask.shape[-2:], num_bands, device=mask.device))


def angular_band_energy(mask: Tensor, num_bands: int = 32) -> Tensor:
    """Normalised energy of an unshifted mask in ``num_bands`` wedges, ``(..., n)``."""
    return band_energy(mask, angular_bands(*mask.shape[-2:], num_bands, device=mask.device))


def radial_centroid(energies: Tensor) -> Tensor:
    """Energy-weighted mean radius of ring energies from :func:`radial_band_energy`.

    In Nyquist units: 0 is DC, ``sqrt(2)`` the corner; a lower centroid means a mask that
    keeps lower frequencies.

    Shapes:
        energies: ``(..., n)``; output: ``(...)``.
    """
    n = energies.shape[-1]
    centres = (torch.arange(n, device=energies.device, dtype=energies.dtype) + 0.5) / n
    weights = energies.square()
    return (weights * centres).sum(-1) / weights.sum(-1).clamp_min(1e-12) * math.sqrt(2)
