"""Conditional flow matching baselines for FLUX, built on torchcfm.

I-CFM and OT-CFM from "Improving and Generalizing Flow-Based Generative Models with
Minibatch Optimal Transport" (Tong et al., TMLR 2024): straight conditional paths between
independent (I-CFM) or minibatch-OT-coupled (OT-CFM) endpoints, here chained across
adjacent marginals with FLUX's global time, regressed by one MLP velocity field. They
share :class:`~zoo.flux.module.MarginalFlowModule` with FLUX, so they are integrated and
scored by the same code.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

import torch
from torch import Tensor
from torchcfm.conditional_flow_matching import (
    ConditionalFlowMatcher,
    ExactOptimalTransportConditionalFlowMatcher,
)

from zoo.flux.experts import TimeMLP
from zoo.flux.module import BATCH_KEYS, MarginalFlowModule, ODEMethod
from zoo.registry import register_model

log = logging.getLogger(__name__)

MATCHERS = ("independent", "exact_ot")


class ConditionalFlowMatching(MarginalFlowModule):
    """Flow matching along straight conditional paths of torchcfm's matchers.

    For each adjacent training pair ``(a, b)`` of a batch, torchcfm's matcher draws
    ``x_s ~ N((1 - s) x0 + s x1, sigma^2)`` and ``u = x1 - x0`` at ``s ~ U(0, 1)`` (after
    re-pairing the samples by an exact minibatch OT plan for ``exact_ot``); the global
    time is ``t = t_a + s (t_b - t_a)`` and the tangent in it ``u / (t_b - t_a)``. The
    velocity ``v(x, t)`` is an MLP of the size of one FLUX expert, trained on ``E ||v(x_t,
    t) - u_t||^2``.

    Args:
        dim: Dimension ``D`` of the data.
        matcher: ``independent`` (I-CFM, ``ConditionalFlowMatcher``) or ``exact_ot``
            (OT-CFM, ``ExactOptimalTransportConditionalFlowMatcher``).
        sigma: Standard deviation of the conditional paths.
        hidden_dim: Width of the MLP's hidden layers.
        num_layers: Hidden layers of the MLP.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        ode_method, ode_steps, mmd_bandwidths, max_eval_points: See
            :class:`~zoo.flux.module.MarginalFlowModule`.
    """

    def __init__(
        self,
        dim: int,
        matcher: Literal["independent", "exact_ot"] = "exact_ot",
        sigma: float = 0.0,
        hidden_dim: int = 64,
        num_layers: int = 3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        ode_method: ODEMethod = "euler",
        ode_steps: int = 100,
        mmd_bandwidths: list[float] | None = None,
        max_eval_points: int = 2000,
    ) -> None:
        super().__init__(dim, ode_method, ode_steps, mmd_bandwidths, max_eval_points)
        self.save_hyperparameters(logger=False)
        if matcher not in MATCHERS:
            raise ValueError(f"unknown matcher {matcher!r}; expected one of {MATCHERS}")
        if not (sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a non-negative number, got {sigma}")
        if not (lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr}")
        if not (weight_decay >= 0 and math.isfinite(weight_decay)):
            raise ValueError(f"weight_decay must be a non-negative number, got {weight_decay}")
        matcher_class = (
            ExactOptimalTransportConditionalFlowMatcher
            if matcher == "exact_ot"
            else ConditionalFlowMatcher
        )
        self.matcher = matcher_class(sigma=sigma)
        self.net = TimeMLP(dim, hidden_dim, num_layers)

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        self._check_batch(batch, BATCH_KEYS, "train")
        x0, x1 = batch["x0"].float(), batch["x1"].float()
        if x0.ndim == 2:
            x0, x1 = x0[None], x1[None]
        t0 = self.model_time(batch["t0"]).reshape(-1).to(x0)
        t1 = self.model_time(batch["t1"]).reshape(-1).to(x0)
        points, times, tangents = [], [], []
        for p in range(len(x0)):
            s = torch.rand(x0.shape[1], device=x0.device)
            s, x_t, u_s = self.matcher.sample_location_and_conditional_flow(x0[p], x1[p], t=s)
            span = t1[p] - t0[p]
            points.append(x_t)
            times.append(t0[p] + s * span)
            tangents.append(u_s / span)
        x_t, t, u_t = torch.cat(points), torch.cat(times), torch.cat(tangents)
        loss = (self.net(x_t, t) - u_t).square().sum(dim=-1).mean()
        self.log("train/fm_loss", loss, prog_bar=True, batch_size=len(x_t))
        self.log("train/loss", loss, batch_size=len(x_t))
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )


@register_model("icfm")
def icfm(**kwargs: Any) -> ConditionalFlowMatching:
    """I-CFM: :class:`ConditionalFlowMatching` with independent endpoints."""
    return ConditionalFlowMatching(matcher="independent", **kwargs)


@register_model("otcfm")
def otcfm(**kwargs: Any) -> ConditionalFlowMatching:
    """OT-CFM: :class:`ConditionalFlowMatching` with minibatch exact-OT endpoints."""
    return ConditionalFlowMatching(matcher="exact_ot", **kwargs)
