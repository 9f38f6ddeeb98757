"""Callbacks that compute and draw frequency and adversarial analyses, and keep resumes exact."""

from callbacks.adversarial import AdversarialRobustnessCallback
from callbacks.random_state import RandomStateCheckpoint
from callbacks.spectra import FrequencySpectrumCallback
from callbacks.stopping import MaskStoppingRule

__all__ = [
    "AdversarialRobustnessCallback",
    "FrequencySpectrumCallback",
    "MaskStoppingRule",
    "RandomStateCheckpoint",
]
