"""AdversarialRobustnessCallback: robust accuracy over an eps grid and the spectra of attacks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from callbacks.figures import log_figure, wandb_logger
from zoo.attacks import pgd
from zoo.spectral import high_frequency_fraction, radial_profile

log = logging.getLogger(__name__)


def spectral_sums(x: Tensor, radius: float, num_bins: int) -> dict[str, Tensor]:
    """Per-batch sums of the statistics the callback averages over a data set.

    Returns:
        ``profile`` (num_bins,): summed radial power profiles (channels averaged);
        ``hf_fraction`` (): summed high-frequency energy fractions above ``radius``;
        ``log_magnitude`` (H, W): summed fftshifted ``log(1 + |fft2|)``, channels averaged;
        ``l2_norm`` (): summed L2 norms of the images (all channels);
        ``count`` (): number of images.
    """
    images = x.flatten(0, -3) if x.ndim > 3 else x  # (N * C, H, W)
    per_image = len(x)
    channels = images.shape[0] // per_image
    magnitude = torch.fft.fftshift(torch.fft.fft2(images).abs(), dim=(-2, -1))
    return {
        "profile": radial_profile(images, num_bins).sum(0) / channels,
        "hf_fraction": high_frequency_fraction(images, radius).sum() / channels,
        "log_magnitude": torch.log1p(magnitude).sum(0) / channels,
        "l2_norm": x.flatten(1).norm(dim=1).sum(),
        "count": torch.tensor(float(per_image), device=x.device),
    }


class AdversarialRobustnessCallback(L.Callback):
    """Attacks the model at the end of validation or testing and reports robustness.

    For every ``eps`` in the grid: PGD robust accuracy (``eps = 0`` is clean accuracy).
    For the perturbations at the largest ``eps`` and for the input-gradient saliency of
    the clean images: the mean radial power profile, the mean fraction of energy above
    ``radius`` (Nyquist units) and the mean log-magnitude spectrum. Sums are reduced
    across processes, so the numbers are those of the whole data set under DDP.

    Args:
        eps: Radii in pixel units.
        norm: ``linf`` or ``l2``.
        steps: PGD steps.
        step_size: PGD step in pixel units; default ``2.5 * eps / steps``.
        radius: Radius above which energy counts as high frequency.
        num_bins: Rings of the radial profile; default ``min(H, W) // 2``.
        max_batches: Attack at most this many batches per epoch and process (``None``: all);
            under DDP each rank attacks its own first ``max_batches`` batches.
        stage: ``val`` or ``test``.
        every_n_epochs: With ``stage: val``, attack every n-th validation epoch.
    """

    def __init__(
        self,
        eps: Sequence[float] = (0.0, 0.01, 0.02, 0.05, 0.1),
        norm: Literal["linf", "l2"] = "linf",
        steps: int = 10,
        step_size: float | None = None,
        radius: float = 0.5,
        num_bins: int | None = None,
        max_batches: int | None = 4,
        stage: Literal["val", "test"] = "test",
        every_n_epochs: int = 1,
    ) -> None:
        super().__init__()
        if not eps or any(e < 0 for e in eps):
            raise ValueError(f"eps must be a non-empty list of non-negative radii, got {eps}")
        if stage not in ("val", "test"):
            raise ValueError(f"stage must be 'val' or 'test', got {stage!r}")
        self.eps = sorted(float(e) for e in eps)
        self.norm, self.steps, self.step_size = norm, steps, step_size
        self.radius, self.num_bins, self.max_batches = radius, num_bins, max_batches
        self.stage, self.every_n_epochs = stage, every_n_epochs
        self.results: dict[str, Any] = {}
        self._sums: dict[str, Tensor] = {}

    def _active(self, trainer: L.Trainer) -> bool:
        if trainer.sanity_checking:
            return False
        return self.stage == "test" or (trainer.current_epoch + 1) % self.every_n_epochs == 0

    def _add(self, key: str, value: Tensor) -> None:
        self._sums[key] = self._sums.get(key, 0) + value.detach().double()

    def _on_batch_end(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if not self._active(trainer) or (self.max_batches and batch_idx >= self.max_batches):
            return
        with torch.inference_mode(False), torch.enable_grad():
            x, y = batch[0].clone(), batch[1].clone()
            num_bins = self.num_bins or min(x.shape[-2:]) // 2
            largest = None
            for eps in self.eps:
                adv = (
                    x
                    if eps == 0
                    else pgd(
                        pl_module,
                        x,
                        y,
                        eps,
                        self.step_size,
                        self.steps,
                        self.norm,
                        random_start=False,
                    )
                )
                with torch.no_grad():
                    correct = (pl_module(adv).argmax(-1) == y).sum()
                self._add(f"correct@{eps:g}", correct)
                largest = adv
            for key, value in spectral_sums(largest - x, self.radius, num_bins).items():
                self._add(f"perturbation/{key}", value)
            x_grad = x.detach().requires_grad_(True)
            loss = F.cross_entropy(pl_module(x_grad), y, reduction="sum")
            (saliency,) = torch.autograd.grad(loss, x_grad)
            for key, value in spectral_sums(saliency, self.radius, num_bins).items():
                self._add(f"saliency/{key}", value)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        if self.stage == "val":
            self._on_batch_end(trainer, pl_module, batch, batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        if self.stage == "test":
            self._on_batch_end(trainer, pl_module, batch, batch_idx)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == "val":
            self._report(trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.stage == "test":
            self._report(trainer, pl_module)

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._sums:
            return
        sums = {k: trainer.strategy.reduce(v, reduce_op="sum") for k, v in self._sums.items()}
        self._sums = {}
        count = sums["perturbation/count"]
        accuracy = {eps: float(sums[f"correct@{eps:g}"] / count) for eps in self.eps}
        results: dict[str, Any] = {"robust_accuracy": accuracy, "images": int(count)}
        for kind in ("perturbation", "saliency"):
            results[kind] = {
                "profile": (sums[f"{kind}/profile"] / count).float().cpu(),
                "hf_fraction": float(sums[f"{kind}/hf_fraction"] / count),
                "log_magnitude": (sums[f"{kind}/log_magnitude"] / count).float().cpu(),
                "l2_norm": float(sums[f"{kind}/l2_norm"] / count),
            }
        self.results = results
        for eps, value in accuracy.items():
            pl_module.log(f"{self.stage}/robust_acc@{eps:g}", value, rank_zero_only=True)
        for kind in ("perturbation", "saliency"):
            value = results[kind]["hf_fraction"]
            pl_module.log(f"{self.stage}/{kind}_hf_fraction", value, rank_zero_only=True)
        if trainer.is_global_zero:
            self._draw(trainer, results)

    def _draw(self, trainer: L.Trainer, results: dict[str, Any]) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        accuracy = results["robust_accuracy"]
        fig, ax = plt.subplots(figsize=(4, 3))
        ax.plot(list(accuracy), list(accuracy.values()), marker="o")
        ax.set(xlabel=f"eps ({self.norm}, pixel units)", ylabel="accuracy", ylim=(0, 1))
        log_figure(trainer, fig, "robust_accuracy")
        fig, axes = plt.subplots(1, 3, figsize=(11, 3))
        for kind in ("perturbation", "saliency"):
            profile = results[kind]["profile"]
            radii = (torch.arange(len(profile)) + 0.5) * 2**0.5 / len(profile)
            axes[0].semilogy(radii.numpy(), profile.numpy(), label=kind)
        axes[0].set(xlabel="radius (Nyquist units)", ylabel="mean power", title="radial power")
        axes[0].legend()
        for ax, kind in zip(axes[1:], ("perturbation", "saliency"), strict=True):
            image = ax.imshow(results[kind]["log_magnitude"].numpy(), cmap="magma")
            ax.set_title(f"{kind}: log(1 + |FFT|), DC centred")
            ax.axis("off")
            fig.colorbar(image, ax=ax, shrink=0.8)
        log_figure(trainer, fig, "attack_spectra")
        logger = wandb_logger(trainer)
        if logger is not None:
            rows = [[eps, acc] for eps, acc in accuracy.items()]
            logger.log_table(
                key=f"{self.stage}/robust_accuracy", columns=["eps", "accuracy"], data=rows
            )
