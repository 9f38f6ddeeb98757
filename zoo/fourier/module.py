"""MaskedFourierClassifier: a Fourier mask learned in front of a frozen classifier.

From "Understanding robustness and generalization of artificial neural networks through
Fourier masks" (Karantzas et al., 2022).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from zoo.fourier.mask import FourierMask
from zoo.hub import describe_model, load_model
from zoo.optim import one_cycle
from zoo.registry import register_model
from zoo.spectral import (
    angular_band_energy,
    effective_filter,
    radial_band_energy,
    radial_centroid,
)

log = logging.getLogger(__name__)


@register_model("masked_fourier_classifier")
class MaskedFourierClassifier(L.LightningModule):
    """Learns a Fourier mask ``M`` that keeps a frozen classifier's outputs invariant.

    The loss (Karantzas et al., 2022) is

        dCE = CE(f(M x), y) - CE(f(x), y),    loss = exp(dCE^2) + lam * ||M||_1 / numel(M),

    averaged over the images of a batch for a data-set mask and summed over them for
    per-image masks (so that each image's mask follows its own gradient). ``y`` is the
    label, or the classifier's own prediction with ``target: prediction``. ``M`` is
    clamped to [0, 1] after every step.

    Args:
        classifier: The frozen network: a pretrained name, a ``.ckpt`` or ``.safetensors``
            path, a URL or a class path (see :func:`zoo.hub.load_model`).
        image_size: ``(H, W)`` of the images.
        num_classes: Classes of the classifier's logits.
        per_channel: One mask per image channel instead of one shared by all channels.
        in_channels: Image channels (needed with ``per_channel``).
        per_image: One mask per training image, all fitted together; the data module must
            yield indices (``return_index: true``) and one batch must hold every image.
        num_images: Number of training images, with ``per_image``.
        lam: Weight of the mask's L1 fraction (the paper's ``mask_decay``).
        lr: Adam learning rate of the mask.
        target: ``label`` (the data-set masks of the paper) or ``prediction`` (its
            single-image masks).
        num_bands: Radial and angular bands of the logged energy profiles.
        schedule: ``onecycle`` (the paper's: warm up to ``lr`` over the first 10 % of the
            steps, then anneal) or ``constant``.
    """

    def __init__(
        self,
        classifier: str | dict[str, Any] = "small_cnn_mnist.digits",
        image_size: tuple[int, int] = (28, 28),
        num_classes: int = 10,
        per_channel: bool = False,
        in_channels: int = 1,
        per_image: bool = False,
        num_images: int | None = None,
        lam: float = 0.2,
        lr: float = 1e-2,
        target: Literal["label", "prediction"] = "label",
        num_bands: int = 16,
        schedule: Literal["onecycle", "constant"] = "onecycle",
    ) -> None:
        super().__init__()
        if per_image and not num_images:
            raise ValueError("per_image: true needs num_images, the number of training images")
        if target not in ("label", "prediction"):
            raise ValueError(f"target must be 'label' or 'prediction', got {target!r}")
        if schedule not in ("onecycle", "constant"):
            raise ValueError(f"schedule must be 'onecycle' or 'constant', got {schedule!r}")
        if lam < 0:
            raise ValueError(f"lam must be non-negative, got {lam}")
        self.save_hyperparameters(logger=False)
        self.classifier = load_model(classifier)
        described = describe_model(self.classifier)
        if described is not None:
            # the checkpoint rebuilds the classifier from its config; its weights are in the
            # state dict, so the original file is no longer needed
            self.hparams["classifier"] = described
        self.classifier.requires_grad_(False)
        self.classifier.eval()
        self.mask = FourierMask(
            tuple(image_size),
            channels=in_channels if per_channel else 1,
            num_masks=num_images if per_image else 1,
        )
        self.metrics = nn.ModuleDict(
            {
                f"{stage}_{kind}": MulticlassAccuracy(num_classes, average="micro")
                for stage in ("train", "val", "test")
                for kind in ("clean", "masked")
            }
        )

    def train(self, mode: bool = True) -> MaskedFourierClassifier:
        super().train(mode)
        self.classifier.eval()  # frozen: batch norm statistics never move
        return self

    def forward(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        """Logits of the classifier on the masked images."""
        return self.classifier(self.mask(x, index))

    @staticmethod
    def _unpack(batch: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        if len(batch) == 3:
            return batch[0], batch[1], batch[2]
        return batch[0], batch[1], None

    def _step(self, batch: Sequence[Tensor], stage: str) -> Tensor:
        x, y, index = self._unpack(batch)
        with torch.no_grad():
            reference = self.classifier(x)
        masked = self(x, index)
        target = y if self.hparams.target == "label" else reference.argmax(dim=-1)
        dce = F.cross_entropy(masked, target, reduction="none") - F.cross_entropy(
            reference, target, reduction="none"
        )
        invariance = torch.exp(dce.square())
        if self.hparams.per_image:
            sparsity = self.mask.select(index, len(x)).abs().flatten(1).mean(dim=1)
            loss = (invariance + self.hparams.lam * sparsity).sum()
        else:
            loss = invariance.mean() + self.hparams.lam * self.mask.l1_fraction()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"mask loss is {loss.item()} at step {self.global_step}: exp(dCE^2) overflowed "
                f"(largest dCE {dce.abs().max().item():.1f}); lower lr (now {self.hparams.lr})"
            )
        self.metrics[f"{stage}_clean"](reference, y)
        self.metrics[f"{stage}_masked"](masked, y)
        training = stage == "train"
        self.log(f"{stage}/loss", loss, prog_bar=training, sync_dist=not training)
        self.log(f"{stage}/dce_squared", dce.square().mean(), sync_dist=not training)
        for kind in ("clean", "masked"):
            self.log(
                f"{stage}/{kind}_acc",
                self.metrics[f"{stage}_{kind}"],
                on_step=False,
                on_epoch=True,
                prog_bar=kind == "masked",
            )
        self.log(f"{stage}/mask_l1", self.mask.l1_fraction(), prog_bar=True, sync_dist=not training)
        return loss

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def on_train_start(self) -> None:
        if self.hparams.per_image and self.trainer.num_training_batches != 1:
            raise ValueError(
                f"per_image masks need every training image in one batch (got "
                f"{self.trainer.num_training_batches} batches): otherwise Adam's momentum "
                "keeps moving the masks of images absent from a batch. Set data.batch_size "
                f">= num_images={self.hparams.num_images}."
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        self.mask.clamp_()

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        if not self._skip_held_out("validation"):
            self._step(batch, "val")

    def test_step(self, batch: Sequence[Tensor], batch_idx: int) -> None:
        if not self._skip_held_out("test"):
            self._step(batch, "test")

    def _skip_held_out(self, stage: str) -> bool:
        """Per-image masks belong to their training images: other splits have no mask."""
        if self.hparams.per_image and not getattr(self, "_warned_held_out", False):
            rank_zero_warn(
                f"per-image masks are scored on their own images (train/ metrics); the {stage} "
                "split has no masks and is skipped (set trainer.limit_val_batches: 0)"
            )
            self._warned_held_out = True
        return self.hparams.per_image

    def predict_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        x, _, index = self._unpack(batch)
        return self(x, index).softmax(dim=-1)

    def band_energies(self) -> dict[str, Tensor]:
        """Radial and angular energies of the effective (symmetrised) mask, per band.

        Returns:
            ``{"radial": (num_masks, C, n), "angular": (num_masks, C, n)}``.
        """
        mask = effective_filter(self.mask.weight.detach())
        bands = self.hparams.num_bands
        return {
            "radial": radial_band_energy(mask, bands),
            "angular": angular_band_energy(mask, bands),
        }

    def on_validation_epoch_end(self) -> None:
        radial = self.band_energies()["radial"].mean(dim=(0, 1))
        self.log("val/mask_radial_centroid", radial_centroid(radial), sync_dist=True)

    def configure_callbacks(self) -> list[L.Callback]:
        """Draw the mask's figures in every run, unless the trainer already does."""
        from callbacks.spectra import FrequencySpectrumCallback

        present = self._trainer is not None and any(
            isinstance(cb, FrequencySpectrumCallback) for cb in self.trainer.callbacks
        )
        return [] if present else [FrequencySpectrumCallback()]

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.mask.parameters(), lr=self.hparams.lr)
        if self.hparams.schedule == "constant":
            return optimizer
        return one_cycle(optimizer, self, self.hparams.lr)
