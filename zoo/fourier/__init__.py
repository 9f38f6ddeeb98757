"""Fourier masks over frozen classifiers."""

from zoo.fourier.mask import FourierMask
from zoo.fourier.module import MaskedFourierClassifier

__all__ = ["FourierMask", "MaskedFourierClassifier"]
