"""FLUX: paths, metrics, router, coupling and scores against closed forms and POT; fits."""

from __future__ import annotations

import itertools
import math

import lightning as L
import numpy as np
import ot
import pytest
import torch
from torch.utils.data import DataLoader

import zoo
from datamodules import ManifoldMarginals, SwitchingLorenz
from zoo.flux import (
    BendNetwork,
    ConditionalFlowMatching,
    FLUXModule,
    GumbelRouter,
    LANDMetric,
    MixtureVelocity,
    RBFMetric,
    TemperatureSchedule,
    geodesic_path,
    kinetic_energy,
    mmd,
    ot_coupling,
    ot_plan,
    segment_scores,
    wasserstein,
)
from zoo.flux.experts import load_balance, routing_entropy, temporal_coherence
from zoo.flux.metrics import median_bandwidths


def random_bend(dim: int, seed: int = 0) -> BendNetwork:
    """A bend network with non-zero output weights (an untrained one is exactly zero)."""
    torch.manual_seed(seed)
    bend = BendNetwork(dim, (16, 16))
    for parameter in bend.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    return bend.double()


def endpoints(n: int = 8, dim: int = 3):
    generator = torch.Generator().manual_seed(1)
    x0 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    x1 = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    t0 = torch.full((n,), 1.0, dtype=torch.float64)
    t1 = torch.full((n,), 3.5, dtype=torch.float64)
    return x0, x1, t0, t1


# -- paths ------------------------------------------------------------------------------


def test_path_meets_its_endpoints_whatever_the_bend():
    x0, x1, t0, t1 = endpoints()
    bend = random_bend(3)
    assert bend(x0, x1, t0).abs().min() > 0  # the bend is really there in between
    start, _ = geodesic_path(x0, x1, t0, t1, t0, bend)
    end, _ = geodesic_path(x0, x1, t0, t1, t1, bend)
    torch.testing.assert_close(start, x0)
    torch.testing.assert_close(end, x1)
    middle, _ = geodesic_path(x0, x1, t0, t1, (t0 + t1) / 2, bend)
    expected = (x0 + x1) / 2 + 0.5 * bend(x0, x1, (t0 + t1) / 2)  # 2 s (1 - s) = 1/2
    torch.testing.assert_close(middle, expected)


@pytest.mark.parametrize("generic", [False, True], ids=["bend_network", "any_callable"])
def test_tangent_matches_finite_differences_in_time(generic):
    x0, x1, t0, t1 = endpoints()
    bend = random_bend(3)
    phi = (lambda a, b, t: bend(a, b, t)) if generic else bend  # jvp path vs hand-written one
    t = torch.linspace(1.2, 3.3, 8, dtype=torch.float64)
    _, u_t = geodesic_path(x0, x1, t0, t1, t, phi)
    h = 1e-6
    ahead, _ = geodesic_path(x0, x1, t0, t1, t + h, phi)
    behind, _ = geodesic_path(x0, x1, t0, t1, t - h, phi)
    torch.testing.assert_close(u_t, (ahead - behind) / (2 * h), rtol=1e-6, atol=1e-7)


def test_straight_path_and_its_tangent():
    x0, x1, t0, t1 = endpoints()
    t = torch.full((8,), 2.0, dtype=torch.float64)
    x_t, u_t = geodesic_path(x0, x1, t0, t1, t)
    torch.testing.assert_close(x_t, 0.6 * x0 + 0.4 * x1)  # s = (2 - 1) / 2.5
    torch.testing.assert_close(u_t, (x1 - x0) / 2.5)


def test_tangent_is_differentiable_in_the_bend_parameters():
    x0, x1, t0, t1 = endpoints()
    bend = random_bend(3)
    _, u_t = geodesic_path(x0, x1, t0, t1, torch.full((8,), 2.0, dtype=torch.float64), bend)
    u_t.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bend.parameters())


