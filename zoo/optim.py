"""Optimiser set-ups shared by the zoo's LightningModules."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch


def one_cycle(optimizer: torch.optim.Optimizer, module: L.LightningModule, lr: float) -> dict:
    """Lightning's optimiser dict with a one-cycle schedule over the whole fit, stepped per batch.

    The rate warms up to ``lr`` over the first 10 % of the steps, then anneals to zero.
    """
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=lr,
        total_steps=int(module.trainer.estimated_stepping_batches),
        pct_start=0.1,
    )
    config: dict[str, Any] = {"scheduler": scheduler, "interval": "step"}
    return {"optimizer": optimizer, "lr_scheduler": config}
