"""Forecasting trajectories with neural integral equations (NIE and ANIE) and baselines.

From "Learning integral operators via neural integral equations" (Zappala et al., Nature
Machine Intelligence, 2024). Every model here sees the first ``context`` frames of a
trajectory and predicts all of it; the loss and the metrics cover the frames after the
context (``target: future``) or all frames (``target: all``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanSquaredError, Metric, PearsonCorrCoef, R2Score

from zoo.integral.operators import AttentionIntegral, MonteCarloIntegral
from zoo.integral.solver import IntegralSolver
from zoo.nn.config import build_module, save_module_hyperparameters
from zoo.optim import one_cycle
from zoo.registry import register_model

log = logging.getLogger(__name__)


class RelativeL2(Metric):
    """Mean over trajectories of ``||prediction - target||_2 / ||target||_2``."""

    full_state_update = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction: Tensor, target: Tensor) -> None:
        error = (prediction - target).flatten(1).norm(dim=1)
        scale = target.flatten(1).norm(dim=1).clamp_min(1e-12)
        self.total += (error / scale).double().sum()
        self.count += len(target)

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class SquaredPearson(PearsonCorrCoef):
    """Squared Pearson correlation of all values: what the NIE code reports as "R2"."""

    def compute(self) -> Tensor:
        return super().compute().square()


def _stage_metrics() -> nn.ModuleDict:
    return nn.ModuleDict(
        {
            "mse": MeanSquaredError(),
            "rel_l2": RelativeL2(),
            "r2": R2Score(),
            "pearson_r2": SquaredPearson(),
            "mse_hold_last": MeanSquaredError(),
        }
    )


class TrajectoryModule(L.LightningModule):
    """Base of the trajectory forecasters: normalisation, free function, loss and metrics.

    A batch is ``(y, t)``: trajectories ``(B, T, *state)`` at times ``(B, T)``. The
    model sees ``y`` only through the free function ``f``: the context frames, then the
    last context frame held (the "constant second half" of the NIE code). Subclasses
    implement :meth:`solve`, which maps ``f`` (normalised) and the normalised times to the
    normalised prediction.

    Metrics, per stage, on the target frames and in data units: ``mse``, ``rel_l2``
    (relative L2 per trajectory), ``r2`` (coefficient of determination), ``pearson_r2``
    (squared Pearson correlation, the NIE code's "R2") and ``mse_hold_last``, the MSE of
    holding the last context frame, the baseline to beat.

    Args:
        context: Frames the model is given.
        target: ``future`` (score the frames after the context) or ``all``.
        normalize: Standardise states with the training data's mean and standard deviation
            (per state dimension for vector states, one pair for fields) and divide times
            by the training data's time span.
        lr: Peak learning rate of AdamW under a one-cycle schedule.
        weight_decay: AdamW weight decay.
    """

    test_metrics: tuple[str, ...] = ("loss", *_stage_metrics().keys())
    """The names it logs as ``test/<name>`` (a study checks its table against them)."""

    def __init__(
        self,
        context: int = 1,
        target: Literal["future", "all"] = "future",
        normalize: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__()
        if context < 1:
            raise ValueError(f"context must be at least 1 frame, got {context}")
        if target not in ("future", "all"):
            raise ValueError(f"target must be 'future' or 'all', got {target!r}")
        self.context, self.target, self.normalize = context, target, normalize
        self.lr, self.weight_decay = lr, weight_decay
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.ones(()))
        self.register_buffer("time_scale", torch.ones(()))
        self.register_buffer("fitted_statistics", torch.zeros((), dtype=torch.bool))
        self.metrics = nn.ModuleDict({stage: _stage_metrics() for stage in ("val", "test")})
        self.register_load_state_dict_pre_hook(self._resize_statistics)

    def _resize_statistics(self, module, state_dict, prefix, *args) -> None:
        """Statistics fitted on data have the data's shape: take it from the checkpoint."""
        for name in ("mean", "std"):
            value = state_dict.get(prefix + name)
            if value is not None and value.shape != getattr(self, name).shape:
                setattr(self, name, torch.empty_like(value, device=getattr(self, name).device))

    # -- data ---------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if not self.normalize or bool(self.fitted_statistics):
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        splits = getattr(datamodule, "splits", None)
        if not splits or "train" not in splits:
            log.info("no training split to fit the normalisation on; states are left as they are")
            return
        y, t = splits["train"].tensors[:2]
        self.fit_statistics(y, t)

    def fit_statistics(self, y: Tensor, t: Tensor) -> None:
        """Set the normalisation from training trajectories ``y`` ``(N, T, *state)``."""
        if not torch.isfinite(y).all():
            raise ValueError("training trajectories contain NaN or infinite values")
        per_dimension = y.ndim == 3 and self.is_vector_state
        dims = (0, 1) if per_dimension else tuple(range(y.ndim))
        self.mean = y.mean(dim=dims).to(self.mean.device)
        self.std = y.std(dim=dims).clamp_min(1e-8).to(self.std.device)
        self.time_scale = (t.max() - t.min()).clamp_min(1e-8).to(self.time_scale.device)
        self.fitted_statistics = torch.ones((), dtype=torch.bool, device=self.mean.device)
        log.info("normalisation fitted on %d training trajectories", len(y))

    @property
    def is_vector_state(self) -> bool:
        """Whether states are vectors (one statistic per dimension) rather than fields."""
        return True

    def free_function(self, y: Tensor) -> Tensor:
        """The context frames, then the last of them held to the end."""
        if y.shape[1] <= self.context and self.target == "future":
            raise ValueError(
                f"trajectories of {y.shape[1]} frames leave nothing to predict after "
                f"context={self.context}"
            )
        held = y[:, self.context - 1 : self.context].expand(
            -1, y.shape[1] - self.context, *y.shape[2:]
        )
        return torch.cat([y[:, : self.context], held], dim=1)

    # -- model --------------------------------------------------------------------------

    def solve(self, f: Tensor, t: Tensor) -> Tensor:
        """Normalised prediction ``(B, T, *state)`` from the normalised free function."""
        raise NotImplementedError

    def forward(self, y: Tensor, t: Tensor) -> Tensor:
        """Predict whole trajectories from their first ``context`` frames (data units)."""
        if y.ndim < 3 or t.shape != y.shape[:2]:
            raise ValueError(
                f"expected trajectories (B, T, ...) and times (B, T), got {tuple(y.shape)} and "
                f"{tuple(t.shape)}"
            )
        if (t.diff(dim=1) <= 0).any():
            raise ValueError("time stamps must be strictly increasing along each trajectory")
        y_n = (y - self.mean) / self.std
        t_n = (t - t[:, :1]) / self.time_scale
        prediction = self.solve(self.free_function(y_n), t_n)
        return prediction * self.std + self.mean

    # -- steps --------------------------------------------------------------------------

    def _targets(self, x: Tensor) -> Tensor:
        return x[:, self.context :] if self.target == "future" else x

    def _update(self, metrics: nn.ModuleDict, prediction: Tensor, y: Tensor) -> None:
        """Feed one batch's target frames (and the hold-last baseline's) to ``metrics``."""
        pred, true = self._targets(prediction), self._targets(y)
        held = self._targets(self.free_function(y))
        for name in ("mse", "r2", "pearson_r2"):
            metrics[name].update(pred.flatten(), true.flatten())
        metrics["rel_l2"].update(pred, true)
        metrics["mse_hold_last"].update(held.flatten(), true.flatten())

    def _step(self, batch: Sequence[Tensor], stage: str) -> Tensor:
        y, t = batch[0], batch[1]
        if not torch.isfinite(y).all():
            raise ValueError(f"{stage} batch contains NaN or infinite values")
        prediction = self(y, t)
        scale = self.std
        loss = F.mse_loss(self._targets(prediction) / scale, self._targets(y) / scale)
        self.log(f"{stage}/loss", loss, prog_bar=True, sync_dist=stage != "train")
        if stage == "train":
            return loss
        metrics = self.metrics[stage]
        self._update(metrics, prediction, y)
        for name, metric in metrics.items():
            self.log(f"{stage}/{name}", metric, prog_bar=name == "mse")
        return loss

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self(batch[0], batch[1])

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Sequence[Tensor]], context: int | None = None) -> dict:
        """The test metrics on other data, e.g. the test split on a finer time grid.

        Args:
            batches: ``(y, t)`` batches, such as a data module's ``test_dataloader()``.
            context: Frames given to the model; by default its own ``context``. On a grid
                twice as fine, twice the training context covers the same time.

        Returns:
            ``{"mse": ..., "rel_l2": ..., "r2": ..., "pearson_r2": ..., "mse_hold_last": ...}``.
        """
        trained, was_training = self.context, self.training
        metrics = _stage_metrics().to(self.device)
        self.context = context or trained
        self.eval()
        try:
            for batch in batches:
                y, t = batch[0].to(self.device), batch[1].to(self.device)
                self._update(metrics, self(y, t), y)
        finally:
            self.context = trained
            self.train(was_training)
        return {name: float(metric.compute()) for name, metric in metrics.items()}

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return one_cycle(optimizer, self, self.lr)


