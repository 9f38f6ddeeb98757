import math

import numpy as np
import pytest
import torch

from zoo import spectral


def test_identity_mask():
    x = torch.randn(3, 2, 12, 10)
    assert torch.allclose(spectral.apply_fourier_mask(x, torch.ones(12, 10)), x, atol=1e-6)


def test_mask_size_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        spectral.apply_fourier_mask(torch.randn(1, 1, 8, 8), torch.ones(7, 8))


def test_effective_filter_of_non_symmetric_mask():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 9, 8, dtype=torch.float64)
    mask = torch.rand(9, 8, dtype=torch.float64)
    # M(-k) by explicit index arithmetic, independent of the roll/flip implementation
    i, j = np.meshgrid(np.arange(9), np.arange(8), indexing="ij")
    mirrored = mask[torch.as_tensor((-i) % 9), torch.as_tensor((-j) % 8)]
    symmetric = 0.5 * (mask + mirrored)
    assert torch.allclose(spectral.effective_filter(mask), symmetric)
    masked = spectral.apply_fourier_mask(x, mask)
    assert torch.allclose(masked, spectral.apply_fourier_mask(x, symmetric), atol=1e-12)
    # with the symmetric filter the inverse transform is real up to rounding
    assert torch.fft.ifft2(symmetric * torch.fft.fft2(x)).imag.abs().max() < 1e-12


def test_parseval():
    x = torch.randn(2, 16, 16, dtype=torch.float64)
    power = spectral.power_spectrum(x)
    assert torch.allclose(power.sum(dim=(-2, -1)) / 256, x.square().sum(dim=(-2, -1)))


def test_ring_mask_energy_in_its_band():
    bands = spectral.radial_bands(32, 32, 8)
    assert (bands.sum(0) == 1).all()  # the rings partition the spectrum
    ring = bands[3].double()
    energy = spectral.radial_band_energy(ring, 8)
    expected = torch.zeros(8, dtype=torch.float64)
    expected[3] = 1.0
    assert torch.allclose(energy, expected)
    wedge = spectral.angular_bands(32, 32, 6)[2].double()
    assert torch.allclose(
        spectral.angular_band_energy(wedge, 6), torch.eye(6, dtype=torch.float64)[2]
    )


def test_radius_closed_form():
    r = spectral.frequency_radius(8, 8)
    assert r[0, 0] == 0
    assert r[0, 4] == pytest.approx(1.0)  # Nyquist along x
    assert r[4, 4] == pytest.approx(math.sqrt(2))
    angle = spectral.frequency_angle(8, 8)
    assert angle[0, 1] == pytest.approx(0.0)
    assert angle[1, 0] == pytest.approx(math.pi / 2)


def test_high_frequency_fraction_of_pure_tones():
    n = 32
    grid = torch.arange(n, dtype=torch.float64)
    low = torch.cos(2 * math.pi * 2 * grid / n)[None, :].expand(n, n)  # radius 4/16
    high = torch.cos(2 * math.pi * 12 * grid / n)[None, :].expand(n, n)  # radius 24/16
    assert spectral.high_frequency_fraction(low, 0.5).item() == pytest.approx(0.0, abs=1e-12)
    assert spectral.high_frequency_fraction(high, 0.5).item() == pytest.approx(1.0)
    mix = low + high
    assert spectral.high_frequency_fraction(mix, 0.5).item() == pytest.approx(0.5)
    assert torch.allclose(spectral.low_pass(mix, 0.5), low, atol=1e-10)
    assert torch.allclose(spectral.high_pass(mix, 0.5), high, atol=1e-10)
    with pytest.raises(ValueError, match="radius"):
        spectral.high_frequency_fraction(mix, 3.0)


def test_radial_profile_of_a_tone():
    n = 16
    grid = torch.arange(n, dtype=torch.float64)
    tone = torch.cos(2 * math.pi * 3 * grid / n)[None, :].expand(n, n)
    profile = spectral.radial_profile(tone, num_bins=8)
    assert profile.shape == (8,)
    # all power sits at radius 3/8 of Nyquist: bin floor(3/8 / (sqrt(2)/8)) = 2
    assert profile.argmax().item() == 2
    assert (profile > 1e-9 * profile.max()).sum().item() == 1
