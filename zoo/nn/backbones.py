"""Feature extractors that :class:`~zoo.classifiers.ImageClassifier` puts a head on.

Every backbone maps images ``(B, C, H, W)`` to features ``(B, num_features)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from zoo.nn.config import ConfigurableModule
from zoo.nn.layers import CircularConv2d, LocallyConnected2d
from zoo.registry import register_backbone

log = logging.getLogger(__name__)


@register_backbone("small_cnn")
class SmallCNN(ConfigurableModule):
    """Stacked ``conv -> batch norm -> ReLU -> 2x2 max-pool`` blocks, then global average pool.

    Args:
        in_channels: Image channels.
        hidden_dim: Channels of the first block; each later block doubles them.
        num_layers: Number of blocks.
        kernel_size: Odd side of every convolution kernel ("same" padding).

    Shapes:
        x: ``(B, in_channels, H, W)``; output: ``(B, hidden_dim * 2 ** (num_layers - 1))``.
    """

    def __init__(
        self, in_channels: int = 1, hidden_dim: int = 16, num_layers: int = 2, kernel_size: int = 3
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(num_layers):
            out = hidden_dim * 2**i
            layers += [
                nn.Conv2d(channels, out, kernel_size, padding=kernel_size // 2, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = channels

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


def _activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "linear":
        return nn.Identity()
    raise ValueError(f"activation must be 'relu' or 'linear', got {name!r}")


def _scale_weights(module: nn.Module, init_scale: float) -> None:
    if init_scale <= 0:
        raise ValueError(f"init_scale must be positive, got {init_scale}")
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("weight"):
                parameter.mul_(init_scale)


@register_backbone("mlp")
class MLP(ConfigurableModule):
    """A fully connected network on flattened images.

    Args:
        in_features: Flattened input size (``C * H * W``).
        hidden_dim: Width of every hidden layer.
        num_layers: Number of hidden layers.
        activation: ``relu``, or ``linear`` for a deep linear network.
        init_scale: Factor applied to every initial weight.

    Shapes:
        x: ``(B, ...)`` with ``in_features`` entries per sample; output: ``(B, hidden_dim)``.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden_dim: int = 256,
        num_layers: int = 1,
        activation: str = "relu",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), _activation(activation)]
            width = hidden_dim
        self.net = nn.Sequential(*layers)
        _scale_weights(self.net, init_scale)
        self.in_features = in_features
        self.num_features = hidden_dim

    def forward(self, x: Tensor) -> Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"MLP expects {self.in_features} input features per sample, got "
                f"{x[0].numel()} from shape {tuple(x.shape)}; set in_features to C * H * W"
            )
        return self.net(x)


