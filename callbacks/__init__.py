"""Callbacks that compute and draw frequency analyses."""

from callbacks.spectra import FrequencySpectrumCallback
from callbacks.stopping import MaskStoppingRule

__all__ = ["FrequencySpectrumCallback", "MaskStoppingRule"]