def test_kinetic_energy_closed_forms():
    u = torch.randn(16, 4)
    x = torch.randn(16, 4)
    assert kinetic_energy(x, u) == pytest.approx(float(u.square().sum(dim=1).mean()))
    assert kinetic_energy(x, u, lambda p: torch.ones_like(p)) == pytest.approx(
        float(u.square().sum(dim=1).mean())
    )
    scale = torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected = float((scale * u.square()).sum(dim=1).mean())
    assert kinetic_energy(x, u, lambda p: scale.expand_as(p)) == pytest.approx(expected)


# -- router and experts -----------------------------------------------------------------


def test_router_is_one_hot_forward_and_passes_gradients():
    torch.manual_seed(0)
    mixture = MixtureVelocity(dim=3, num_experts=3, hidden_dim=8, num_layers=1).train()
    x, t = torch.randn(64, 3), torch.rand(64)
    velocity, weights, probs = mixture(x, t, tau=0.5)
    assert set(weights.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(weights.detach().sum(dim=1), torch.ones(64))
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(64), atol=1e-6, rtol=0)
    # the forward value is the chosen expert's velocity
    chosen = weights.detach().argmax(dim=1)
    experts = torch.stack([e(x, t) for e in mixture.experts], dim=1)
    torch.testing.assert_close(velocity, experts[torch.arange(64), chosen])

    velocity.square().sum().backward()
    router = [p for p in mixture.router.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in router)
    used = chosen.unique().tolist()
    for m, expert in enumerate(mixture.experts):
        if m in used:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in expert.parameters())


def test_router_at_evaluation_is_the_noise_free_argmax():
    torch.manual_seed(0)
    router = GumbelRouter(dim=2, num_experts=4, hidden_dim=8).eval()
    x, t = torch.randn(32, 2), torch.rand(32)
    first, probs = router(x, t, tau=0.1)
    second, _ = router(x, t, tau=0.1)
    torch.testing.assert_close(first, second)
    expected = torch.nn.functional.one_hot(router.logits(x, t).argmax(dim=1), 4).float()
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(probs, router.logits(x, t).softmax(dim=1))


def test_gumbel_choices_follow_the_router_probabilities():
    router = GumbelRouter(dim=1, num_experts=2, hidden_dim=4, num_layers=1).train()
    with torch.no_grad():  # constant logits (log 0.8, log 0.2) whatever the input
        for p in router.parameters():
            p.zero_()
        router.net.net[-1].bias.copy_(torch.tensor([0.8, 0.2]).log())
    torch.manual_seed(0)
    with torch.no_grad():
        choices, _ = router(torch.zeros(20000, 1), torch.zeros(20000), tau=1.0)
    # Gumbel-max: argmax(l + g) ~ Categorical(softmax(l)), whatever the temperature
    assert float(choices[:, 0].mean()) == pytest.approx(0.8, abs=0.01)


def test_temperature_schedule_is_an_exponential_anneal():
    schedule = TemperatureSchedule(start=1.0, end=0.01, steps=100)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(50) == pytest.approx(0.1)  # the geometric mean halfway
    assert schedule(100) == pytest.approx(0.01)
    assert schedule(1000) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="tau_end=0.5 must not exceed tau_start=0.1"):
        TemperatureSchedule(start=0.1, end=0.5)


def test_router_regularisers_closed_forms():
    uniform = torch.full((10, 4), 0.25)
    assert float(load_balance(uniform)) == pytest.approx(0.0, abs=1e-7)
    assert float(routing_entropy(uniform)) == pytest.approx(math.log(4))
    collapsed = torch.tensor([[1.0, 0.0]]).expand(10, 2)
    assert float(load_balance(collapsed)) == pytest.approx(math.log(2))
    assert float(routing_entropy(collapsed)) == pytest.approx(0.0, abs=1e-7)
    flipped = collapsed.flip(1)
    assert float(temporal_coherence(collapsed, flipped)) == pytest.approx(2.0)


# -- coupling ---------------------------------------------------------------------------


def test_exact_plan_equals_pots_on_unequal_sizes():
    generator = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(5, 2, generator=generator), torch.randn(7, 2, generator=generator)
    a, b = np.full(5, 1 / 5), np.full(7, 1 / 7)
    reference = ot.emd(a, b, ot.dist(x0.double().numpy(), x1.double().numpy()))
    np.testing.assert_allclose(ot_plan(x0, x1).numpy(), reference, atol=1e-12)


