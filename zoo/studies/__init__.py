"""Studies: several runs trained from one config and summarised in one table (``zoo study``)."""

from zoo.studies.base import Stage, Study, load_study, run_stage
from zoo.studies.comparison import ModelComparisonStudy
from zoo.studies.robustness import FourierMaskKindsStudy, FrequencyBiasStudy

__all__ = [
    "FourierMaskKindsStudy",
    "FrequencyBiasStudy",
    "ModelComparisonStudy",
    "Stage",
    "Study",
    "load_study",
    "run_stage",
]
