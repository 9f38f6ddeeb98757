"""Callbacks that compute and draw frequency and adversarial analyses."""

from callbacks.adversarial import AdversarialRobustnessCallback
from callbacks.spectra import FrequencySpectrumCallback
from callbacks.stopping import MaskStoppingRule

__all__ = ["AdversarialRobustnessCallback", "FrequencySpectrumCallback", "MaskStoppingRule"]
