"""Longitudinal marginals: validation, batches, seeding, geometry, dynamics and file readers."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.integrate import solve_ivp

import datamodules
from datamodules import (
    AnnDataMarginals,
    CalciumMarginals,
    ManifoldMarginals,
    Marginals,
    MarginalsDataModule,
    MyoblastTimeCourse,
    SwitchingLorenz,
    SyntheticCalcium,
    longitudinal,
)
from datamodules.longitudinal import (
    EpochSampler,
    find_hsmm_folder,
    highly_variable_genes,
    hsmm_search_folders,
    lorenz_field,
    manifold_embedding,
    read_calcium,
    read_hsmm,
    simulate_calcium,
    write_synthetic_calcium,
)


class ArrayMarginals(MarginalsDataModule):
    """Marginals given as arrays: the base class on hand-made data."""

    def __init__(self, points: list, times: list, **kwargs) -> None:
        super().__init__(**kwargs)
        self._given = (points, times)

    def load(self) -> Marginals:
        return Marginals(*self._given)


def shifted_clouds(sizes=(5, 6, 7, 8), dim=3, seed=0) -> list[np.ndarray]:
    """Point clouds whose means move by 10 per marginal, so each is easy to tell apart."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, dim)) + 10.0 * k for k, n in enumerate(sizes)]


def row_index(rows: torch.Tensor, cloud: torch.Tensor) -> torch.Tensor:
    """For each row of ``rows``, the index of the identical row of ``cloud``, or -1."""
    same = (rows[:, None, :] == cloud[None, :, :]).all(-1)
    return torch.where(same.any(1), same.float().argmax(1), -1)


def rows_in(rows: torch.Tensor, cloud: torch.Tensor) -> bool:
    """Whether every row of ``rows`` is one of the rows of ``cloud``."""
    return bool((row_index(rows, cloud) >= 0).all())


# --- Marginals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("points", "times", "message"),
    [
        ([np.zeros((3, 2)), np.zeros((4, 3))], [0, 1], "same dimension; got dimensions [2, 3]"),
        ([np.zeros((3, 2))], [0], "at least two time points (marginals), got 1"),
        ([np.zeros((3, 2))] * 3, [0, 2, 1], "times must increase strictly"),
        ([np.zeros((3, 2))] * 3, [0, 1, 1], "times must increase strictly"),
        ([np.zeros((3, 2))] * 3, [0, 1], "one entry per marginal, shape (3,), got shape (2,)"),
        ([np.zeros((0, 2)), np.zeros((3, 2))], [0, 1], "marginal 0 is empty"),
        ([np.zeros((3, 2)), np.zeros(3)], [0, 1], "marginal 1 must be a (N_k, D) array"),
    ],
)
def test_marginals_reject_malformed_data(points, times, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Marginals(points, times)


def test_marginals_name_the_marginal_and_count_of_non_finite_points():
    bad = np.zeros((5, 2))
    bad[1, 0], bad[3, 1] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"marginal 1 has 2 of 5 points with NaN or infinite"):
        Marginals([np.zeros((4, 2)), bad], [0.0, 1.0])


def test_marginals_check_labels_and_convert_types():
    points = [np.ones((3, 2)), np.ones((4, 2))]
    with pytest.raises(ValueError, match=r"labels of marginal 1 must have shape \(4,\)"):
        Marginals(points, [0, 1], labels=[np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match=r"segment_labels must have one entry per adjacent"):
        Marginals(points, [0, 1], segment_labels=[0, 1])
    with pytest.raises(ValueError, match="must hold integers"):
        Marginals(points, [0, 1], labels=[np.full(3, 0.5), np.zeros(4)])

    m = Marginals(points, [0, 24], labels=[np.zeros(3), np.ones(4)], segment_labels=[1])
    assert [p.dtype for p in m.points] == [torch.float32] * 2 and m.times.dtype == torch.float32
    assert m.labels[1].dtype == torch.long and m.segment_labels.tolist() == [1]
    assert m.names == ["t=0", "t=24"] and (m.num_marginals, m.dim, m.sizes) == (2, 2, [3, 4])


# --- the data module base ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held_out", "message"),
    [
        (0, "held_out cannot contain index 0"),
        ([2, 0], "held_out cannot contain index 0"),
        (-1, "must be positive"),
        ([1, 1], "more than once"),
        ("2", "integer index, a list of indices or null"),
        ([True], "integer indices"),
    ],
)
def test_held_out_is_checked_when_built(held_out, message):
    with pytest.raises(ValueError, match=message):
        ArrayMarginals(shifted_clouds(), [0, 1, 2, 3], held_out=held_out)