class NeuralIntegralEquation(TrajectoryModule):
    """Solves ``z = f + I[z]`` for the trajectory's (encoded) states.

    ``f`` is the free function of the context frames (see :class:`TrajectoryModule`); ``I``
    is an :class:`~zoo.integral.operators.AttentionIntegral` (ANIE: tokens are time
    stamps, or time stamps x patches of a field, with their coordinates) or a
    :class:`~zoo.integral.operators.MonteCarloIntegral` (NIE: quadrature over time of the
    states, all patches of a time stamp concatenated); :class:`IntegralSolver` iterates.
    Fields are encoded to tokens first and decoded after.

    Args:
        integral: The operator ``I`` (a module or its config); ``None`` builds the class's
            ``default_integral`` for 1-D states.
        encoder: Field encoder to tokens (``zoo.integral.PatchEncoder1d`` / ``2d``);
            ``None`` for vector states, one token per time stamp.
        decoder: The encoder's inverse.
        alpha: Solver smoothing factor.
        iterations: Solver iterations.
        tol: Relative residual to stop at (0: fixed iterations).
        grad: ``all`` or ``last`` (see :class:`IntegralSolver`).
        context, target, normalize, lr, weight_decay: See :class:`TrajectoryModule`.

    Shapes:
        y: ``(B, T, D)``, ``(B, T, X)`` or ``(B, T, H, W)``; t: ``(B, T)``; output: as ``y``.
    """

    default_integral: type[nn.Module] = AttentionIntegral

    def __init__(
        self,
        integral: nn.Module | None = None,
        encoder: nn.Module | None = None,
        decoder: nn.Module | None = None,
        alpha: float = 0.5,
        iterations: int = 3,
        tol: float = 0.0,
        grad: Literal["all", "last"] = "all",
        context: int = 1,
        target: Literal["future", "all"] = "future",
        normalize: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
    ) -> None:
        super().__init__(context, target, normalize, lr, weight_decay)
        save_module_hyperparameters(self, ("integral", "encoder", "decoder"))
        if (encoder is None) != (decoder is None):
            raise ValueError("give both an encoder and a decoder, or neither")
        self.integral = (
            self.default_integral(state_dim=1) if integral is None else build_module(integral)
        )
        if not isinstance(self.integral, AttentionIntegral | MonteCarloIntegral):
            raise TypeError(
                f"integral must be an AttentionIntegral or a MonteCarloIntegral, got "
                f"{type(self.integral).__name__}"
            )
        if self.hparams.get("integral") is None:  # a subclass's default operator
            self.hparams["integral"] = self.integral.config
        self.encoder = None if encoder is None else build_module(encoder)
        self.decoder = None if decoder is None else build_module(decoder)
        self.solver = IntegralSolver(alpha, iterations, tol, grad)

    @property
    def is_vector_state(self) -> bool:
        return self.encoder is None

    def _tokens(self, f: Tensor) -> Tensor:
        if self.encoder is None:
            if f.ndim != 3:
                raise ValueError(
                    f"states of shape {tuple(f.shape[2:])} need an encoder and a decoder "
                    "(e.g. PatchEncoder2d / PatchDecoder2d)"
                )
            return f.unsqueeze(2)  # one token per time stamp
        return self.encoder(f)

    def solve(self, f: Tensor, t: Tensor) -> Tensor:
        z = self._tokens(f)  # (B, T, P, d)
        batch, steps, patches, dim = z.shape
        if isinstance(self.integral, MonteCarloIntegral):
            flat = z.reshape(batch, steps, patches * dim)
            solution = self.solver(flat, lambda x: self.integral(x, t))
        else:
            coords = [t[:, :, None, None].expand(-1, -1, patches, 1)]
            if self.encoder is not None:
                positions = self.encoder.positions.to(z)
                coords.append(positions[None, None].expand(batch, steps, -1, -1))
            coords = torch.cat(coords, dim=-1).reshape(batch, steps * patches, -1)
            time_index = torch.arange(steps, device=z.device).repeat_interleave(patches)
            flat = z.reshape(batch, steps * patches, dim)
            solution = self.solver(flat, lambda x: self.integral(x, coords, time_index))
        solution = solution.view(batch, steps, patches, dim)
        return solution.squeeze(2) if self.decoder is None else self.decoder(solution)


@register_model("anie")
class ANIE(NeuralIntegralEquation):
    """Attentional neural integral equation: self-attention is the integral operator.

    Same arguments as :class:`NeuralIntegralEquation`; ``integral`` defaults to an
    :class:`~zoo.integral.operators.AttentionIntegral` over 1-D states (set its
    ``state_dim`` and ``coord_dim`` for other data).
    """

    default_integral = AttentionIntegral


@register_model("nie")
class NIE(NeuralIntegralEquation):
    """Neural integral equation with a Monte-Carlo quadrature of a learned kernel.

    Same arguments as :class:`NeuralIntegralEquation`; ``integral`` defaults to a
    :class:`~zoo.integral.operators.MonteCarloIntegral` over 1-D states.
    """

    default_integral = MonteCarloIntegral
