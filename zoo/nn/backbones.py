"""Feature extractors that :class:`~zoo.classifiers.ImageClassifier` puts a head on.

Every backbone maps images ``(B, C, H, W)`` to features ``(B, num_features)``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor, nn

from zoo.nn.config import ConfigurableModule
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


@register_backbone("mlp")
class MLP(ConfigurableModule):
    """A fully connected network on flattened images.

    Args:
        in_features: Flattened input size (``C * H * W``).
        hidden_dim: Width of every hidden layer.
        num_layers: Number of hidden layers.

    Shapes:
        x: ``(B, ...)`` with ``in_features`` entries per sample; output: ``(B, hidden_dim)``.
    """

    def __init__(self, in_features: int = 784, hidden_dim: int = 256, num_layers: int = 1) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU(inplace=True)]
            width = hidden_dim
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        self.num_features = hidden_dim

    def forward(self, x: Tensor) -> Tensor:
        if x[0].numel() != self.in_features:
            raise ValueError(
                f"MLP expects {self.in_features} input features per sample, got "
                f"{x[0].numel()} from shape {tuple(x.shape)}; set in_features to C * H * W"
            )
        return self.net(x)


@register_backbone("timm")
class TimmBackbone(ConfigurableModule):
    """Any timm model by name, without its classifier head.

    Args:
        model_name: A name from ``timm.list_models()``.
        in_channels: Image channels.
        pretrained: Load timm's pretrained weights (downloads them; needs network access).
        checkpoint_path: Local weights file for the model instead of a download.
        img_size: Input size for models that need it (ViTs); ``None`` keeps timm's default.
    """

    def __init__(
        self,
        model_name: str,
        in_channels: int = 3,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        img_size: int | None = None,
    ) -> None:
        super().__init__()
        import timm

        if not timm.list_models(model_name):
            close = timm.list_models(f"*{model_name.split('_')[0]}*")[:5]
            raise ValueError(f"unknown timm model {model_name!r}; similar names: {close}")
        if checkpoint_path is not None and not Path(checkpoint_path).is_file():
            raise FileNotFoundError(f"timm checkpoint_path {checkpoint_path!r} does not exist")
        kwargs = {"img_size": img_size} if img_size is not None else {}
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


__all__ = ["MLP", "SmallCNN", "TimmBackbone", "count_parameters"]
