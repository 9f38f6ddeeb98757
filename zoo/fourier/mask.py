"""FourierMask: a learnable real mask over the unshifted 2-D spectrum of images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.spectral import apply_fourier_mask


class FourierMask(nn.Module):
    """Real mask ``M`` in ``[0, 1]`` applied as ``Re(ifft2(M * fft2(x)))``.

    The mask is stored in unshifted FFT order and initialised to ones (the identity).
    Call :meth:`clamp_` after every optimiser step to keep it in ``[0, 1]``.

    Args:
        image_size: ``(H, W)`` of the images.
        channels: 1 for one mask shared by all channels, else one mask per channel.
        num_masks: 1 for one mask per data set, N for one mask per image (selected by index).

    Shapes:
        x: ``(B, C, H, W)``; index: ``(B,)`` when ``num_masks > 1``; output: like ``x``.
    """

    def __init__(self, image_size: tuple[int, int], channels: int = 1, num_masks: int = 1) -> None:
        super().__init__()
        height, width = image_size
        if min(height, width, channels, num_masks) < 1:
            raise ValueError(
                f"image_size, channels and num_masks must be positive, got {image_size}, "
                f"{channels}, {num_masks}"
            )
        self.image_size = (height, width)
        self.weight = nn.Parameter(torch.ones(num_masks, channels, height, width))

    @property
    def num_masks(self) -> int:
        return self.weight.shape[0]

    def forward(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        if x.ndim != 4 or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(
                f"mask of size {self.image_size} cannot filter images of shape "
                f"{tuple(x.shape)}; expected (B, C, {self.image_size[0]}, {self.image_size[1]}). "
                "Set image_size to the data's image size."
            )
        channels = self.weight.shape[1]
        if channels not in (1, x.shape[1]):
            raise ValueError(f"mask has {channels} channels but the images have {x.shape[1]}")
        return apply_fourier_mask(x, self.select(index, len(x)))

    def select(self, index: Tensor | None, batch_size: int) -> Tensor:
        """The masks of a batch: the shared mask, or one per image by ``index``."""
        if self.num_masks == 1:
            return self.weight
        if index is None:
            raise ValueError("a per-image mask needs the images' indices (data return_index: true)")
        if int(index.max()) >= self.num_masks or len(index) != batch_size:
            raise ValueError(
                f"image indices must be < num_masks={self.num_masks}, one per image; got "
                f"max {int(index.max())} for {len(index)} indices and {batch_size} images"
            )
        return self.weight[index]

    @torch.no_grad()
    def clamp_(self) -> None:
        """Project the mask onto ``[0, 1]``."""
        self.weight.clamp_(0.0, 1.0)

    def l1_fraction(self) -> Tensor:
        """``||M||_1 / ||1||_1``: 1 at initialisation, 0 for a mask that removes everything."""
        return self.weight.abs().mean()

    def extra_repr(self) -> str:
        num_masks, channels, height, width = self.weight.shape
        return f"image_size=({height}, {width}), channels={channels}, num_masks={num_masks}"
