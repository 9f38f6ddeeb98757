"""FrequencySpectrumCallback: figures of a learned Fourier mask and what it does to images."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor

from callbacks.figures import log_figure, wandb_logger
from zoo.spectral import effective_filter

log = logging.getLogger(__name__)


class FrequencySpectrumCallback(L.Callback):
    """Plots the mask of a module with a ``mask`` (:class:`~zoo.fourier.FourierMask`).

    Figures, saved as PNG under ``<run>/figures`` and logged to W&B:

    - ``mask``: the fftshifted effective mask ``(M(k) + M(-k)) / 2`` (DC at the centre);
    - ``band_energy``: its radial and angular band energies;
    - ``masked_images``: original images above their masked versions.

    Args:
        every_n_epochs: Draw after every n-th validation epoch (and always at the end).
        num_images: Images in the original vs masked grid.
    """

    def __init__(self, every_n_epochs: int = 5, num_images: int = 8) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be positive, got {every_n_epochs}")
        self.every_n_epochs = every_n_epochs
        self.num_images = num_images
        self._images: Tensor | None = None
        self._index: Tensor | None = None

    def _remember(self, batch: Any) -> None:
        if self._images is None:
            self._images = batch[0][: self.num_images].detach().cpu()
            if len(batch) == 3:
                self._index = batch[2][: self.num_images].detach().cpu()

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        if getattr(pl_module.hparams, "per_image", False):
            self._remember(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not getattr(pl_module.hparams, "per_image", False):
            self._remember(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        self.draw(trainer, pl_module, suffix=f"_epoch{trainer.current_epoch:03d}")

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer, pl_module)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.draw(trainer, pl_module)

    @rank_zero_only
    def draw(self, trainer: L.Trainer, pl_module: L.LightningModule, suffix: str = "") -> None:
        """Draw every figure now."""
        if not hasattr(pl_module, "mask"):
            raise TypeError(
                f"FrequencySpectrumCallback needs a module with a `mask`, got "
                f"{type(pl_module).__name__}"
            )
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        mask = effective_filter(pl_module.mask.weight.detach().float().cpu())
        shown = torch.fft.fftshift(mask[:4, 0], dim=(-2, -1))
        fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3), squeeze=False)
        for i, ax in enumerate(axes[0]):
            image = ax.imshow(shown[i].numpy(), cmap="viridis", vmin=0, vmax=1)
            ax.set_title(f"mask {i}" if len(shown) > 1 else "effective mask (DC centred)")
            ax.axis("off")
        fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
        log_figure(trainer, fig, "mask", suffix)

        energies = {k: v.mean(dim=(0, 1)).cpu() for k, v in pl_module.band_energies().items()}
        fig, (ax_r, ax_a) = plt.subplots(1, 2, figsize=(9, 3.2))
        num_bands = len(energies["radial"])
        radius = (torch.arange(num_bands) + 0.5) * 2**0.5 / num_bands
        ax_r.plot(radius.numpy(), energies["radial"].numpy(), marker="o")
        ax_r.set(xlabel="radius (Nyquist units)", ylabel="band energy", title="radial")
        degrees = (torch.arange(num_bands) + 0.5) * 360 / num_bands
        ax_a.plot(degrees.numpy(), energies["angular"].numpy(), marker="o")
        ax_a.set(xlabel="angle (degrees)", ylabel="band energy", title="angular")
        log_figure(trainer, fig, "band_energy", suffix)
        self._log_tables(trainer, energies, radius, degrees)

        if self._images is not None:
            images = self._images.to(pl_module.device)
            index = self._index.to(pl_module.device) if self._index is not None else None
            with torch.no_grad():
                masked = pl_module.mask(images, index).clamp(0, 1).cpu()
            n = len(images)
            fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3), squeeze=False)
            for j in range(n):
                for row, batch in enumerate((self._images, masked)):
                    picture = batch[j].permute(1, 2, 0).squeeze(-1).numpy()
                    axes[row, j].imshow(picture, cmap="gray", vmin=0, vmax=1)
                    axes[row, j].axis("off")
            axes[0, 0].set_title("original", fontsize=8, loc="left")
            axes[1, 0].set_title("masked", fontsize=8, loc="left")
            log_figure(trainer, fig, "masked_images", suffix)

    @staticmethod
    def _log_tables(trainer: L.Trainer, energies: dict[str, Tensor], radius, degrees) -> None:
        logger = wandb_logger(trainer)
        if logger is None:
            return
        for kind, axis, name in (("radial", radius, "radius"), ("angular", degrees, "degrees")):
            rows = [[float(a), float(e)] for a, e in zip(axis, energies[kind], strict=True)]
            logger.log_table(key=f"spectra/{kind}_energy", columns=[name, "energy"], data=rows)