def test_exact_coupling_is_the_brute_force_optimal_permutation():
    generator = torch.Generator().manual_seed(3)
    x0, x1 = torch.randn(6, 2, generator=generator), torch.randn(6, 2, generator=generator)
    cost = torch.cdist(x0, x1).square()
    best = min(
        itertools.permutations(range(6)), key=lambda p: float(cost[torch.arange(6), list(p)].sum())
    )
    i, j = ot_coupling(x0, x1, replace=False)
    assert i.tolist() == list(range(6)) and j.tolist() == list(best)
    np.testing.assert_allclose(ot_plan(x0, x1).numpy(), np.eye(6)[list(best)] / 6, atol=1e-12)

    i, j = ot_coupling(x0, x1, replace=True, generator=torch.Generator().manual_seed(0))
    assert all(j[k] == best[i[k]] for k in range(6))  # draws stay on the plan's support
    i, j = ot_coupling(x0, x1, method="independent")
    assert i.tolist() == j.tolist() == list(range(6))
    with pytest.raises(ValueError, match="unknown coupling method 'sinkhorn'"):
        ot_coupling(x0, x1, method="sinkhorn")


# -- scores -----------------------------------------------------------------------------


def test_wasserstein_against_closed_forms():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(50, 1, generator=generator, dtype=torch.float64)
    y = 2 + torch.rand(50, 1, generator=generator, dtype=torch.float64)
    # in 1-D the optimal plan between equal-size sets matches sorted points
    difference = x.flatten().sort().values - y.flatten().sort().values
    assert wasserstein(x, y, p=1) == pytest.approx(float(difference.abs().mean()), rel=1e-9)
    assert wasserstein(x, y, p=2) == pytest.approx(
        float(difference.square().mean().sqrt()), rel=1e-9
    )
    # a rigid translation by c moves every point by ||c||: W1 = W2 = ||c||
    cloud, shift = torch.randn(40, 3, generator=generator), torch.tensor([0.3, -0.4, 1.2])
    assert wasserstein(cloud, cloud + shift, p=1) == pytest.approx(1.3, rel=1e-6)
    assert wasserstein(cloud, cloud + shift, p=2) == pytest.approx(1.3, rel=1e-6)
    with pytest.raises(ValueError, match="p must be 1 or 2"):
        wasserstein(x, y, p=3)
    with pytest.raises(ValueError, match="same dimension"):
        wasserstein(x, cloud)


def test_mmd_closed_forms():
    x = torch.randn(30, 2)
    assert mmd(x, x) == 0.0
    assert mmd(x, x + 1.0) > 0.1
    # two single points at distance 1: MMD^2 = 2 - 2 exp(-1 / (2 h^2))
    a, b = torch.zeros(1, 1), torch.ones(1, 1)
    expected = 2 - 2 * math.exp(-1 / (2 * 0.5**2))
    assert mmd(a, b, bandwidths=[0.5], squared=True) == pytest.approx(expected)
    assert mmd(a, b, bandwidths=[0.5]) == pytest.approx(math.sqrt(expected))
    line = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 2, 3: median 2
    assert median_bandwidths(line) == pytest.approx([1.0, 2.0, 4.0])
    with pytest.raises(ValueError, match="bandwidths must be positive"):
        mmd(a, b, bandwidths=[0.0])


def test_segment_scores_against_hand_computed_cases():
    assert segment_scores([1, 1, 0, 0, 2], [0, 0, 1, 1, 2]) == {"seg_ari": 1.0, "seg_nmi": 1.0}
    # contingency [[1, 1], [1, 1]]: ARI = (0 - 2/3) / (2 - 2/3) = -1/2, no shared information
    scores = segment_scores([0, 0, 1, 1], [0, 1, 0, 1])
    assert scores["seg_ari"] == pytest.approx(-0.5)
    assert scores["seg_nmi"] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="equal length"):
        segment_scores([0, 1], [0, 1, 1])


# -- metrics of the data ----------------------------------------------------------------