def test_held_out_outside_the_range_or_leaving_one_marginal_fails_at_setup():
    dm = ArrayMarginals(shifted_clouds(), [0, 1, 2, 3], held_out=[2, 4])
    with pytest.raises(ValueError, match=r"\[4\] are outside the valid range 1\.\.3 for 4"):
        dm.setup()
    dm = ArrayMarginals(shifted_clouds(), [0, 1, 2, 3], held_out=[1, 2, 3])
    with pytest.raises(ValueError, match="leaves 1 of 4 marginals for training"):
        dm.setup()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"steps_per_epoch": 2.5}, "steps_per_epoch must be an integer >= 1"),
        ({"standardize": "yes"}, "standardize must be true or false"),
        ({"seed": -3}, "seed must be an integer >= 0"),
    ],
)
def test_base_arguments_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArrayMarginals(shifted_clouds(), [0, 1, 2, 3], **kwargs)


def test_indices_pairs_pooled_points_and_standardisation_by_training_marginals_only():
    clouds = shifted_clouds()
    clouds[2] = clouds[2] * 50.0 + 1000.0  # a held-out marginal far off: must not move stats
    dm = ArrayMarginals(clouds, [0.0, 0.5, 1.0, 2.0], held_out=2)
    assert dm.dim == 3  # sets up on first use
    assert dm.train_indices == [0, 1, 3] and dm.held_out_indices == [2]
    assert dm.pairs == [(0, 1), (1, 3)] and dm.times.tolist() == [0.0, 0.5, 1.0, 2.0]

    train = np.concatenate([clouds[0], clouds[1], clouds[3]])
    mean, std = train.mean(0), train.std(0)
    np.testing.assert_allclose(dm.feature_mean.numpy(), mean, rtol=1e-5)
    np.testing.assert_allclose(dm.feature_std.numpy(), std, rtol=1e-5)
    for k in range(4):
        expected = (clouds[k] - mean) / std
        np.testing.assert_allclose(dm.marginals.points[k].numpy(), expected, rtol=1e-4, atol=1e-4)
    pooled = dm.pooled_points()
    assert pooled.shape == (5 + 6 + 8, 3)
    assert torch.allclose(pooled.mean(0), torch.zeros(3), atol=1e-5)  # z-scored on training
    assert not rows_in(dm.marginals.points[2][:1], pooled)  # held-out points never pooled
    assert torch.allclose(
        dm.unstandardize(dm.marginals.points[2]), torch.as_tensor(clouds[2]).float()
    )

    raw = ArrayMarginals(clouds, [0.0, 0.5, 1.0, 2.0], held_out=2, standardize=False)
    assert torch.equal(raw.marginals.points[2], torch.as_tensor(clouds[2]).float())


def test_constant_features_keep_scale_one():
    clouds = [np.c_[np.random.default_rng(k).standard_normal(5), np.full(5, 3.0)] for k in range(3)]
    dm = ArrayMarginals(clouds, [0, 1, 2])
    assert dm.feature_std[1] == 1.0 and torch.allclose(dm.marginals.points[0][:, 1], torch.zeros(5))


def test_train_batches_draw_each_pair_independently_and_uniformly():
    clouds = shifted_clouds(sizes=(4, 3, 5, 6))
    dm = ArrayMarginals(clouds, [0, 1, 2, 3], held_out=[2], batch_size=64, steps_per_epoch=40)
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 40
    batch = batches[0]
    assert batch["x0"].shape == batch["x1"].shape == (2, 64, 3)
    assert batch["t0"].tolist() == [0.0, 1.0] and batch["t1"].tolist() == [1.0, 3.0]
    assert batch["pair"].tolist() == [0, 1] and batch["pair"].dtype == torch.long
    points = dm.marginals.points
    for b in batches[:5]:
        for p, (a, c) in enumerate(dm.pairs):
            assert rows_in(b["x0"][p], points[a]) and rows_in(b["x1"][p], points[c])

    # each point of marginal 0 is drawn about 40 * 64 / 4 = 640 times
    drawn = torch.cat([b["x0"][0] for b in batches])
    counts = row_index(drawn, points[0]).bincount(minlength=4)
    assert counts.sum() == 40 * 64 and (counts - 640).abs().max() < 100
    # the two ends are drawn independently: the index at a is uncorrelated with that at b
    index0 = row_index(drawn, points[0]).double()
    index1 = row_index(torch.cat([b["x1"][0] for b in batches]), points[1]).double()
    assert abs(float(torch.corrcoef(torch.stack([index0, index1]))[0, 1])) < 0.1


