"""Trajectory data modules: interface, caching, numerics against invariants and closed forms."""

from __future__ import annotations

import math
import warnings

import h5py
import numpy as np
import pytest
import scipy.io
import torch
from scipy.integrate import simpson

import datamodules
from datamodules import (
    Burgers1D,
    FNOMatFile,
    IntegralEquationSpirals,
    Lorenz,
    LotkaVolterra,
    NavierStokes2D,
    SimulatedTrajectories,
    TrajectoryDataModule,
)
from datamodules.dynamics import (
    gaussian_random_field,
    navier_stokes_velocity,
    read_fno_mat,
    solve_burgers,
    solve_lotka_volterra,
    solve_navier_stokes,
    solve_spirals,
    spiral_free_function,
    spiral_kernel,
)

TINY = {
    LotkaVolterra: {"num_trajectories": 10, "num_snapshots": 20, "initial_range": (5.0, 10.0)},
    Lorenz: {"num_trajectories": 10, "t_max": 2.0, "num_snapshots": 20},
    IntegralEquationSpirals: {"num_trajectories": 10, "num_snapshots": 20, "quadrature_points": 32},
    Burgers1D: {"num_samples": 10, "resolution": 32, "t_max": 0.2, "num_snapshots": 5},
    NavierStokes2D: {"num_samples": 10, "resolution": 16, "t_max": 0.4, "num_snapshots": 3},
}
STATE_SHAPES = {
    LotkaVolterra: (2,),
    Lorenz: (3,),
    IntegralEquationSpirals: (2,),
    Burgers1D: (32,),
    NavierStokes2D: (16, 16),
}
SIMULATORS = list(TINY)


def make(cls: type, **kwargs) -> SimulatedTrajectories:
    return cls(
        **{**TINY[cls], "batch_size": 4, "val_fraction": 0.2, "test_fraction": 0.2, **kwargs}
    )


def full_data(dm: TrajectoryDataModule) -> tuple[torch.Tensor, torch.Tensor]:
    """Every trajectory in generation order, reassembled from the splits."""
    dm.setup()
    num = sum(len(v) for v in dm.splits.values())
    y = torch.empty(num, dm.num_times, *dm.state_shape)
    t = torch.empty(num, dm.num_times)
    for split, index in dm.split_indices.items():
        y[index], t[index] = dm.splits[split].tensors
    return y, t


@pytest.mark.parametrize("cls", SIMULATORS, ids=lambda c: c.__name__)
def test_simulator_interface_splits_and_batches(cls, tmp_path):
    dm = make(cls)
    expected = (STATE_SHAPES[cls], TINY[cls]["num_snapshots"])
    assert (dm.state_shape, dm.num_times) == expected  # known before generating
    assert not dm.cache_path.exists()

    dm.setup()
    assert (dm.state_shape, dm.num_times) == expected and dm.cache_path.is_file()
    assert dm.cache_path.parent == tmp_path / "zoo_home" / "data" / "dynamics"
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 6, "val": 2, "test": 2}
    indices = torch.cat(list(dm.split_indices.values()))
    assert sorted(indices.tolist()) == list(range(10))  # disjoint and covering

    y, t = next(iter(dm.train_dataloader()))
    assert y.shape == (4, dm.num_times, *dm.state_shape) and t.shape == (4, dm.num_times)
    assert y.dtype == t.dtype == torch.float32 and torch.isfinite(y).all()
    assert (torch.diff(t, dim=1) > 0).all() and t[0, 0] == 0
    assert dm.metadata["generator"] == cls.__name__ and dm.metadata["data_seed"] == 0
    for key, value in TINY[cls].items():
        assert dm.metadata[key] == (list(value) if isinstance(value, tuple) else value)

    val = next(iter(dm.val_dataloader()))[0]
    assert torch.equal(val, dm.splits["val"].tensors[0][:4])  # val is not shuffled


@pytest.mark.parametrize("cls", SIMULATORS, ids=lambda c: c.__name__)
def test_simulators_are_deterministic_by_seed(cls, tmp_path):
    first = make(cls, cache_dir=str(tmp_path / "a"))
    again = make(cls, cache_dir=str(tmp_path / "b"))  # regenerated, not read from a cache
    other = make(cls, cache_dir=str(tmp_path / "a"), data_seed=1)
    y1, y2, y3 = full_data(first)[0], full_data(again)[0], full_data(other)[0]
    assert torch.equal(y1, y2) and not torch.allclose(y1, y3)
    assert first.cache_path != other.cache_path