def circle(n: int = 400, noise: float = 0.02, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    points = torch.stack([angle.cos(), angle.sin()], dim=1)
    return points + noise * torch.randn(n, 2, generator=generator)


def test_rbf_metric_is_one_on_the_data_and_large_off_it():
    points = circle()
    metric = RBFMetric(num_centers=30, epochs=40).fit(points)
    h = metric.h(points)
    assert float((1 - h).abs().mean()) < 0.1
    assert float(metric.weights.min()) >= 1e-4
    off = torch.tensor([[0.0, 0.0], [2.5, 0.0]])
    on = metric(points).mean()
    assert metric(off).shape == (2, 2)
    assert (metric(off)[:, 0] > 5 * on).all()
    # the diagonal is isotropic: (h + eps)^-alpha on every coordinate
    torch.testing.assert_close(metric(points[:5])[:, 0], (metric.h(points[:5]) + 1e-3) ** -1.0)
    torch.testing.assert_close(metric(points[:5])[:, 1], metric(points[:5])[:, 0])


def test_land_metric_matches_its_formula_and_is_small_on_the_data():
    points = circle(200)
    metric = LANDMetric(gamma=0.2, rho=1e-3, alpha=1.0).fit(points)
    x = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 3.0]])
    # direct (B, N, D) evaluation of sum_i w_i (x_i - x)^2 + rho
    weights = torch.exp(-(x[:, None] - points[None]).square().sum(-1) / (2 * 0.2**2))
    direct = (weights[..., None] * (points[None] - x[:, None]).square()).sum(1) + 1e-3
    torch.testing.assert_close(metric.local_covariance(x), direct, rtol=1e-3, atol=1e-5)
    torch.testing.assert_close(metric(x), 1 / direct, rtol=1e-3, atol=1e-3)
    on, centre, far = metric(x)
    assert (on < 0.1 * centre).all() and (far == pytest.approx(1 / 1e-3, rel=1e-3))
    squared = LANDMetric(gamma=0.2, alpha=2.0).fit(points)
    torch.testing.assert_close(squared(x), direct.pow(-2), rtol=1e-3, atol=1e-2)


def test_land_metric_warns_when_gamma_is_too_small():
    with pytest.warns(UserWarning, match="gamma is small for these data"):
        LANDMetric(gamma=1e-4).fit(circle(100))


def test_fitted_metrics_restore_from_a_state_dict_without_refitting():
    points = circle(100)
    for fitted, fresh in (
        (RBFMetric(num_centers=10, epochs=5).fit(points), RBFMetric(num_centers=10)),
        (LANDMetric(gamma=0.3).fit(points), LANDMetric(gamma=0.3)),
    ):
        with pytest.raises(RuntimeError, match="not fitted"):
            fresh(points)
        fresh.load_state_dict(fitted.state_dict())
        torch.testing.assert_close(fresh(points), fitted(points))


# -- modules ----------------------------------------------------------------------------

TINY_MODEL = {
    "hidden_dim": 16,
    "num_layers": 2,
    "router_hidden_dim": 16,
    "bend_hidden_dims": [16, 16],
    "ode_steps": 10,
    "regime_points": 32,
    "regime_times": 3,
}


def tiny_lorenz(**kwargs) -> SwitchingLorenz:
    args = {
        "num_marginals": 5,
        "switch_after": 3,
        "window": 3,
        "num_trajectories": 60,
        "held_out": [2],
        "batch_size": 32,
        "steps_per_epoch": 10,
    }
    return SwitchingLorenz(**{**args, **kwargs})


def trainer(tmp_path, **kwargs) -> L.Trainer:
    defaults = {
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
        "default_root_dir": tmp_path,
    }
    return L.Trainer(**{**defaults, **kwargs})