def test_batches_are_reproducible_by_seed_and_change_with_epoch():
    def draws(seed: int, epochs: int = 2) -> list[torch.Tensor]:
        dm = ArrayMarginals(
            shifted_clouds(), [0, 1, 2, 3], batch_size=8, steps_per_epoch=3, seed=seed
        )
        loader = dm.train_dataloader()
        return [torch.cat([b["x0"], b["x1"]]) for _ in range(epochs) for b in loader]

    first, again, other = draws(0), draws(0), draws(1)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, other, strict=True))
    assert not torch.equal(first[0], first[3])  # epoch 1 differs from epoch 0

    dm = ArrayMarginals(shifted_clouds(), [0, 1, 2, 3], batch_size=8, steps_per_epoch=3)
    dataset = dm.train_dataloader().dataset
    assert torch.equal(torch.cat([dataset[(1, 0)]["x0"], dataset[(1, 0)]["x1"]]), first[3])
    sampler = EpochSampler(3)
    sampler.set_epoch(5)
    assert list(sampler) == [(5, 0), (5, 1), (5, 2)] and list(sampler)[0] == (6, 0)


def test_lightning_fit_sees_the_seeded_batches_of_each_epoch(quiet_trainer):
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))
            self.seen: list[tuple[int, torch.Tensor]] = []
            self.items: list[tuple[int, int]] = []

        def training_step(self, batch, batch_idx):
            self.seen.append((self.current_epoch, batch["x0"].clone()))
            return (self.weight - batch["x1"].mean()) ** 2

        def validation_step(self, batch, batch_idx):
            self.items.append((batch["index"], batch["source_index"]))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = ArrayMarginals(
        shifted_clouds(), [0, 1, 2, 3], held_out=[2], batch_size=4, steps_per_epoch=2
    )
    model = Recorder()
    quiet_trainer(max_epochs=2, limit_val_batches=None, num_sanity_val_steps=0).fit(model, dm)
    dataset = dm.train_dataloader().dataset
    assert [epoch for epoch, _ in model.seen] == [0, 0, 1, 1]
    for i, (epoch, x0) in enumerate(model.seen):
        assert torch.equal(x0, dataset[(epoch, i % 2)]["x0"])
    assert model.items == [(2, 1), (2, 1)]


def test_evaluation_items_push_the_nearest_earlier_training_marginal():
    clouds = shifted_clouds(sizes=(5, 6, 7, 8, 9))
    dm = ArrayMarginals(clouds, [0, 1, 2, 3, 4], held_out=[2, 3])
    items = list(dm.val_dataloader())
    assert [(i["index"], i["source_index"]) for i in items] == [(2, 1), (3, 1)]
    assert items[1]["x_source"].shape == (6, 3) and items[1]["x_target"].shape == (8, 3)
    assert items[1]["t_source"].ndim == 0 and float(items[1]["t_target"]) == 3.0
    assert torch.equal(items[0]["x_target"], dm.marginals.points[2])
    test = list(dm.test_dataloader())
    assert [i["index"] for i in test] == [2, 3] == [i["index"] for i in dm.predict_dataloader()]

    none_held = ArrayMarginals(clouds, [0, 1, 2, 3, 4])
    (item,) = list(none_held.val_dataloader())
    assert (item["index"], item["source_index"]) == (4, 3)


# --- simulated manifolds -------------------------------------------------------------------


@pytest.mark.parametrize("manifold", ["sphere", "torus", "s_curve"])
def test_manifold_points_lie_on_the_manifold_before_noise(manifold):
    dm = ManifoldMarginals(manifold=manifold, ambient_dim=7, num_marginals=5, noise=0.0)
    dm.setup()
    rotation = dm.raw_marginals.metadata["rotation"].double()
    assert torch.allclose(rotation.T @ rotation, torch.eye(7, dtype=torch.float64), atol=1e-6)
    for k, x in enumerate(dm.raw_marginals.points):
        assert x.shape == (300, 7)
        local = x.double() @ rotation  # undo x = pad(xyz) @ rotation.T
        assert local[:, 3:].abs().max() < 1e-5
        a, b, c = local[:, 0], local[:, 1], local[:, 2]
        if manifold == "sphere":
            residual = local[:, :3].norm(dim=1) - 1.0
        elif manifold == "torus":
            residual = ((a**2 + b**2).sqrt() - 1.0) ** 2 + c**2 - 0.4**2
        else:  # two unit circles in the (x, z) plane, centred at z = -1 (t >= 0) and z = +1
            residual = torch.minimum(
                (a**2 + (c + 1) ** 2 - 1).abs(), (a**2 + (c - 1) ** 2 - 1).abs()
            )
        assert residual.abs().max() < 1e-5
        intrinsic = dm.raw_marginals.metadata["intrinsic"][k].double().numpy()
        xyz = manifold_embedding(manifold, intrinsic)
        np.testing.assert_allclose(local[:, :3].numpy(), xyz, atol=1e-5)


