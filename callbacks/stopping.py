"""MaskStoppingRule: the stopping rule of the Fourier-mask paper."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn

log = logging.getLogger(__name__)


class MaskStoppingRule(L.Callback):
    """Stops a mask fit once it is accurate enough and its sparsity has settled.

    After each epoch the counter grows when masked accuracy is at least ``accuracy_ratio``
    times the clean accuracy and the relative change of the mask's L1 fraction is at most
    ``tolerance``; any other epoch resets it, as does an epoch in which the learning rate
    rose (a warm-up, when a small rate makes the mask look settled). The fit stops when the
    counter reaches ``patience``. Karantzas et al. (2022) use 0.99, 1e-5 and 7.

    Args:
        accuracy_ratio: Minimum masked / clean accuracy.
        tolerance: Maximum relative change of the L1 fraction between epochs.
        patience: Epochs in a row that must meet both conditions.
        stage: Metric prefix to read, ``val`` for data-set masks, ``train`` for per-image masks.
    """

    def __init__(
        self,
        accuracy_ratio: float = 0.99,
        tolerance: float = 1e-5,
        patience: int = 7,
        stage: str = "val",
    ) -> None:
        super().__init__()
        if not 0.0 < accuracy_ratio <= 1.0:
            raise ValueError(f"accuracy_ratio must lie in (0, 1], got {accuracy_ratio}")
        if patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience}")
        self.accuracy_ratio = accuracy_ratio
        self.tolerance = tolerance
        self.patience = patience
        self.stage = stage
        self.counter = 0
        self.previous_l1: float | None = None
        self.previous_lr: float | None = None
        self.stopped_epoch: int | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        keys = [f"{self.stage}/{k}" for k in ("clean_acc", "masked_acc", "mask_l1")]
        if any(k not in metrics for k in keys):
            rank_zero_warn(f"MaskStoppingRule: metrics {keys} not logged; rule not applied")
            return
        clean, masked, l1 = (float(metrics[k]) for k in keys)
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        warming_up = None not in (lr, self.previous_lr) and lr > self.previous_lr
        accurate = masked >= self.accuracy_ratio * clean
        settled = self.previous_l1 is not None and (
            abs(l1 - self.previous_l1) / max(self.previous_l1, 1e-12) <= self.tolerance
        )
        self.counter = self.counter + 1 if accurate and settled and not warming_up else 0
        self.previous_l1, self.previous_lr = l1, lr
        stop = trainer.strategy.reduce_boolean_decision(self.counter >= self.patience, all=True)
        if stop:
            trainer.should_stop = True
            self.stopped_epoch = trainer.current_epoch
            log.info(
                "mask stopping rule met at epoch %d: masked/clean accuracy %.4f, L1 fraction %.4f",
                trainer.current_epoch,
                masked / max(clean, 1e-12),
                l1,
            )

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stopped_epoch is None:
            rank_zero_warn(
                f"the mask stopping rule was not met within {trainer.current_epoch} epochs; "
                "the mask may not have settled (raise max_epochs or tolerance)"
            )

    def state_dict(self) -> dict:
        return {
            "counter": self.counter,
            "previous_l1": self.previous_l1,
            "previous_lr": self.previous_lr,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.counter = state_dict["counter"]
        self.previous_l1 = state_dict["previous_l1"]
        self.previous_lr = state_dict.get("previous_lr")
