"""ImageClassifier: a backbone, a linear head and input normalisation, trained by cross-entropy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from zoo.attacks import pgd
from zoo.classifiers.augment import random_affine
from zoo.nn.config import build_module, save_module_hyperparameters
from zoo.optim import one_cycle
from zoo.registry import register_model

log = logging.getLogger(__name__)


def _stats_buffer(values: Sequence[float] | None, channels: int, default: float) -> Tensor:
    values = [default] * channels if values is None else list(values)
    if len(values) not in (1, channels):
        raise ValueError(f"expected 1 or {channels} normalisation values, got {values}")
    if len(values) == 1:
        values = values * channels
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


@register_model("image_classifier")
class ImageClassifier(L.LightningModule):
    """Image classifier ``logits = head(backbone((x - mean) / std))`` on pixel inputs in [0, 1].

    The model normalises its own input, so that attacks, masks and figures all work in
    pixel units.

    Args:
        backbone: Feature extractor with a ``num_features`` attribute (see ``zoo.nn``), or
            its ``{"class_path": ..., "init_args": ...}`` description.
        num_classes: Number of output logits.
        in_channels: Image channels, for the normalisation statistics.
        mean: Per-channel mean used to normalise pixels (one value or one per channel).
        std: Per-channel standard deviation used to normalise pixels.
        lr: Peak learning rate of AdamW under a one-cycle schedule.
        weight_decay: AdamW weight decay.
        adversarial_eps: PGD adversarial training radius in pixel units (0 trains on clean
            images); the attack runs with the model in eval mode.
        adversarial_steps: PGD steps per batch.
        adversarial_step_size: PGD step in pixel units; default ``eps / 8`` as in
            Karantzas et al. (2022).
        adversarial_norm: ``linf`` or ``l2``.
        augment_scale: Range of random zoom, e.g. ``[0.5, 1.5]``.
        augment_translate: Largest random shift as a fraction of the image, e.g. ``[0.4, 0.4]``.
        augment_degrees: Largest random rotation in degrees, e.g. ``180``.
        noise_std: Standard deviation of Gaussian pixel noise added to training images.

    Shapes:
        x: ``(B, in_channels, H, W)`` in [0, 1]; output: ``(B, num_classes)`` logits.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int = 10,
        in_channels: int = 1,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        adversarial_eps: float = 0.0,
        adversarial_steps: int = 10,
        adversarial_step_size: float | None = None,
        adversarial_norm: Literal["linf", "l2"] = "linf",
        augment_scale: tuple[float, float] | None = None,
        augment_translate: tuple[float, float] | None = None,
        augment_degrees: float | None = None,
        noise_std: float = 0.0,
    ) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if adversarial_eps < 0 or noise_std < 0:
            raise ValueError(
                f"adversarial_eps and noise_std must be non-negative, got {adversarial_eps} "
                f"and {noise_std}"
            )
        save_module_hyperparameters(self, ("backbone",))
        self.backbone = build_module(backbone)
        if not hasattr(self.backbone, "num_features"):
            raise TypeError(
                f"backbone {type(self.backbone).__name__} has no `num_features` attribute; "
                "use a backbone from zoo.nn or set num_features to its output width"
            )
        self.head = nn.Linear(self.backbone.num_features, num_classes)
        self.register_buffer("mean", _stats_buffer(mean, in_channels, 0.0))
        self.register_buffer("std", _stats_buffer(std, in_channels, 1.0))
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro")
                for stage in ("train", "val", "test")
            }
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"expected images (B, {self.mean.shape[1]}, H, W), got {tuple(x.shape)}"
            )
        return self.head(self.backbone((x - self.mean) / self.std))

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        expected = getattr(datamodule, "num_classes", None)
        if expected is not None and expected != self.hparams.num_classes:
            raise ValueError(
                f"model.num_classes={self.hparams.num_classes} but the data module "
                f"{type(datamodule).__name__} has {expected} classes"
            )

    def training_inputs(self, x: Tensor, y: Tensor) -> Tensor:
        """The augmented and/or adversarial images a training step sees."""
        hp = self.hparams
        if hp.augment_scale or hp.augment_translate or hp.augment_degrees:
            x = random_affine(x, hp.augment_scale, hp.augment_translate, hp.augment_degrees)
        if hp.noise_std > 0:
            x = (x + hp.noise_std * torch.randn_like(x)).clamp(0, 1)
        if hp.adversarial_eps > 0:
            step = hp.adversarial_step_size or hp.adversarial_eps / 8
            x = pgd(
                self,
                x,
                y,
                eps=hp.adversarial_eps,
                step_size=step,
                steps=hp.adversarial_steps,
                norm=hp.adversarial_norm,
            )
        return x

    def _step(self, batch: Sequence[Tensor], stage: str) -> Tensor:
        x, y = batch[0], batch[1]
        if stage == "train":
            x = self.training_inputs(x, y)
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric = self.metrics[f"{stage}_acc"]
        metric(logits, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", sync_dist=stage != "train")
        self.log(f"{stage}/acc", metric, prog_bar=True)
        return loss

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self(batch[0]).softmax(dim=-1)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        return one_cycle(optimizer, self, self.hparams.lr)
