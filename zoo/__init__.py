"""zoo: a PyTorch Lightning model zoo: each method with its data, callbacks and configs."""

from zoo import classifiers, flux, fourier, integral  # noqa: F401  (registers the models)
from zoo.hub import list_pretrained, load_pretrained
from zoo.registry import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "create_model",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "register_model",
]