def test_splits_follow_seed_and_training_shuffle_is_seeded():
    dm1, dm2 = make(LotkaVolterra), make(LotkaVolterra)
    dm1.setup()
    dm2.setup()
    assert all(torch.equal(dm1.split_indices[k], dm2.split_indices[k]) for k in dm1.splits)
    first = [b[0] for b in dm1.train_dataloader()]
    second = [b[0] for b in dm2.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert not torch.equal(torch.cat(first), dm1.splits["train"].tensors[0])  # shuffled

    dm3 = make(LotkaVolterra, seed=5, data_seed=0)
    dm3.setup()
    assert any(not torch.equal(dm3.split_indices[k], dm1.split_indices[k]) for k in dm1.splits)
    assert torch.equal(full_data(dm3)[0], full_data(dm1)[0])  # same data, other split


def test_cache_is_reused_and_regenerated_when_parameters_change(monkeypatch):
    dm = make(LotkaVolterra)
    dm.setup()
    path = dm.cache_path
    blob = torch.load(path, weights_only=True)
    assert blob["metadata"] == dm.metadata and set(blob["parameters"]) == {"a", "b", "c", "d", "x0"}

    def refuse(self):
        raise AssertionError("the cache should have been reused")

    reused = make(LotkaVolterra)
    monkeypatch.setattr(LotkaVolterra, "simulate", refuse)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reused.setup()
    assert torch.equal(full_data(reused)[0], full_data(dm)[0])

    monkeypatch.undo()
    changed = make(LotkaVolterra, t_max=10.0)
    changed.setup()
    assert changed.cache_path != path and changed.metadata["t_max"] == 10.0
    assert float(changed.splits["train"].tensors[1].max()) == pytest.approx(10.0)
    assert torch.load(changed.cache_path, weights_only=True)["metadata"]["t_max"] == 10.0


def test_cache_with_other_metadata_is_regenerated_with_a_warning():
    dm = make(Burgers1D)
    dm.setup()
    blob = torch.load(dm.cache_path, weights_only=True)
    blob["metadata"] = {**blob["metadata"], "nu": 0.5}
    blob["y"] = blob["y"] * 0 + 1
    torch.save(blob, dm.cache_path)

    again = make(Burgers1D)
    with pytest.warns(UserWarning, match="other parameters.*nu"):
        again.setup()
    assert torch.equal(full_data(again)[0], full_data(dm)[0])
    assert torch.load(dm.cache_path, weights_only=True)["metadata"]["nu"] == 0.1


def test_corrupt_cache_is_regenerated_and_nan_cache_is_an_error():
    dm = make(Lorenz)
    dm.setup()
    reference = full_data(dm)[0]
    dm.cache_path.write_bytes(b"not a torch file")
    again = make(Lorenz)
    with pytest.warns(UserWarning, match="unreadable"):
        again.setup()
    assert torch.equal(full_data(again)[0], reference)

    blob = torch.load(dm.cache_path, weights_only=True)
    blob["y"][0, 3, 1] = float("nan")
    torch.save(blob, dm.cache_path)
    with pytest.raises(ValueError, match=r"cache file .*lorenz-.*\.pt.*NaN"):
        make(Lorenz).setup()


def test_time_stride_and_num_times():
    full = make(LotkaVolterra)
    sub = make(LotkaVolterra, time_stride=3, num_times=5)
    assert sub.num_times == 5
    y_full, t_full = full_data(full)
    y_sub, t_sub = full_data(sub)
    assert torch.equal(y_sub, y_full[:, ::3][:, :5]) and torch.equal(t_sub, t_full[:, ::3][:, :5])
    assert make(LotkaVolterra, time_stride=3).num_times == 7
    too_many = make(LotkaVolterra, time_stride=3, num_times=8)
    for call in (lambda: too_many.num_times, too_many.setup):
        with pytest.raises(ValueError, match="num_times=8 exceeds the 7 time stamps"):
            call()


def test_lotka_volterra_conserves_its_first_integral():
    rng = np.random.default_rng(0)
    a, b, c, d = rng.uniform(0.5, 1.5, 4), rng.uniform(0.5, 1.5, 4), *rng.uniform(0.5, 1.2, (2, 4))
    t = np.linspace(0, 15, 50)
    y = solve_lotka_volterra(np.full((4, 2), [10.0, 5.0]), a, b, c, d, t)
    x, p = y[..., 0], y[..., 1]
    h = (
        d[:, None] * b[:, None] * x
        - c[:, None] * np.log(x)
        + b[:, None] * p
        - a[:, None] * np.log(p)
    )
    assert np.abs(h - h[:, :1]).max() / np.abs(h).max() < 1e-8
    assert np.ptp(x, axis=1).min() > 1  # the populations do oscillate

    dm = make(LotkaVolterra, initial_range=None)
    y_dm = full_data(dm)[0].double()
    assert torch.allclose(y_dm[:, 0], torch.tensor([10.0, 5.0], dtype=torch.float64))
    q = {k: v[:, None] for k, v in dm.trajectory_parameters.items()}
    x, p = y_dm[..., 0], y_dm[..., 1]
    h = q["d"] * q["b"] * x - q["c"] * x.log() + q["b"] * p - q["a"] * p.log()
    assert float((h - h[:, :1]).abs().max() / h.abs().max()) < 1e-5  # float32 data

    logged = make(LotkaVolterra, initial_range=None, log_scale=True)
    assert torch.allclose(full_data(logged)[0], torch.log1p(full_data(dm)[0]))
    assert logged.cache_path == dm.cache_path


def test_lorenz_starts_in_the_box_and_reaches_the_attractor():
    dm = make(Lorenz, num_trajectories=5, t_max=20.0, val_fraction=0.0, test_fraction=0.0)
    y = full_data(dm)[0]
    assert ((y[:, 0] >= 0) & (y[:, 0] <= 0.5)).all()
    assert y[:, -5:, 2].mean() > 10 and y[:, 5:, 0].abs().max() > 5  # the butterfly's wings


def test_spirals_satisfy_their_integral_equation():
    dm = IntegralEquationSpirals(
        num_trajectories=4, num_snapshots=100, val_fraction=0.0, test_fraction=0
    )
    parameters = dm.draw_parameters()
    assert np.linalg.norm(parameters["amplitude"], axis=(1, 2)).max() < 0.7
    t = np.linspace(0, 1, 100)
    y = solve_spirals(parameters, t, quadrature_points=64)
    f = spiral_free_function(t, parameters)
    kernel = spiral_kernel(t, t, parameters)
    integral = simpson(np.einsum("ntsij,nsj->ntsi", kernel, np.tanh(y)), x=t, axis=2)
    assert np.abs(y - f - integral).max() < 1e-5  # an independent (Simpson) quadrature
    assert np.abs(y - f).max() > 0.05  # the integral term matters

    data = full_data(dm)[0].numpy()
    assert np.abs(data - y).max() < 1e-5 and 1.0 < np.abs(data).max() < 2.6


def test_gaussian_random_field_has_the_stated_covariance():
    rng = np.random.default_rng(0)
    k = np.fft.fftfreq(16, d=1 / 16)
    fields = gaussian_random_field(20000, 16, 1, 625.0, 5.0, 2.0, rng)
    eigenvalues = 625.0 * (4 * np.pi**2 * k**2 + 25.0) ** -2
    assert fields.var(axis=0).mean() == pytest.approx(eigenvalues.sum(), rel=0.05)
    spectrum = (np.abs(np.fft.fft(fields, axis=1)) ** 2).mean(0) / 16**2
    assert np.allclose(spectrum[1:4], eigenvalues[1:4], rtol=0.1)

    fields = gaussian_random_field(3000, 8, 2, 7**1.5, 7.0, 2.5, rng, zero_mean=True)
    k2 = k[::2, None] ** 2 / 4 + k[None, ::2] ** 2 / 4
    eigenvalues = 7**1.5 * (4 * np.pi**2 * k2 + 49.0) ** -2.5
    eigenvalues[0, 0] = 0
    assert fields.var(axis=0).mean() == pytest.approx(eigenvalues.sum(), rel=0.05)
    assert np.abs(fields.mean(axis=(1, 2))).max() < 1e-12


def test_burgers_matches_cole_hopf_and_dissipates_energy():
    nu, x = 0.1, torch.arange(64, dtype=torch.float64) / 64

    def cole_hopf(t: float) -> torch.Tensor:  # u = -2 nu (log phi)_x, phi = 2 + e cos(2 pi x)
        e = math.exp(-nu * 4 * math.pi**2 * t)
        return (
            4 * math.pi * nu * e * torch.sin(2 * math.pi * x) / (2 + e * torch.cos(2 * math.pi * x))
        )

    times = torch.tensor([0.0, 0.1, 0.4])
    u = solve_burgers(cole_hopf(0.0)[None], nu, times)[0]
    exact = torch.stack([cole_hopf(float(t)) for t in times])
    assert float((u - exact).abs().max()) < 1e-6

    dm = make(Burgers1D, t_max=0.5, num_snapshots=6)
    y = full_data(dm)[0].double()
    energy, mean = (y**2).mean(-1), y.mean(-1)
    assert (torch.diff(energy, dim=1) <= 1e-6 * energy[:, :1]).all()
    assert float(energy[:, -1].sum()) < 0.9 * float(energy[:, 0].sum())
    assert float((mean - mean[:, :1]).abs().max()) < 1e-5
    assert float(mean[:, 0].abs().max()) > 0.1  # the constant mode is drawn, and conserved


def test_navier_stokes_decaying_mode_matches_the_closed_form():
    n, nu, dt = 16, 1e-2, 1e-2
    x = torch.arange(n, dtype=torch.float64) / n
    xx, yy = torch.meshgrid(x, x, indexing="ij")
    # two modes of the same |k|^2 = 5: an exact steady Euler flow that only decays
    w0 = torch.sin(2 * math.pi * (xx + 2 * yy)) + torch.cos(2 * math.pi * (2 * xx - yy))
    times = torch.linspace(0, 1, 5, dtype=torch.float64)
    w = solve_navier_stokes(w0[None], nu, times, dt)[0]
    rate = nu * 4 * math.pi**2 * 5
    exact = torch.exp(-rate * times)[:, None, None] * w0
    assert float((w - exact).abs().max()) < 1e-4
    step = (1 - rate * dt / 2) / (1 + rate * dt / 2)  # Crank-Nicolson's factor, exactly
    discrete = step ** (times / dt).round()[:, None, None] * w0
    assert float((w - discrete).abs().max()) < 1e-12


def test_navier_stokes_conserves_energy_and_enstrophy_without_viscosity():
    rng = np.random.default_rng(0)
    w0 = torch.from_numpy(gaussian_random_field(2, 16, 2, 7**1.5, 7.0, 2.5, rng, True)) * 20
    w = solve_navier_stokes(w0, 0.0, torch.tensor([0.0, 0.5, 1.0]), 2e-3)
    u, v = navier_stokes_velocity(w)
    energy, enstrophy = (u**2 + v**2).mean((-2, -1)), (w**2).mean((-2, -1))
    assert float((energy / energy[:, :1] - 1).abs().max()) < 1e-5
    assert float((enstrophy / enstrophy[:, :1] - 1).abs().max()) < 1e-5
    assert float((w[:, -1] - w[:, 0]).abs().max()) > 0.1 * float(w[:, 0].abs().max())


def test_navier_stokes_data_are_divergence_free_with_zero_mean():
    dm = make(NavierStokes2D)
    w = full_data(dm)[0].double()
    n = w.shape[-1]
    u, v = navier_stokes_velocity(w)
    kx = torch.fft.fftfreq(n, d=1 / n, dtype=torch.float64)[:, None]
    ky = torch.fft.rfftfreq(n, d=1 / n, dtype=torch.float64)[None, :]
    divergence = torch.fft.irfft2(
        2j * math.pi * (kx * torch.fft.rfft2(u) + ky * torch.fft.rfft2(v)), s=(n, n)
    )
    gradient_scale = 2 * math.pi * float(u.abs().max())
    assert float(divergence.abs().max()) < 1e-10 * gradient_scale
    assert float(w.mean((-2, -1)).abs().max()) < 1e-6 * float(w.abs().max())
    assert float(w[:, -1].std()) > float(w[:, 0].std())  # the forcing drives the flow


def test_navier_stokes_warns_on_a_large_courant_number():
    rng = np.random.default_rng(0)
    w0 = torch.from_numpy(gaussian_random_field(1, 16, 2, 7**1.5, 7.0, 2.5, rng, True)) * 50
    with pytest.warns(UserWarning, match="Courant number"):
        solve_navier_stokes(w0, 1e-3, torch.tensor([0.0, 0.2]), 0.2, max_cfl=0.5)


def _fno_arrays(spatial: tuple[int, ...], steps: int = 3, num: int = 5):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((num, *spatial))
    u = rng.standard_normal((num, *spatial, steps))
    return a, u


def test_read_fno_mat_v5_burgers_and_navier_stokes(tmp_path):
    a, u = _fno_arrays((8,), steps=4)
    scipy.io.savemat(tmp_path / "burgers.mat", {"a": a, "u": u})
    y, t, info = read_fno_mat(tmp_path / "burgers.mat")
    assert y.shape == (5, 5, 8) and t is None and info["prepended_a"]
    assert np.array_equal(y[:, 0], a) and np.array_equal(y[:, 3], u[..., 2])

    scipy.io.savemat(tmp_path / "final.mat", {"a": a, "u": u[..., -1]})
    assert read_fno_mat(tmp_path / "final.mat")[0].shape == (5, 2, 8)

    a, u = _fno_arrays((6, 6), steps=3)
    scipy.io.savemat(tmp_path / "ns.mat", {"a": a, "u": u, "t": np.arange(1.0, 4.0)[None]})
    dm = FNOMatFile(str(tmp_path / "ns.mat"), batch_size=2, val_fraction=0.2, test_fraction=0.2)
    assert dm.state_shape == (6, 6) and dm.num_times == 4
    y, t = next(iter(dm.train_dataloader()))
    assert y.shape == (2, 4, 6, 6) and torch.equal(t[0], torch.tensor([0.0, 1.0, 2.0, 3.0]))
    assert dm.metadata["time_stamps"] == "file" and dm.metadata["format"] == "MATLAB v5"
    train = dm.split_indices["train"][0]
    assert np.allclose(dm.splits["train"].tensors[0][0, 2].numpy(), u[train, :, :, 1])

    dm = FNOMatFile(str(tmp_path / "ns.mat"), dt=0.5, keys={"t": "t"}, num_samples=3)
    dm.setup()
    assert sum(len(s) for s in dm.splits.values()) == 3
    assert dm.splits["train"].tensors[1][0].tolist() == [0.0, 0.5, 1.0, 1.5]


def test_read_fno_mat_hdf5_v73(tmp_path):
    a, u = _fno_arrays((6, 6), steps=3)
    path = tmp_path / "ns_v73.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        f["a"], f["u"] = a.T, u.T  # MATLAB writes its column-major arrays reversed
    with open(path, "r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file, written by a test".ljust(116))
    y, t, info = read_fno_mat(path, num_samples=4)
    assert info["format"].startswith("hdf5") and y.shape == (4, 4, 6, 6) and t is None
    assert np.array_equal(y[:, 0], a[:4]) and np.array_equal(y[:, 1:], np.moveaxis(u[:4], -1, 1))

    dm = FNOMatFile(str(path), t=[0.0, 0.1, 0.3, 0.6], val_fraction=0, test_fraction=0)
    dm.setup()
    assert dm.splits["train"].tensors[1][0].tolist() == pytest.approx([0.0, 0.1, 0.3, 0.6])


def test_fno_mat_errors(tmp_path):
    missing = tmp_path / "nowhere.mat"
    with pytest.raises(FileNotFoundError, match="nowhere.mat"):
        read_fno_mat(missing)
    with pytest.raises(FileNotFoundError, match="nowhere.mat"):
        FNOMatFile(str(missing)).setup()

    a, u = _fno_arrays((8,), steps=4)
    scipy.io.savemat(tmp_path / "odd.mat", {"x0": a, "sol": u})
    with pytest.raises(ValueError, match=r"no variable 'u'.*holds \['sol', 'x0'\]"):
        read_fno_mat(tmp_path / "odd.mat")
    with pytest.raises(ValueError, match=r"no variable 'init'.*holds \['sol', 'x0'\]"):
        read_fno_mat(tmp_path / "odd.mat", keys={"a": "init", "u": "sol"})
    with pytest.raises(ValueError, match="spatial_dims"):
        read_fno_mat(tmp_path / "odd.mat", keys={"u": "sol"})  # (N, X, T) or (N, H, W)?
    y, _, _ = read_fno_mat(tmp_path / "odd.mat", keys={"a": "x0", "u": "sol"})
    assert y.shape == (5, 5, 8)
    with pytest.raises(ValueError, match="unknown roles"):
        FNOMatFile(str(tmp_path / "odd.mat"), keys={"input": "x0"})

    u[1, 2, 3] = np.nan
    scipy.io.savemat(tmp_path / "nan.mat", {"a": a, "u": u})
    with pytest.raises(ValueError, match=r"nan\.mat: 1 of 5 trajectories contain NaN"):
        FNOMatFile(str(tmp_path / "nan.mat")).setup()
    scipy.io.savemat(tmp_path / "ok.mat", {"a": a, "u": np.nan_to_num(u)})
    with pytest.raises(ValueError, match="t has 3 stamps but .* holds 5"):
        FNOMatFile(str(tmp_path / "ok.mat"), t=[0.0, 1.0, 2.0]).setup()
    with pytest.raises(ValueError, match="increase strictly"):
        FNOMatFile(str(tmp_path / "ok.mat"), t=[0.0, 1.0, 1.0, 2.0, 3.0]).setup()
    scipy.io.savemat(tmp_path / "complex.mat", {"u": u.astype(complex)})
    with pytest.raises(ValueError, match="'u' holds complex128 values; real numbers"):
        read_fno_mat(tmp_path / "complex.mat")
    (tmp_path / "text.mat").write_text("hello")
    with pytest.raises(ValueError, match="neither a MATLAB .mat file nor HDF5"):
        read_fno_mat(tmp_path / "text.mat")


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (LotkaVolterra, {"val_fraction": 1.0}, r"val_fraction must lie in \[0, 1\), got 1.0"),
        (LotkaVolterra, {"val_fraction": 0.5, "test_fraction": 0.5}, "must leave training"),
        (Lorenz, {"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        (Lorenz, {"time_stride": 0}, "time_stride must be a positive integer"),
        (Lorenz, {"num_times": 0}, "num_times must be a positive integer"),
        (Lorenz, {"num_snapshots": 1}, "num_snapshots must be an integer >= 2, got 1"),
        (Lorenz, {"t_max": -1.0}, "t_max must be positive"),
        (LotkaVolterra, {"a_range": (1.5, 0.5)}, r"a_range must be a pair \(low, high\)"),
        (LotkaVolterra, {"x0": (10.0, 0.0)}, "x0 must be two positive populations"),
        (IntegralEquationSpirals, {"kernel_norm": (0.5, 1.2)}, "0 < low <= high < 1"),
        (Burgers1D, {"nu": 0.0}, "nu must be positive"),
        (Burgers1D, {"resolution": 4}, "resolution must be an integer >= 8"),
        (NavierStokes2D, {"dt": -1e-3}, "dt must be positive"),
        (FNOMatFile, {"path": "x.mat", "dt": 0.1, "t": [0.0, 0.1]}, "pass either dt or t"),
        (FNOMatFile, {"path": "x.mat", "spatial_dims": 3}, "spatial_dims must be 1, 2 or null"),
    ],
)
def test_bad_arguments_raise_clear_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_too_few_trajectories_for_the_splits():
    with pytest.raises(ValueError, match="2 trajectories leave none for training"):
        LotkaVolterra(
            num_trajectories=2, num_snapshots=5, val_fraction=0.3, test_fraction=0.3
        ).setup()


def test_bases_are_hidden_and_subclasses_build_from_config_arguments():
    import lightning as L
    from jsonargparse import ArgumentParser

    assert vars(TrajectoryDataModule)["abstract"] and vars(SimulatedTrajectories)["abstract"]
    listed = [
        name
        for name in datamodules.__all__
        if issubclass(getattr(datamodules, name), L.LightningDataModule)
        and not vars(getattr(datamodules, name)).get("abstract", False)
    ]
    assert {"LotkaVolterra", "NavierStokes2D", "FNOMatFile"} <= set(listed)
    assert "TrajectoryDataModule" not in listed

    parser = ArgumentParser()
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    config = parser.parse_args(
        ["--data=Burgers1D", "--data.resolution=16", "--data.time_stride=2", "--data.seed=3"]
    )
    dm = parser.instantiate(config).data
    assert isinstance(dm, Burgers1D) and dm.state_shape == (16,) and dm.num_times == 16
    assert dm.data_seed == 3