class _LayerStack(ConfigurableModule):
    """``num_layers`` spatial layers with an activation each; features are the flat maps."""

    def _build(
        self,
        make_layer,
        in_channels: int,
        image_size: tuple[int, int],
        hidden_dim: int,
        num_layers: int,
        activation: str,
        init_scale: float,
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(num_layers):
            layers += [make_layer(channels, hidden_dim), _activation(activation)]
            channels = hidden_dim
        self.net = nn.Sequential(*layers, nn.Flatten())
        _scale_weights(self.net, init_scale)
        self.image_size = tuple(image_size)
        self.num_features = hidden_dim * self.image_size[0] * self.image_size[1]

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(
                f"{type(self).__name__} was built for {self.image_size} images, got "
                f"{tuple(x.shape)}; set image_size"
            )
        return self.net(x)


@register_backbone("local_conv")
class LocalConvNet(_LayerStack):
    """Convolutions with a small ``kernel_size`` (circular padding keeps translation symmetry).

    Args:
        in_channels: Image channels.
        image_size: ``(H, W)`` of the images.
        hidden_dim: Channels of every layer.
        num_layers: Number of convolutions.
        kernel_size: Odd side of the kernels.
        activation: ``relu`` or ``linear``.
        init_scale: Factor applied to every initial weight.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        hidden_dim: int = 16,
        num_layers: int = 1,
        kernel_size: int = 3,
        activation: str = "relu",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")

        def conv(cin: int, cout: int) -> nn.Module:
            return nn.Conv2d(
                cin, cout, kernel_size, padding=kernel_size // 2, padding_mode="circular"
            )

        self._build(conv, in_channels, image_size, hidden_dim, num_layers, activation, init_scale)


@register_backbone("circular_conv")
class CircularConvNet(_LayerStack):
    """Full-width circular convolutions (image-sized kernels), computed by FFT.

    Args:
        in_channels: Image channels.
        image_size: ``(H, W)`` of the images and kernels.
        hidden_dim: Channels of every layer.
        num_layers: Number of convolutions.
        activation: ``relu`` or ``linear``.
        init_scale: Factor applied to every initial weight.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        hidden_dim: int = 16,
        num_layers: int = 1,
        activation: str = "relu",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()

        def conv(cin: int, cout: int) -> nn.Module:
            return CircularConv2d(cin, cout, tuple(image_size))

        self._build(conv, in_channels, image_size, hidden_dim, num_layers, activation, init_scale)


@register_backbone("locally_connected")
class LocallyConnectedNet(_LayerStack):
    """Locally connected layers: local receptive fields without weight sharing.

    Args:
        in_channels: Image channels.
        image_size: ``(H, W)`` of the images.
        hidden_dim: Channels of every layer.
        num_layers: Number of layers.
        kernel_size: Odd side of the receptive fields.
        activation: ``relu`` or ``linear``.
        init_scale: Factor applied to every initial weight.
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        hidden_dim: int = 8,
        num_layers: int = 1,
        kernel_size: int = 3,
        activation: str = "relu",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()

        def layer(cin: int, cout: int) -> nn.Module:
            return LocallyConnected2d(cin, cout, tuple(image_size), kernel_size)

        self._build(layer, in_channels, image_size, hidden_dim, num_layers, activation, init_scale)


@register_backbone("timm")
class TimmBackbone(ConfigurableModule):
    """Any timm model by name, without its classifier head.

    Args:
        model_name: A name from ``timm.list_models()``.
        in_channels: Image channels.
        pretrained: Load timm's pretrained weights (downloads them; needs network access).
        checkpoint_path: Local weights file for the model instead of a download.
        img_size: Input size for models that need it (ViTs); ``None`` keeps timm's default.
        model_kwargs: Further arguments of the timm model, e.g. ``{"patch_size": 4, "depth": 4}``
            for a small ViT on 28x28 images.
    """

    def __init__(
        self,
        model_name: str,
        in_channels: int = 3,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        img_size: int | None = None,
        model_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        import timm

        if not timm.list_models(model_name):
            close = timm.list_models(f"*{model_name.split('_')[0]}*")[:5]
            raise ValueError(f"unknown timm model {model_name!r}; similar names: {close}")
        if checkpoint_path is not None and not Path(checkpoint_path).is_file():
            raise FileNotFoundError(f"timm checkpoint_path {checkpoint_path!r} does not exist")
        kwargs = dict(model_kwargs or {})
        if img_size is not None:
            kwargs["img_size"] = img_size
        try:
            self.model = timm.create_model(
                model_name,
                pretrained=pretrained,
                num_classes=0,
                in_chans=in_channels,
                checkpoint_path=checkpoint_path or "",
                **kwargs,
            )
        except (OSError, RuntimeError) as err:
            if pretrained:
                raise ConnectionError(
                    f"could not fetch pretrained weights for timm model {model_name!r} ({err}). "
                    "Offline, set `pretrained: false` and pass `checkpoint_path:` to a local file."
                ) from err
            raise
        source = checkpoint_path or ("timm pretrained" if pretrained else "random init")
        log.info("timm backbone %s: weights from %s", model_name, source)
        self.num_features = self.model.num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters of a module."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "MLP",
    "CircularConvNet",
    "LocalConvNet",
    "LocallyConnectedNet",
    "SmallCNN",
    "TimmBackbone",
    "count_parameters",
]