def test_flux_fits_tests_and_round_trips_through_a_checkpoint(tmp_path):
    L.seed_everything(0)
    data = tiny_lorenz()
    model = FLUXModule(
        dim=9, metric="land", metric_options={"gamma": 1.0}, bend_steps=20, **TINY_MODEL
    )
    fit = trainer(tmp_path, max_steps=60, enable_checkpointing=False)
    fit.fit(model, datamodule=data)

    assert model.metric.is_fitted and len(model.metric.points) == 4 * 60  # training marginals
    assert int(model.bend_step) == 20 and int(model.flow_step) == 40
    assert not any(p.requires_grad for p in model.bend.parameters())
    assert float(fit.callback_metrics["bend/energy_ratio"]) < 1.0  # bending lowered the energy
    assert float(model.time_scale) == pytest.approx(1.0)  # marginals one unit apart
    results = fit.test(model, datamodule=data, verbose=False)[0]
    for name in ("w1", "w2", "mmd", "w1_source", "seg_ari", "seg_nmi", "w1_m2"):
        assert math.isfinite(results[f"test/{name}"]), name
    assert results["test/w2"] >= results["test/w1"] - 1e-6  # W2 >= W1 always
    usage = [results[f"test/usage_seg{k}_expert{m}"] for k in range(4) for m in range(2)]
    assert sum(usage) == pytest.approx(4.0)

    assert (tmp_path / "figures" / "router_usage.png").stat().st_size > 1000
    regimes = model.regimes(data)
    assert regimes["predicted"].shape == (4,) and regimes["usage"].shape == (4, 2)
    torch.testing.assert_close(regimes["predicted"], regimes["usage"].argmax(dim=1))
    expected = segment_scores(regimes["predicted"], data.segment_labels)
    assert results["test/seg_ari"] == pytest.approx(expected["seg_ari"])

    path = tmp_path / "flux.ckpt"
    fit.save_checkpoint(path)
    loaded = FLUXModule.load_from_checkpoint(path, weights_only=True)
    assert loaded.metric.is_fitted and int(loaded.bend_step) == 20
    x = data.marginals.points[0][:16]
    torch.testing.assert_close(loaded.push_forward(x, 0.0, 2.0), model.push_forward(x, 0.0, 2.0))
    torch.testing.assert_close(loaded.regimes(data)["usage"], regimes["usage"])

    loaded.metric.fit = lambda points: pytest.fail("a restored metric was fitted again")
    resumed = trainer(tmp_path, max_steps=62, enable_checkpointing=False)
    resumed.fit(loaded, datamodule=data, ckpt_path=path)  # the metric is not fitted again
    torch.testing.assert_close(loaded.metric.points, model.metric.points)
    assert int(loaded.flow_step) == 42 and int(loaded.bend_step) == 20


def test_flux_ablations_and_baselines_share_the_evaluation(tmp_path):
    L.seed_everything(0)
    data = ManifoldMarginals(
        ambient_dim=4, num_marginals=5, points_per_marginal=60, held_out=[2], batch_size=32,
        steps_per_epoch=10,
    )  # fmt: skip
    straight = FLUXModule(dim=4, metric="none", num_experts=1, **TINY_MODEL)
    assert straight.bend is None and straight.velocity_field.router is None
    otcfm = zoo.create_model("otcfm", dim=4, hidden_dim=16, num_layers=2, ode_steps=10)
    icfm = zoo.create_model("icfm", dim=4, hidden_dim=16, num_layers=2, ode_steps=10)
    assert (otcfm.hparams.matcher, icfm.hparams.matcher) == ("exact_ot", "independent")
    scores = {}
    for name, model in (("flux_straight", straight), ("otcfm", otcfm), ("icfm", icfm)):
        fit = trainer(tmp_path, max_steps=30, enable_checkpointing=False)
        fit.fit(model, datamodule=data)
        scores[name] = fit.test(model, datamodule=data, verbose=False)[0]
        assert scores[name]["test/w1"] < scores[name]["test/w1_source"], name
    # the unmoved source is scored by the same code for every model
    assert len({s["test/w1_source"] for s in scores.values()}) == 1
    assert "test/seg_ari" not in scores["flux_straight"]  # the manifold data have no regimes

    path = tmp_path / "otcfm.ckpt"
    fit.save_checkpoint(path)
    loaded = ConditionalFlowMatching.load_from_checkpoint(path, weights_only=True)
    x = data.marginals.points[1]
    torch.testing.assert_close(loaded.push_forward(x, 1.0, 2.0), icfm.push_forward(x, 1.0, 2.0))


