"""What the benchmarks share: a bare training Trainer, quiet logs and timing summaries."""

from __future__ import annotations

import logging
import statistics
from typing import Any

import lightning as L

Durations = list[tuple[float, float]]
"""(wall-clock, CPU) seconds of each timed call."""


def quiet_logs() -> None:
    """Keep Lightning's and the zoo's INFO lines out of a benchmark's table."""
    for name in ("lightning.pytorch", "lightning.fabric", "zoo", "datamodules"):
        logging.getLogger(name).setLevel(logging.WARNING)


def summarise(durations: Durations) -> dict[str, float]:
    """Median and fastest wall-clock seconds per call, and the median CPU seconds."""
    wall = [w for w, _ in durations]
    return {
        "wall_median": statistics.median(wall),
        "wall_min": min(wall),
        "cpu_median": statistics.median(c for _, c in durations),
    }


def bare_trainer(root: str, callbacks: list[L.Callback], **limits: Any) -> L.Trainer:
    """A one-device CPU trainer without validation, logger, checkpoints or progress bar.

    Args:
        root: Folder for anything the fit writes (a temporary one in the benchmarks).
        callbacks: The benchmark's timers.
        **limits: ``max_epochs`` or ``max_steps``.
    """
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        default_root_dir=root,
        **limits,
    )
