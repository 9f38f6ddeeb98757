"""Saving figures as PNG files in the run folder and as W&B images."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger

log = logging.getLogger(__name__)


def figure_dir(trainer: L.Trainer) -> Path:
    """``<run folder>/figures``, created on first use."""
    path = Path(trainer.default_root_dir) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def wandb_logger(trainer: L.Trainer) -> WandbLogger | None:
    """The trainer's W&B logger, if it has one."""
    return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)


def log_figure(trainer: L.Trainer, figure, name: str, suffix: str = "") -> Path:
    """Write a matplotlib figure to ``figures/<name><suffix>.png`` and log it to W&B as ``name``."""
    import matplotlib.pyplot as plt

    path = figure_dir(trainer) / f"{name.replace('/', '_')}{suffix}.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    logger = wandb_logger(trainer)
    if logger is not None:
        logger.log_image(key=f"figures/{name}", images=[str(path)], step=trainer.global_step)
    log.debug("saved figure %s", path)
    return path
