"""What the benchmarks share: a Lightning trainer that does nothing but train."""

from __future__ import annotations

from typing import Any

import lightning as L


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
