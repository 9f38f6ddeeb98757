"""Shared building blocks: backbones and configurable modules."""

from zoo.nn.backbones import (
    MLP,
    CircularConvNet,
    LocalConvNet,
    LocallyConnectedNet,
    SmallCNN,
    TimmBackbone,
    count_parameters,
)
from zoo.nn.config import ConfigurableModule, build_module, import_class, module_config
from zoo.nn.layers import CircularConv2d, LocallyConnected2d, mlp

__all__ = [
    "MLP",
    "CircularConv2d",
    "CircularConvNet",
    "LocalConvNet",
    "LocallyConnected2d",
    "LocallyConnectedNet",
    "ConfigurableModule",
    "SmallCNN",
    "TimmBackbone",
    "build_module",
    "count_parameters",
    "import_class",
    "mlp",
    "module_config",
]