def test_s_curve_embedding_matches_scikit_learn():
    from sklearn.datasets import make_s_curve

    x, t = make_s_curve(200, random_state=0)
    np.testing.assert_allclose(manifold_embedding("s_curve", np.c_[t, x[:, 1]]), x, atol=1e-12)


def test_sphere_blob_centres_travel_along_a_great_circle():
    dm = ManifoldMarginals(manifold="sphere", num_marginals=6, noise=0.0, spread=0.05, sweep=0.5)
    dm.setup()
    rotation = dm.raw_marginals.metadata["rotation"].double()
    means = torch.stack([(x.double() @ rotation)[:, :3].mean(0) for x in dm.raw_marginals.points])
    directions = means / means.norm(dim=1, keepdim=True)
    assert directions[:, 2].abs().max() < 0.02  # the equator, a great circle
    steps = torch.arccos((directions[:-1] * directions[1:]).sum(1).clamp(-1, 1))
    assert torch.allclose(steps, torch.full((5,), torch.pi / 5, dtype=torch.float64), atol=0.02)


def test_manifold_noise_seed_and_errors():
    first = ManifoldMarginals(manifold="torus", noise=0.1, num_marginals=3, points_per_marginal=50)
    again = ManifoldMarginals(manifold="torus", noise=0.1, num_marginals=3, points_per_marginal=50)
    other = ManifoldMarginals(
        manifold="torus", noise=0.1, num_marginals=3, points_per_marginal=50, data_seed=1
    )
    assert torch.equal(first.marginals.points[1], again.marginals.points[1])
    assert not torch.allclose(first.marginals.points[1], other.marginals.points[1])
    local = (
        first.raw_marginals.points[0].double() @ first.raw_marginals.metadata["rotation"].double()
    )
    assert 0.07 < float(local[:, 3:].std()) < 0.13  # the padded directions carry only noise

    with pytest.raises(ValueError, match="manifold must be one of sphere, torus, s_curve"):
        ManifoldMarginals(manifold="bunny")
    with pytest.raises(ValueError, match="ambient_dim must be an integer >= 3"):
        ManifoldMarginals(ambient_dim=2)
    with pytest.raises(ValueError, match=r"sweep must lie in \(0, 1\]"):
        ManifoldMarginals(sweep=1.5)


# --- switching Lorenz ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lorenz() -> SwitchingLorenz:
    dm = SwitchingLorenz(num_trajectories=40, noise=0.0, held_out=[6])
    dm.setup()
    return dm


def windows_of(dm: SwitchingLorenz, k: int) -> np.ndarray:
    """Marginal ``k`` in data units as (trajectories, window, 3)."""
    x = dm.raw_marginals.points[k].double().numpy()
    return x.reshape(len(x), 3, -1).transpose(0, 2, 1)


def test_lorenz_shapes_labels_and_documented_segment_convention(lorenz):
    m = lorenz.marginals
    assert lorenz.dim == 60 and m.num_marginals == 8 and m.sizes == [40] * 8
    assert lorenz.segment_labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert [int(lab.unique()) for lab in m.labels] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert m.metadata["switch_after"] == 4 and m.metadata["rho"] == [28.0, 10.0]
    assert lorenz.pairs == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 7)]


def test_lorenz_windows_follow_the_ode_of_their_regime(lorenz):
    h = lorenz.raw_marginals.metadata["sample_interval"]
    for k in range(8):
        w = windows_of(lorenz, k)
        derivative = (w[:, :-4] - 8 * w[:, 1:-3] + 8 * w[:, 3:-1] - w[:, 4:]) / (12 * h)
        errors = {}
        for rho in (28.0, 10.0):
            field = lorenz_field(w[:, 2:-2], 10.0, rho, 8 / 3)
            errors[rho] = (
                np.linalg.norm(derivative - field, axis=-1).mean()
                / np.linalg.norm(field, axis=-1).mean()
            )
        right, wrong = (28.0, 10.0) if k < 4 else (10.0, 28.0)
        assert errors[right] < 0.05 and errors[wrong] > 0.3, (k, errors)


