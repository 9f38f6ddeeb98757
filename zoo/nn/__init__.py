"""Shared building blocks: backbones and configurable modules."""

from zoo.nn.backbones import MLP, SmallCNN, TimmBackbone, count_parameters
from zoo.nn.config import ConfigurableModule, build_module, import_class, module_config

__all__ = [
    "MLP",
    "ConfigurableModule",
    "SmallCNN",
    "TimmBackbone",
    "build_module",
    "count_parameters",
    "import_class",
    "module_config",
]
