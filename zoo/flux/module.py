"""FLUX: geometry-aware longitudinal flow matching with a mixture of experts.

From "FLUX: Geometry-Aware Longitudinal Flow Matching with Mixture of Experts" (Ortega
Caro et al., 2026). The data are unpaired snapshots (marginals) of a population at
ordered times; the model learns one velocity field ``v(x, t)`` that carries each
marginal to the next, and the expert its router picks says which regime drives each
segment. :class:`MarginalFlowModule` holds what every such model shares (time units,
integration, the held-out evaluation), so the baselines of :mod:`zoo.flux.baselines` are
scored by exactly the same code.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torchdiffeq import odeint

from zoo.flux.coupling import COUPLING_METHODS, CouplingMethod, ot_coupling
from zoo.flux.experts import (
    MixtureVelocity,
    TemperatureSchedule,
    load_balance,
    routing_entropy,
    temporal_coherence,
)
from zoo.flux.metric import METRICS, build_metric
from zoo.flux.metrics import mmd, segment_scores, wasserstein
from zoo.flux.paths import BendNetwork, geodesic_path, kinetic_energy
from zoo.registry import register_model

log = logging.getLogger(__name__)

ODEMethod = Literal[
    "euler", "midpoint", "rk4", "heun3", "dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun"
]
FIXED_STEP_METHODS = ("euler", "midpoint", "rk4", "heun3")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
BATCH_KEYS = ("x0", "x1", "t0", "t1")
EVAL_KEYS = ("x_source", "t_source", "x_target", "t_target")


class MarginalFlowModule(L.LightningModule):
    """Base of the longitudinal flow models: time units, push-forward and evaluation.

    Subclasses implement :meth:`velocity` in model time. Model time is ``(t - t_first) /
    gap``, with ``gap`` the mean spacing of the data module's time stamps, fitted at the
    start of training and kept in buffers, so that adjacent marginals lie about one unit
    apart whatever the data's units (hours, days). Every time argument of the public
    methods is in the data's units.

    Evaluation, per held-out marginal (one validation or test item each): the source
    marginal is integrated from its time to the held-out time with :meth:`push_forward`
    and compared with the held-out points in the data module's (standardised) space:
    ``w1``, ``w2`` (exact, POT), ``mmd`` (RBF kernels, see :func:`zoo.flux.metrics.mmd`)
    and ``w1_source``, the W1 of the source left where it is, the baseline to beat.
    Each is logged as ``stage/name`` (mean over held-out marginals) and
    ``stage/name_m<index>``.

    Args:
        dim: Dimension ``D`` of the data.
        ode_method: ``torchdiffeq`` solver of :meth:`push_forward`.
        ode_steps: Steps of a fixed-step solver per push-forward.
        mmd_bandwidths: RBF bandwidths of the MMD; ``None``: the median heuristic on the
            held-out points.
        max_eval_points: Score at most this many points of each set (a seeded subset).
    """

    test_metrics: tuple[str, ...] = ("w1", "w2", "mmd", "w1_source")
    """The names it logs as ``test/<name>`` (a study checks its table against them)."""

    def __init__(
        self,
        dim: int,
        ode_method: ODEMethod = "euler",
        ode_steps: int = 100,
        mmd_bandwidths: list[float] | None = None,
        max_eval_points: int = 2000,
    ) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if ode_method not in FIXED_STEP_METHODS + ADAPTIVE_METHODS:
            raise ValueError(
                f"unknown ode_method {ode_method!r}; expected one of "
                f"{FIXED_STEP_METHODS + ADAPTIVE_METHODS}"
            )
        if ode_steps < 1:
            raise ValueError(f"ode_steps must be a positive integer, got {ode_steps}")
        if mmd_bandwidths is not None and (
            not mmd_bandwidths or any(not h > 0 for h in mmd_bandwidths)
        ):
            raise ValueError(
                f"mmd_bandwidths must be positive numbers or null, got {mmd_bandwidths}"
            )
        if max_eval_points < 2:
            raise ValueError(f"max_eval_points must be at least 2, got {max_eval_points}")
        self.dim, self.ode_method, self.ode_steps = dim, ode_method, ode_steps
        self.mmd_bandwidths = None if mmd_bandwidths is None else list(mmd_bandwidths)
        self.max_eval_points = max_eval_points
        self.register_buffer("time_offset", torch.zeros(()))
        self.register_buffer("time_scale", torch.ones(()))
        self.register_buffer("fitted_time", torch.zeros((), dtype=torch.bool))

    # -- data ---------------------------------------------------------------------------

    def attached_datamodule(self, need: tuple[str, ...] = ("pooled_points",)) -> Any:
        """The trainer's data module; a clear error when there is none or it lacks ``need``."""
        trainer = self._trainer
        datamodule = None if trainer is None else getattr(trainer, "datamodule", None)
        missing = [name for name in need if not hasattr(datamodule, name)]
        if datamodule is None or missing:
            what = "no data module" if datamodule is None else type(datamodule).__name__
            raise ValueError(
                f"{type(self).__name__} needs a marginals data module (with "
                f"{', '.join(need)}), e.g. datamodules.SwitchingLorenz, passed as "
                f"trainer.fit(model, datamodule=...); got {what}"
            )
        return datamodule

    def check_data(self, datamodule: Any) -> None:
        """Raise ``ValueError`` if the data's dimension is not the model's."""
        dim = getattr(datamodule, "dim", None)
        if dim is not None and int(dim) != self.dim:
            raise ValueError(
                f"the data are {int(dim)}-dimensional but {type(self).__name__} was built "
                f"with dim={self.dim}; set model dim to {int(dim)}"
            )

    def fit_time_units(self, times: Tensor) -> None:
        """Set model time from the data's time stamps ``(K,)``."""
        times = torch.as_tensor(times, dtype=torch.float32).flatten()
        if len(times) < 2 or not (times.diff() > 0).all():
            raise ValueError(f"times must be at least two increasing stamps, got {times.tolist()}")
        self.time_offset = times[0].to(self.time_offset.device)
        self.time_scale = ((times[-1] - times[0]) / (len(times) - 1)).to(self.time_scale.device)
        self.fitted_time = torch.ones((), dtype=torch.bool, device=self.fitted_time.device)

    def model_time(self, t: Tensor | float) -> Tensor:
        """Data time -> model time."""
        t = torch.as_tensor(t, dtype=torch.float32, device=self.time_offset.device)
        return (t - self.time_offset) / self.time_scale

    def on_fit_start(self) -> None:
        datamodule = self.attached_datamodule(("times", "pairs"))
        self.check_data(datamodule)
        if not bool(self.fitted_time):
            self.fit_time_units(datamodule.times)

    def _check_batch(self, batch: dict[str, Tensor], keys: tuple[str, ...], stage: str) -> None:
        if not isinstance(batch, dict) or any(k not in batch for k in keys):
            got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(f"{stage} batch must be a dict with keys {keys}, got {got}")
        for key in keys:
            if key.startswith("x") and batch[key].shape[-1] != self.dim:
                raise ValueError(
                    f"{stage} batch {key} has dimension {batch[key].shape[-1]} but "
                    f"{type(self).__name__} was built with dim={self.dim}"
                )

    # -- model --------------------------------------------------------------------------

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """Velocity ``(N, D)`` at points ``x`` ``(N, D)`` and model time ``t``."""
        raise NotImplementedError

    @torch.no_grad()
    def push_forward(
        self,
        x: Tensor,
        t0: Tensor | float,
        t1: Tensor | float,
        steps: int | None = None,
        method: ODEMethod | None = None,
    ) -> Tensor:
        """Integrate ``dx/dt = v(x, t)`` from ``t0`` to ``t1`` (data units), without gradients.

        Args:
            x: Points ``(N, D)`` at time ``t0`` (a tensor or array of any float type; cast
                to the model's dtype and device).
            t0: Start time.
            t1: End time (earlier than ``t0`` integrates backwards).
            steps: Steps of a fixed-step solver (default: ``ode_steps``).
            method: ``torchdiffeq`` solver (default: ``ode_method``).

        Returns:
            The points at ``t1``, ``(N, D)``.
        """
        dtype = next(self.parameters()).dtype
        x = torch.as_tensor(x).to(device=self.device, dtype=dtype)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected points (N, {self.dim}), got {tuple(x.shape)}")
        method = method or self.ode_method
        if method not in FIXED_STEP_METHODS + ADAPTIVE_METHODS:
            raise ValueError(
                f"unknown method {method!r}; expected one of "
                f"{FIXED_STEP_METHODS + ADAPTIVE_METHODS}"
            )
        steps = self.ode_steps if steps is None else steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        start, end = self.model_time(t0).to(x.device), self.model_time(t1).to(x.device)
        if torch.isclose(start, end):
            return x.clone()
        grid = torch.linspace(float(start), float(end), steps + 1, device=x.device)
        if method in ADAPTIVE_METHODS:
            grid = grid[[0, -1]]
        path = odeint(lambda t, state: self.velocity(state, t), x, grid.to(x), method=method)
        return path[-1]

    # -- evaluation ---------------------------------------------------------------------

    def _subset(self, x: Tensor, seed: int) -> Tensor:
        if len(x) <= self.max_eval_points:
            return x
        generator = torch.Generator().manual_seed(seed)
        return x[torch.randperm(len(x), generator=generator)[: self.max_eval_points]]

    def evaluate_marginal(self, batch: dict[str, Any]) -> dict[str, float]:
        """``w1``, ``w2``, ``mmd`` and ``w1_source`` of one held-out item (see the class)."""
        source, target = batch["x_source"].float(), batch["x_target"].float()
        pushed = self.push_forward(source, batch["t_source"], batch["t_target"])
        if not torch.isfinite(pushed).all():
            raise ValueError(
                f"{type(self).__name__}: the push-forward diverged (NaN or infinite points); "
                "lower the learning rate or use more ode_steps"
            )
        pushed, target, source = (
            self._subset(x, i) for i, x in enumerate((pushed, target, source))
        )
        return {
            "w1": wasserstein(pushed, target, p=1),
            "w2": wasserstein(pushed, target, p=2),
            "mmd": mmd(pushed, target, self.mmd_bandwidths),
            "w1_source": wasserstein(source, target, p=1),
        }

    def _evaluation_step(self, batch: dict[str, Any], stage: str) -> dict[str, float]:
        self._check_batch(batch, EVAL_KEYS, stage)
        scores = self.evaluate_marginal(batch)
        index = int(batch.get("index", -1))
        for name, value in scores.items():
            self.log(f"{stage}/{name}", value, batch_size=1, prog_bar=name == "w1")
            self.log(f"{stage}/{name}_m{index}", value, batch_size=1)
        return scores

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The source marginal pushed to the held-out time, beside the held-out points."""
        self._check_batch(batch, EVAL_KEYS, "predict")
        pushed = self.push_forward(batch["x_source"], batch["t_source"], batch["t_target"])
        return {"index": batch.get("index"), "pushed": pushed, "target": batch["x_target"]}


@register_model("flux")
class FLUXModule(MarginalFlowModule):
    """FLUX: metric-geodesic conditional paths and a mixture-of-experts velocity field.

    Training runs three stages in one ``fit`` (manual optimisation, one optimiser step per
    training step):

    1. **Metric** (at the start of ``fit``): a diagonal metric ``G`` (``rbf`` or ``land``,
       :mod:`zoo.flux.metric`) is fitted on the data module's ``pooled_points()`` (all
       training marginals). Skipped when the module already holds a fitted metric (it was
       restored from a checkpoint) and with ``metric: none``.
    2. **Bend** (the first ``bend_steps`` steps): the bend network ``phi`` of the paths
       ``x_t = (1-s) x0 + s x1 + 2s(1-s) phi(x0, x1, t)`` (:mod:`zoo.flux.paths`) between
       exact-OT-coupled endpoints of adjacent training marginals minimises the kinetic
       energy ``E[sum_d G_dd(x_t) u_d^2]``, divided by that of the straight lines on the
       first batch; then ``phi`` is frozen. ``metric: none`` skips this stage: paths are
       straight (the "FLUX without geometry" ablation).
    3. **Velocity** (the remaining steps): the mixture ``v(x, t) = sum_m r_m(x, t) v_m(x,
       t)`` (:class:`~zoo.flux.experts.MixtureVelocity`) regresses the path tangents,
       ``E ||v(x_t, t) - u_t||^2``, plus ``balance_weight`` times the load balance
       ``KL(mean router probabilities || uniform)``, ``entropy_weight`` times the mean
       per-point routing entropy and ``coherence_weight`` times the temporal coherence
       ``||p(x_t, t) - p(x_{t'}, t')||^2`` with ``t'`` a fraction ``coherence_delta`` of
       the segment later on the same path. The Gumbel temperature anneals from
       ``tau_start`` to ``tau_end`` over the first ``tau_steps`` velocity steps.

    Every training batch holds, for each adjacent training pair ``(a, b)``, independent
    samples of both marginals; times are global, ``t = t_a + s (t_b - t_a)``, ``s ~ U(0,
    1)``, so that one field integrates across the whole chain. At inference the router is
    a hard argmax: :meth:`regimes` labels each segment by its majority expert, scored
    against the data module's ``segment_labels`` as ``seg_ari`` and ``seg_nmi``.

    Logged: ``bend/energy``, ``bend/loss`` (the energy over that of the straight lines of
    the first batch, a fixed scale), ``bend/energy_ratio`` (the energy over that of the
    straight lines between the same endpoints at the same times: below 1 once the bend
    helps), ``train/fm_loss``, ``train/loss``, ``train/tau``,
    ``train/usage_expert<m>`` (fraction of points routed to expert m) and the
    regularisers; at validation and test the
    metrics of :class:`MarginalFlowModule`, ``seg_ari``, ``seg_nmi`` and
    ``usage_seg<k>_expert<m>`` (plus a ``regimes`` table with a W&B logger).

    Args:
        dim: Dimension ``D`` of the data.
        metric: ``rbf`` (the radial-basis metric of FLUX's pipeline), ``land`` or ``none``
            (Euclidean: straight paths, no bend stage).
        metric_options: Arguments of the metric (:class:`~zoo.flux.metric.LANDMetric`,
            :class:`~zoo.flux.metric.RBFMetric`).
        bend_hidden_dims: Hidden widths of the bend network.
        bend_steps: Optimisation steps of the bend stage.
        bend_lr: Adam learning rate of the bend network.
        num_experts: Number of experts ``M`` (1: a single velocity MLP, no router).
        hidden_dim: Width of each expert's hidden layers.
        num_layers: Hidden layers of each expert.
        router_hidden_dim: Width of the router's hidden layers.
        router_layers: Hidden layers of the router.
        tau_start: Initial Gumbel-Softmax temperature.
        tau_end: Final temperature (``<= tau_start``).
        tau_steps: Velocity steps of the anneal.
        balance_weight: Weight of the load-balance loss.
        entropy_weight: Weight of the routing entropy.
        coherence_weight: Weight of the temporal coherence.
        coherence_delta: Offset of the coherence's second point, as a fraction of a segment.
        coupling: ``exact`` (minibatch OT) or ``independent`` endpoints.
        lr: AdamW learning rate of the velocity field.
        weight_decay: AdamW weight decay of the velocity field.
        regime_points: Paths per segment that :meth:`regimes` routes.
        regime_times: Times per segment at which :meth:`regimes` routes them.
        seed: Seed of the points :meth:`regimes` draws.
        ode_method, ode_steps, mmd_bandwidths, max_eval_points: See
            :class:`MarginalFlowModule`.
    """

    test_metrics = (*MarginalFlowModule.test_metrics, "seg_ari", "seg_nmi")

    def __init__(
        self,
        dim: int,
        metric: Literal["rbf", "land", "none"] = "rbf",
        metric_options: dict[str, Any] | None = None,
        bend_hidden_dims: list[int] | tuple[int, ...] = (64, 64, 64),
        bend_steps: int = 500,
        bend_lr: float = 1e-3,
        num_experts: int = 2,
        hidden_dim: int = 64,
        num_layers: int = 3,
        router_hidden_dim: int = 64,
        router_layers: int = 2,
        tau_start: float = 1.0,
        tau_end: float = 0.1,
        tau_steps: int = 1000,
        balance_weight: float = 0.1,
        entropy_weight: float = 0.01,
        coherence_weight: float = 0.1,
        coherence_delta: float = 0.1,
        coupling: CouplingMethod = "exact",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        regime_points: int = 256,
        regime_times: int = 5,
        seed: int = 0,
        ode_method: ODEMethod = "euler",
        ode_steps: int = 100,
        mmd_bandwidths: list[float] | None = None,
        max_eval_points: int = 2000,
    ) -> None:
        super().__init__(dim, ode_method, ode_steps, mmd_bandwidths, max_eval_points)
        self.save_hyperparameters(logger=False)
        if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 1:
            raise ValueError(f"num_experts must be a positive integer, got {num_experts!r}")
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
        if coupling not in COUPLING_METHODS:
            raise ValueError(f"unknown coupling {coupling!r}; expected one of {COUPLING_METHODS}")
        if bend_steps < 0:
            raise ValueError(f"bend_steps must be non-negative, got {bend_steps}")
        for name, value in (
            ("balance_weight", balance_weight),
            ("entropy_weight", entropy_weight),
            ("coherence_weight", coherence_weight),
            ("weight_decay", weight_decay),
        ):
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        for name, value in (("lr", lr), ("bend_lr", bend_lr)):
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not 0 < coherence_delta <= 1:
            raise ValueError(f"coherence_delta must lie in (0, 1], got {coherence_delta}")
        if regime_points < 1 or regime_times < 1:
            raise ValueError(
                f"regime_points and regime_times must be positive, got {regime_points} and "
                f"{regime_times}"
            )
        self.schedule = TemperatureSchedule(tau_start, tau_end, tau_steps)
        self.metric = build_metric(metric, metric_options)
        self.bend = None if self.metric is None else BendNetwork(dim, list(bend_hidden_dims))
        self.velocity_field = MixtureVelocity(
            dim, num_experts, hidden_dim, num_layers, router_hidden_dim, router_layers
        )
        self.automatic_optimization = False
        self.register_buffer("bend_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("flow_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("energy_scale", torch.zeros(()))

    @property
    def num_experts(self) -> int:
        return self.velocity_field.num_experts

    @property
    def bending(self) -> bool:
        """Whether the next training step belongs to the bend stage."""
        return self.bend is not None and int(self.bend_step) < self.hparams.bend_steps

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self.velocity_field(x, t, hard=True)[0]

    def path(
        self, x0: Tensor, x1: Tensor, t0: Tensor, t1: Tensor, t: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The conditional path's point and tangent (bent, or straight without a metric)."""
        return geodesic_path(x0, x1, t0, t1, t, self.bend)

    # -- stages ---------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        super().on_fit_start()
        datamodule = self.attached_datamodule(("pooled_points", "times", "pairs"))
        if self.metric is not None and not self.metric.is_fitted:
            points = torch.as_tensor(datamodule.pooled_points()).float()
            if points.ndim != 2 or points.shape[1] != self.dim:
                raise ValueError(
                    f"pooled_points() gave shape {tuple(points.shape)}; expected (N, {self.dim})"
                )
            self.metric.fit(points.to(self.device))
        if self.bend is not None and not self.bending:
            self.bend.requires_grad_(False)
        max_steps = self.trainer.max_steps
        if self.bend is not None and 0 < max_steps <= self.hparams.bend_steps:
            rank_zero_warn(
                f"trainer max_steps={max_steps} does not exceed bend_steps="
                f"{self.hparams.bend_steps}: the velocity field will not be trained"
            )

    def _coupled(self, batch: dict[str, Tensor]) -> tuple[Tensor, ...]:
        """Flattened, coupled endpoints and their model times, plus ``s ~ U(0, 1)``."""
        x0, x1 = batch["x0"].float(), batch["x1"].float()
        if x0.ndim == 2:  # one pair
            x0, x1 = x0[None], x1[None]
        pairs, size = x0.shape[:2]
        t0 = self.model_time(batch["t0"]).reshape(-1).to(x0)
        t1 = self.model_time(batch["t1"]).reshape(-1).to(x0)
        if len(t0) != pairs or len(t1) != pairs or x1.shape[:2] != (pairs, size):
            raise ValueError(
                f"train batch: x0 {tuple(x0.shape)}, x1 {tuple(x1.shape)}, t0 {len(t0)} and t1 "
                f"{len(t1)} do not describe the same (P, B) pairs"
            )
        sources, targets = [], []
        for p in range(pairs):
            i, j = ot_coupling(x0[p], x1[p], self.hparams.coupling)
            sources.append(x0[p, i])
            targets.append(x1[p, j])
        start = t0.repeat_interleave(size)
        end = t1.repeat_interleave(size)
        s = torch.rand(pairs * size, device=x0.device)
        return torch.cat(sources), torch.cat(targets), start, end, s

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._check_batch(batch, BATCH_KEYS, "train")
        x0, x1, t0, t1, s = self._coupled(batch)
        t = t0 + s * (t1 - t0)
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if self.bending:
            return self._bend_step(optimizers[0], x0, x1, t0, t1, t)
        return self._velocity_step(optimizers[-1], x0, x1, t0, t1, s)

    def _bend_step(self, optimizer, x0, x1, t0, t1, t) -> Tensor:
        with torch.no_grad():  # the same batch's straight lines: what the bend has gained
            straight = kinetic_energy(*geodesic_path(x0, x1, t0, t1, t), self.metric)
        if float(self.energy_scale) <= 0:  # the loss's fixed scale: the first batch's lines
            self.energy_scale = straight.clamp_min(1e-12)
        energy = kinetic_energy(*self.path(x0, x1, t0, t1, t), self.metric)
        loss = energy / self.energy_scale
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.bend_step += 1
        if not self.bending:
            self.bend.requires_grad_(False)
            log.info("bend network trained for %d steps and frozen", int(self.bend_step))
        size = len(x0)
        self.log("bend/energy", energy.detach(), batch_size=size)
        self.log("bend/loss", loss.detach(), batch_size=size)
        ratio = energy.detach() / straight.clamp_min(1e-12)
        self.log("bend/energy_ratio", ratio, prog_bar=True, batch_size=size)
        return loss.detach()

    def _velocity_step(self, optimizer, x0, x1, t0, t1, s) -> Tensor:
        t = t0 + s * (t1 - t0)
        with torch.no_grad():
            x_t, u_t = self.path(x0, x1, t0, t1, t)
        tau = self.schedule(int(self.flow_step))
        v, weights, probs = self.velocity_field(x_t, t, tau=tau, hard=False)
        fm_loss = (v - u_t).square().sum(dim=-1).mean()
        loss = fm_loss
        size = len(x0)
        if self.num_experts > 1:
            later = t0 + (s + self.hparams.coherence_delta).clamp(max=1.0) * (t1 - t0)
            with torch.no_grad():
                x_later = self.path(x0, x1, t0, t1, later)[0]
            probs_later = self.velocity_field.route(x_later, later, hard=True)[1]
            terms = {
                "balance": load_balance(probs),
                "entropy": routing_entropy(probs),
                "coherence": temporal_coherence(probs, probs_later),
            }
            for name, value in terms.items():
                loss = loss + self.hparams[f"{name}_weight"] * value
                self.log(f"train/{name}", value.detach(), batch_size=size)
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()
        self.flow_step += 1
        self.log("train/fm_loss", fm_loss.detach(), prog_bar=True, batch_size=size)
        self.log("train/loss", loss.detach(), batch_size=size)
        self.log("train/tau", tau, batch_size=size)
        for m, usage in enumerate(weights.detach().mean(dim=0)):
            self.log(f"train/usage_expert{m}", usage, batch_size=size)
        return loss.detach()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        velocity = torch.optim.AdamW(
            self.velocity_field.parameters(),
            lr=self.hparams.lr,
            weight_decay=self.hparams.weight_decay,
        )
        if self.bend is None:
            return [velocity]
        bend = torch.optim.Adam(self.bend.parameters(), lr=self.hparams.bend_lr)
        return [bend, velocity]

    # -- regimes --------------------------------------------------------------------------

    @torch.no_grad()
    def regimes(self, datamodule: Any = None) -> dict[str, Tensor]:
        """The expert the hard router picks for each adjacent segment ``k -> k+1``.

        For each segment of the data module's full time grid (held-out marginals
        included), ``regime_points`` paths between the two training marginals that span it
        (coupled as in training, drawn with a generator seeded by ``seed``) are routed at
        ``regime_times`` evenly spaced times inside the segment; the segment's regime is
        the expert chosen most often. A segment after the last training marginal uses the
        last training marginal pushed forward by the learned field instead. Only
        training marginals are used.

        Args:
            datamodule: A marginals data module after ``setup``; default: the trainer's.

        Returns:
            ``{"predicted": (K-1,) long, "usage": (K-1, M)}``, usage the fraction of routed
            points per expert.
        """
        datamodule = datamodule or self.attached_datamodule(("marginals", "times", "pairs"))
        times = torch.as_tensor(datamodule.times, dtype=torch.float32).flatten()
        points = datamodule.marginals.points
        train = sorted(datamodule.train_indices)
        generator = torch.Generator().manual_seed(self.hparams.seed)
        size, counts = self.hparams.regime_points, []
        fractions = (torch.arange(self.hparams.regime_times) + 0.5) / self.hparams.regime_times
        for k in range(len(times) - 1):
            query = times[k] + fractions * (times[k + 1] - times[k])  # data units
            spanning = [(a, b) for a, b in datamodule.pairs if a <= k and k + 1 <= b]
            earlier = [a for a in train if a <= k]
            if not spanning and not earlier:
                raise ValueError(f"no training marginal at or before segment {k}")
            if spanning:
                a, b = spanning[0]
                x0 = self._draw(points[a], size, generator)
                x1 = self._draw(points[b], size, generator)
                i, j = ot_coupling(x0, x1, self.hparams.coupling, generator=generator)
                x0, x1 = x0[i], x1[j]
                t0, t1 = self.model_time(times[a]), self.model_time(times[b])
                located = [
                    (self.path(x0, x1, t0, t1, self.model_time(q).expand(size))[0], q)
                    for q in query
                ]
            else:
                a = earlier[-1]
                x = self._draw(points[a], size, generator)
                located = [(self.push_forward(x, times[a], q), q) for q in query]
            chosen = torch.cat(
                [
                    self.velocity_field.route(x, self.model_time(q).expand(len(x)), hard=True)[0]
                    for x, q in located
                ]
            )
            counts.append(chosen.sum(dim=0))
        counts = torch.stack(counts)
        usage = counts / counts.sum(dim=1, keepdim=True)
        return {"predicted": counts.argmax(dim=1).cpu(), "usage": usage.cpu()}

    def _draw(self, x: Tensor, size: int, generator: torch.Generator) -> Tensor:
        rows = torch.randint(len(x), (size,), generator=generator)
        return torch.as_tensor(x)[rows].float().to(self.device)

    def _log_regimes(self, stage: str) -> None:
        trainer = self._trainer
        if trainer is None or trainer.sanity_checking:
            return
        datamodule = getattr(trainer, "datamodule", None)
        if not all(hasattr(datamodule, name) for name in ("marginals", "times", "pairs")):
            log.debug("no marginals data module: regimes are not scored")
            return
        result = self.regimes(datamodule)
        predicted, usage = result["predicted"], result["usage"]
        for k, row in enumerate(usage):
            for m, value in enumerate(row):
                self.log(f"{stage}/usage_seg{k}_expert{m}", float(value), batch_size=1)
        truth = getattr(datamodule, "segment_labels", None)
        if truth is not None:
            truth = torch.as_tensor(truth).flatten()
            if len(truth) != len(predicted):
                raise ValueError(
                    f"segment_labels has {len(truth)} entries but the data have "
                    f"{len(predicted)} segments"
                )
            for name, value in segment_scores(predicted, truth).items():
                self.log(f"{stage}/{name}", value, batch_size=1)
        self._log_regime_table(stage, predicted, usage, truth)
        if stage == "test" and trainer.is_global_zero:
            from callbacks.figures import log_figure

            times = torch.as_tensor(datamodule.times).flatten().tolist()
            log_figure(trainer, plot_router_usage(usage, times, truth), "router_usage")

    def _log_regime_table(
        self, stage: str, predicted: Tensor, usage: Tensor, truth: Tensor | None
    ) -> None:
        from lightning.pytorch.loggers import WandbLogger

        loggers = [lg for lg in self.trainer.loggers if isinstance(lg, WandbLogger)]
        if not loggers:
            return
        times = torch.as_tensor(self.trainer.datamodule.times).flatten().tolist()
        columns = ["segment", "t_start", "t_end", "predicted", "true"]
        columns += [f"usage_expert{m}" for m in range(usage.shape[1])]
        rows = [
            [k, times[k], times[k + 1], int(predicted[k]), None if truth is None else int(truth[k])]
            + [float(u) for u in usage[k]]
            for k in range(len(predicted))
        ]
        for logger in loggers:
            logger.log_table(f"{stage}/regimes", columns=columns, data=rows)

    def on_validation_epoch_end(self) -> None:
        self._log_regimes("val")

    def on_test_epoch_end(self) -> None:
        self._log_regimes("test")


def plot_router_usage(usage: Tensor, times: list[float], truth: Tensor | None = None) -> Any:
    """Stacked bars of the fraction of routed points per expert in each segment.

    Args:
        usage: ``(K-1, M)`` fractions, as :meth:`FLUXModule.regimes` returns them.
        times: The ``K`` time stamps; segments are labelled ``t_k-t_{k+1}``.
        truth: Ground-truth regime per segment, drawn as a marker row above the bars.

    Returns:
        A matplotlib figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    usage = torch.as_tensor(usage, dtype=torch.float32)
    segments, experts = usage.shape
    labels = [f"{times[k]:g}-{times[k + 1]:g}" for k in range(segments)]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * segments + 1.5), 3.0))
    bottom = torch.zeros(segments)
    for m in range(experts):
        ax.bar(labels, usage[:, m].tolist(), bottom=bottom.tolist(), label=f"expert {m}")
        bottom += usage[:, m]
    if truth is not None:
        for k, regime in enumerate(torch.as_tensor(truth).flatten().tolist()):
            ax.annotate(f"r{regime}", (k, 1.02), ha="center", va="bottom", fontsize=8)
    ax.set(ylim=(0, 1.12), ylabel="fraction of routed points", xlabel="segment")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=8, loc="lower right")
    return fig