def test_lorenz_windows_match_an_independent_solver_and_continue_across_the_switch(lorenz):
    h = lorenz.raw_marginals.metadata["sample_interval"]

    def flow(state: np.ndarray, rho: float, times: np.ndarray) -> np.ndarray:
        def rhs(_, s):
            return lorenz_field(s, 10.0, rho, 8 / 3)

        sol = solve_ivp(rhs, (0, times[-1]), state, t_eval=times, rtol=1e-11, atol=1e-11)
        return sol.y.T

    times = h * np.arange(20)
    for k, rho in ((3, 28.0), (4, 10.0)):
        w = windows_of(lorenz, k)
        for i in range(3):
            # RK4 with dt = 0.01 against DOP853 at tolerance 1e-11, stored as float32
            np.testing.assert_allclose(flow(w[i, 0], rho, times), w[i], rtol=1e-3, atol=1e-2)
    # the first state after the switch is the last state before it, carried one step on
    before, after = windows_of(lorenz, 3), windows_of(lorenz, 4)
    for i in range(3):
        np.testing.assert_allclose(
            flow(before[i, -1], 28.0, np.array([0, h]))[-1], after[i, 0], atol=1e-4
        )


def test_lorenz_standardisation_uses_training_marginals_only(lorenz):
    raw = lorenz.raw_marginals.points
    train = torch.cat([raw[k] for k in lorenz.train_indices]).double()
    every = torch.cat(raw).double()
    assert torch.allclose(lorenz.feature_mean.double(), train.mean(0), atol=1e-4)
    assert torch.allclose(lorenz.feature_std.double(), train.std(0, correction=0), rtol=1e-4)
    assert not torch.allclose(lorenz.feature_mean.double(), every.mean(0), atol=1e-2)


def test_lorenz_seed_noise_and_errors():
    a = SwitchingLorenz(num_marginals=3, switch_after=1, num_trajectories=5, window=4)
    b = SwitchingLorenz(num_marginals=3, switch_after=1, num_trajectories=5, window=4)
    c = SwitchingLorenz(num_marginals=3, switch_after=1, num_trajectories=5, window=4, seed=2)
    assert a.dim == 12 and torch.equal(a.marginals.points[2], b.marginals.points[2])
    assert not torch.allclose(a.marginals.points[2], c.marginals.points[2])
    assert a.segment_labels.tolist() == [1, 1]
    source = SwitchingLorenz(
        num_marginals=3, switch_after=1, num_trajectories=5, window=4, segment_convention="source"
    )
    assert source.segment_labels.tolist() == [0, 1]
    assert torch.equal(source.marginals.points[2], a.marginals.points[2])
    with pytest.raises(ValueError, match="segment_convention must be 'source'"):
        SwitchingLorenz(segment_convention="middle")
    with pytest.raises(ValueError, match=r"switch_after must be an integer in 1\.\.7"):
        SwitchingLorenz(switch_after=8)
    with pytest.raises(ValueError, match="rho must be two positive Rayleigh numbers"):
        SwitchingLorenz(rho=(28.0,))
    with pytest.raises(RuntimeError, match="overflowed"):
        SwitchingLorenz(num_marginals=2, switch_after=1, num_trajectories=2, dt=0.5).setup()


# --- real myoblast time course -------------------------------------------------------------


def _hsmm_folder() -> Path | None:
    try:
        return find_hsmm_folder()
    except FileNotFoundError:
        return None


HSMM_FOLDER = _hsmm_folder()
needs_hsmm = pytest.mark.skipif(
    HSMM_FOLDER is None,
    reason="HSMMSingleCell data absent (`make data` unpacks Debian r-bioc-hsmmsinglecell)",
)


@pytest.fixture(scope="module")
def hsmm():
    return read_hsmm(HSMM_FOLDER)


@needs_hsmm
def test_hsmm_reads_into_anndata_with_the_published_shape(hsmm):
    assert hsmm.shape == (271, 47192)
    assert hsmm.obs["Hours"].astype(int).value_counts().to_dict() == {0: 69, 24: 74, 48: 79, 72: 49}
    assert {"Hours", "Media", "Pseudotime", "State"} <= set(hsmm.obs.columns)
    assert float(hsmm.X.min()) == 0.0 and np.isclose(
        float(hsmm.X.max()), np.log1p(47677.1), rtol=1e-4
    )