def test_flux_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="num_experts must be a positive integer, got 0"):
        FLUXModule(dim=2, num_experts=0)
    with pytest.raises(ValueError, match="unknown metric 'riemann'; expected one of"):
        FLUXModule(dim=2, metric="riemann")
    with pytest.raises(ValueError, match="tau_end=2.0 must not exceed tau_start=1.0"):
        FLUXModule(dim=2, tau_start=1.0, tau_end=2.0)
    with pytest.raises(ValueError, match="bad options for metric 'land'"):
        FLUXModule(dim=2, metric="land", metric_options={"kappa": 1.0})
    with pytest.raises(ValueError, match="unknown matcher 'sb'"):
        ConditionalFlowMatching(dim=2, matcher="sb")

    model = FLUXModule(dim=3, bend_steps=1, **TINY_MODEL)
    with pytest.raises(ValueError, match="the data are 9-dimensional .* dim=3; set model dim to 9"):
        trainer(tmp_path, max_steps=2).fit(model, datamodule=tiny_lorenz())
    batches = DataLoader([{"x0": torch.zeros(1, 4, 3)}], batch_size=None)
    with pytest.raises(ValueError, match="needs a marginals data module"):
        trainer(tmp_path, max_steps=2).fit(model, train_dataloaders=batches)
    with pytest.raises(ValueError, match=r"expected points \(N, 3\)"):
        model.push_forward(torch.zeros(4, 2), 0.0, 1.0)
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        model.push_forward(torch.zeros(4, 3), 0.0, 1.0, steps=0)
    with pytest.raises(ValueError, match="tau_steps must be a positive integer"):
        FLUXModule(dim=2, tau_steps=0)
    for bad in ({"lr": -1.0}, {"bend_lr": 0.0}, {"balance_weight": float("nan")}):
        with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a"):
            FLUXModule(dim=2, **bad)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        ConditionalFlowMatching(dim=2, lr=-1.0)
    # arrays and other float types are cast to the model's
    points = np.zeros((4, 3))
    torch.testing.assert_close(
        model.push_forward(points, 0.0, 1.0, steps=2),
        model.push_forward(torch.zeros(4, 3), 0.0, 1.0, steps=2),
    )


def test_registered_names():
    assert {"flux", "icfm", "otcfm"} <= set(zoo.list_models())
    model = zoo.create_model("flux", dim=5, num_experts=3)
    assert isinstance(model, FLUXModule) and model.num_experts == 3


def test_model_comparison_study_tabulates_flux_and_baselines(tmp_path):
    import csv

    import yaml

    from zoo.cli import main

    data = {
        "class_path": "SwitchingLorenz",
        "init_args": {
            "num_marginals": 5,
            "switch_after": 3,
            "window": 3,
            "num_trajectories": 40,
            "held_out": [2],
            "batch_size": 16,
            "steps_per_epoch": 10,
        },
    }
    small = {"dim": 9, "hidden_dim": 8, "num_layers": 1, "ode_steps": 5}
    config = {
        "study": "model_comparison",
        "seed_everything": 0,
        "base": {
            "data": data,
            "trainer": {
                "max_steps": 20,
                "accelerator": "cpu",
                "enable_progress_bar": False,
                "enable_model_summary": False,
            },
        },
        "models": {
            "flux": {
                "class_path": "FLUXModule",
                "init_args": {**small, "bend_steps": 5, "router_hidden_dim": 8},
            },
            "otcfm": {"class_path": "ConditionalFlowMatching", "init_args": small},
        },
        "metrics": ["w1", "w1_source", "seg_ari"],
        "baseline_metric": "w1_source",
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["study", "-c", str(path), "--out", str(tmp_path / "compare")])
    with open(tmp_path / "compare" / "results.csv") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"flux", "otcfm"}
    assert rows["flux"]["w1_source"] == rows["otcfm"]["w1_source"]  # the same held-out item
    assert float(rows["flux"]["w1"]) > 0 and float(rows["otcfm"]["w1"]) > 0
    assert -1 <= float(rows["flux"]["seg_ari"]) <= 1 and rows["otcfm"]["seg_ari"] == ""
    assert (tmp_path / "compare" / "figures" / "test_w1.png").is_file()
