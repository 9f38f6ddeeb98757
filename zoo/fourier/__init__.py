"""Fourier masks over frozen classifiers."""

from zoo.fourier.mask import FourierMask
from zoo.fourier.module import MaskedFourierClassifier, resolve_classifier

__all__ = ["FourierMask", "MaskedFourierClassifier", "resolve_classifier"]