@needs_hsmm
def test_myoblast_marginals_counts_labels_and_pca_fitted_on_training_times(hsmm, monkeypatch):
    monkeypatch.setattr(longitudinal, "read_hsmm", lambda folder: hsmm)  # read once per file
    dm = MyoblastTimeCourse(num_genes=500, num_pcs=5)
    dm.setup()
    raw = dm.raw_marginals
    assert raw.sizes == [69, 74, 79, 49] and dm.dim == 5
    assert raw.names == ["0h", "24h", "48h", "72h"] and dm.times.tolist() == [0, 1, 2, 3]
    assert dm.held_out_indices == [2] and dm.pairs == [(0, 1), (1, 3)] and dm.segment_labels is None
    state = hsmm.obs["State"].astype(int).to_numpy() - 1
    hours = hsmm.obs["Hours"].astype(int).to_numpy()
    for k, h in enumerate((0, 24, 48, 72)):
        assert torch.equal(raw.labels[k], torch.as_tensor(state[hours == h]).long())

    # the PCA saw the training cells only: they are centred, and their variances are the
    # leading squared singular values of those cells' centred expression of the chosen genes
    genes = hsmm.var_names.get_indexer(raw.metadata["genes"])
    fit = np.asarray(hsmm.X, dtype=np.float64)[hours != 48][:, genes]
    fit = fit - fit.mean(0)
    singular = np.linalg.svd(fit, compute_uv=False)
    train = torch.cat([raw.points[k] for k in (0, 1, 3)]).double()
    assert train.mean(0).abs().max() < 1e-3
    np.testing.assert_allclose(train.var(0).numpy(), singular[:5] ** 2 / (len(fit) - 1), rtol=1e-4)
    expected_ratio = singular[:5] ** 2 / (singular**2).sum()
    np.testing.assert_allclose(raw.metadata["explained_variance_ratio"], expected_ratio, rtol=1e-4)

    again = MyoblastTimeCourse(num_genes=500, num_pcs=5)
    again.setup()  # from the cache written beside the data
    assert Path(again.raw_marginals.metadata["cache"]).is_file()
    assert torch.equal(again.raw_marginals.points[3], raw.points[3])


def test_myoblast_missing_data_names_the_places_searched_and_the_fetch_command(
    tmp_path, monkeypatch
):
    with pytest.raises(FileNotFoundError) as error:
        MyoblastTimeCourse(root=str(tmp_path)).setup()
    assert str(tmp_path) in str(error.value) and "make data" in str(error.value)
    assert "apt-get download r-bioc-hsmmsinglecell" in str(error.value)

    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "data"))
    places = hsmm_search_folders()
    assert places[0] == tmp_path / "data" / "hsmmsinglecell"
    assert places[1].parts[-2:] == (".data", "hsmmsinglecell")
    assert places[2] == Path("/usr/lib/R/site-library/HSMMSingleCell/data")
    with pytest.raises(ValueError, match="fit_scope must be one of train, all"):
        MyoblastTimeCourse(fit_scope="test")


def test_highly_variable_genes_match_a_binned_dispersion_reference():
    rng = np.random.default_rng(0)
    scale = rng.lognormal(0.0, 1.0, size=300)
    counts = rng.poisson(scale * rng.gamma(0.5, 2.0, size=(80, 300)))
    counts[:, :10] = 0  # never expressed: excluded
    log_expression = np.log1p(counts.astype(np.float64))
    chosen = highly_variable_genes(log_expression, 40)

    table = pd.DataFrame({"mean": counts.mean(0), "var": counts.var(0, ddof=1)})
    table = table[table["mean"] > 0]
    table["dispersion"] = np.log(table["var"] / table["mean"])
    table["bin"] = pd.cut(np.log1p(table["mean"]), bins=20)
    grouped = table.groupby("bin", observed=True)["dispersion"]
    table["score"] = (
        (table["dispersion"] - grouped.transform("mean")) / grouped.transform("std")
    ).fillna(0.0)
    expected = table["score"].sort_values(ascending=False, kind="stable").index[:40]
    assert set(chosen.tolist()) == set(expected.tolist()) and not set(chosen) & set(range(10))
    with pytest.raises(ValueError, match="exceeds the 290 genes expressed"):
        highly_variable_genes(log_expression, 291)


# --- AnnData files -------------------------------------------------------------------------


def write_h5ad(path: Path, times, **obs) -> Path:
    import anndata

    rng = np.random.default_rng(0)
    num = len(times)
    adata = anndata.AnnData(
        rng.poisson(2.0, size=(num, 12)).astype(np.float32),
        obs=pd.DataFrame({"time": times, **obs}, index=[f"c{i}" for i in range(num)]),
    )
    adata.obsm["X_pca"] = rng.standard_normal((num, 6))
    adata.write_h5ad(path)
    return path


def test_anndata_marginals_by_numeric_time_with_labels(tmp_path):
    times = [3.0] * 4 + [0.5] * 3 + [1.0] * 5
    cell_type = ["b", "a"] * 6
    path = write_h5ad(tmp_path / "cells.h5ad", times, kind=cell_type)
    dm = AnnDataMarginals(str(path), "time", num_pcs=4, label_key="kind", standardize=False)
    dm.setup()
    m = dm.marginals
    assert m.sizes == [3, 5, 4] and dm.times.tolist() == [0.5, 1.0, 3.0] and dm.dim == 4
    assert m.names == ["0.5", "1", "3"] and m.metadata["label_names"] == ["a", "b"]

    import anndata

    adata = anndata.read_h5ad(path)
    late = adata.obs["time"].to_numpy() == 3.0
    assert torch.allclose(m.points[2], torch.as_tensor(adata.obsm["X_pca"][late, :4]).float())
    assert m.labels[2].tolist() == [1, 0, 1, 0]


def test_anndata_ordered_categorical_and_numeric_strings_give_the_time_order(tmp_path):
    stages = pd.Categorical(
        ["late", "early", "mid", "early", "late", "mid"],
        categories=["early", "mid", "late"],
        ordered=True,
    )
    path = write_h5ad(tmp_path / "ordered.h5ad", stages)
    dm = AnnDataMarginals(str(path), "time", use_rep=None)
    assert dm.marginals.names == ["early", "mid", "late"] and dm.times.tolist() == [0, 1, 2]
    assert dm.dim == 12  # X itself

    path = write_h5ad(tmp_path / "strings.h5ad", ["24", "0", "72", "0", "24", "72"])
    dm = AnnDataMarginals(str(path), "time", use_rep=None, num_pcs=2)
    assert dm.times.tolist() == [0, 24, 72] and dm.dim == 2


def test_anndata_errors_list_what_the_file_holds(tmp_path):
    path = write_h5ad(tmp_path / "cells.h5ad", [0, 0, 1, 1], batch=["x"] * 4)
    with pytest.raises(FileNotFoundError, match="no .h5ad file"):
        AnnDataMarginals(str(tmp_path / "missing.h5ad"), "time").setup()
    with pytest.raises(ValueError, match="available obs keys: time, batch"):
        AnnDataMarginals(str(path), "day").setup()
    with pytest.raises(ValueError, match="label_key='kind' is not a column"):
        AnnDataMarginals(str(path), "time", label_key="kind").setup()
    with pytest.raises(ValueError, match=r"available obsm keys: X_pca \(or use_rep=null for X\)"):
        AnnDataMarginals(str(path), "time", use_rep="X_umap").setup()
    with pytest.raises(ValueError, match="num_pcs=7 exceeds the 6 columns"):
        AnnDataMarginals(str(path), "time", num_pcs=7).setup()
    with pytest.raises(ValueError, match="must be numeric or an ordered categorical"):
        AnnDataMarginals(str(write_h5ad(tmp_path / "u.h5ad", ["a", "b", "a", "b"])), "time").setup()
    with pytest.raises(ValueError, match="has 1 missing or infinite times"):
        AnnDataMarginals(str(write_h5ad(tmp_path / "n.h5ad", [0, np.nan, 1, 1])), "time").setup()
    with pytest.raises(ValueError, match=r"holds 1 distinct time\(s\) \['2'\]; .* at least two"):
        AnnDataMarginals(str(write_h5ad(tmp_path / "one.h5ad", [2, 2, 2])), "time").setup()
    (tmp_path / "text.h5ad").write_text("cell,time\n")
    with pytest.raises(ValueError, match=r"text.h5ad is not a readable .h5ad file"):
        AnnDataMarginals(str(tmp_path / "text.h5ad"), "time").setup()


# --- calcium -------------------------------------------------------------------------------


def test_calcium_reader_flattens_areas_by_time_and_takes_stages(tmp_path):
    kwargs = {"num_days": 6, "trials_per_day": 7, "num_areas": 3, "num_frames": 4}
    stages = write_synthetic_calcium(tmp_path / "calcium.npy", **kwargs)
    responses = np.load(tmp_path / "calcium.npy")
    assert responses.shape == (6, 7, 3, 4) and stages.tolist() == [0, 0, 1, 1, 2, 2]

    dm = CalciumMarginals(str(tmp_path / "calcium.npy"), stages=stages.tolist(), standardize=False)
    assert dm.dim == 12 and dm.marginals.sizes == [7] * 6
    assert torch.allclose(dm.marginals.points[4][2], torch.as_tensor(responses[4, 2].reshape(-1)))
    assert dm.segment_labels.tolist() == [0, 0, 1, 1, 2]
    assert dm.marginals.labels[5].tolist() == [2] * 7

    write_synthetic_calcium(tmp_path / "calcium.npz", **kwargs)
    from_npz = CalciumMarginals(str(tmp_path / "calcium.npz"), days=[1, 2, 3, 5, 8, 13])
    assert from_npz.marginals.names[:2] == ["day00", "day01"]
    assert from_npz.segment_labels.tolist() == [0, 0, 1, 1, 2]  # the file's stages entry
    assert from_npz.times.tolist() == [1, 2, 3, 5, 8, 13]
    assert from_npz.marginals.metadata["stage_source"] == "file"


def test_calcium_reader_days_in_natural_order_padding_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    days = {f"day{d}": rng.standard_normal((4 + d, 5)) for d in (1, 2, 10)}
    days["day2"][-2:] = np.nan  # padding trials
    np.savez(tmp_path / "days.npz", **days)
    arrays, stages, names = read_calcium(tmp_path / "days.npz")
    assert names == ["day1", "day2", "day10"] and stages is None
    assert [len(a) for a in arrays] == [5, 4, 14]

    days["day2"][0, 1] = np.inf
    np.savez(tmp_path / "partial.npz", **days)
    with pytest.raises(ValueError, match="day2 has 1 trials with some NaN or infinite values"):
        read_calcium(tmp_path / "partial.npz")
    np.save(tmp_path / "flat.npy", np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"accepted are \(days, trials, features\)"):
        read_calcium(tmp_path / "flat.npy")
    with pytest.raises(FileNotFoundError, match="calcium file not found"):
        read_calcium(tmp_path / "none.npy")
    with pytest.raises(ValueError, match="must be a .npy or .npz file"):
        CalciumMarginals(str(tmp_path / "calcium.mat"))
    np.save(tmp_path / "objects.npy", np.array([[None]], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "objects.npz", day0=np.array([[None]], dtype=object))
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    for bad in ("objects.npy", "objects.npz", "junk.npy"):
        with pytest.raises(ValueError, match=f"{bad}.* (is not a readable|not plain numbers)"):
            read_calcium(tmp_path / bad)
    np.save(tmp_path / "ok.npy", np.zeros((3, 4, 2)))
    with pytest.raises(ValueError, match=r"stages must hold one label per day \(3\)"):
        CalciumMarginals(str(tmp_path / "ok.npy"), stages=[0, 1]).setup()


def test_synthetic_calcium_is_labelled_synthetic_and_changes_dynamics_between_stages():
    dm = SyntheticCalcium(standardize=False)
    meta = dm.marginals.metadata
    assert meta["synthetic"] is True and "not recordings" in meta["source"]
    assert dm.dim == 80 and dm.marginals.sizes == [100] * 12
    assert dm.segment_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 3

    responses, stages = simulate_calcium(noise=0.0, seed=0)
    assert stages.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    peak = responses.mean(1).max(-1)  # (days, areas) mean peak response
    growth = np.diff(peak, axis=0)  # drift from day d to d + 1, in stage of day d
    sensory, association = slice(0, 4), slice(4, 8)
    assert (growth[:4, sensory] > 0.05).all() and (np.abs(growth[:4, association]) < 0.03).all()
    assert (growth[4:8, association] > 0.05).all()
    assert (growth[8:, association] < 0).all()
    onset = (responses.mean(1) > 0.1).argmax(-1)  # first frame above 0.1: latency proxy
    assert (onset[8] <= onset[3]).all() and (onset[8] < onset[3]).any()

    with pytest.raises(ValueError, match="stage_starts must be two days 0 < s1 < s2"):
        SyntheticCalcium(stage_starts=(6, 3))


# --- configs -------------------------------------------------------------------------------


def test_modules_are_listed_and_build_from_config_arguments():
    import lightning as L
    from jsonargparse import ArgumentParser

    listed = {
        name
        for name in datamodules.__all__
        if issubclass(getattr(datamodules, name), L.LightningDataModule)
        and not vars(getattr(datamodules, name)).get("abstract", False)
    }
    assert {"ManifoldMarginals", "SwitchingLorenz", "MyoblastTimeCourse"} <= listed
    assert {"AnnDataMarginals", "CalciumMarginals", "SyntheticCalcium"} <= listed
    assert "MarginalsDataModule" not in listed

    parser = ArgumentParser()
    parser.add_subclass_arguments(L.LightningDataModule, "data")
    config = parser.parse_args(
        [
            "--data=SwitchingLorenz",
            "--data.held_out=[5]",
            "--data.num_trajectories=10",
            "--data.batch_size=16",
        ]
    )
    dm = parser.instantiate(config).data
    assert isinstance(dm, SwitchingLorenz) and dm.held_out_indices == [5]
    assert dm.hparams.num_trajectories == 10 and dm.hparams.batch_size == 16
    assert next(iter(dm.train_dataloader()))["x0"].shape == (6, 16, 60)
