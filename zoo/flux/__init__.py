"""FLUX: geometry-aware longitudinal flow matching with a mixture of experts, and baselines."""

from zoo.flux.baselines import ConditionalFlowMatching, icfm, otcfm
from zoo.flux.coupling import ot_coupling, ot_plan
from zoo.flux.experts import GumbelRouter, MixtureVelocity, TemperatureSchedule, TimeMLP
from zoo.flux.metric import DiagonalMetric, LANDMetric, RBFMetric, build_metric
from zoo.flux.metrics import mmd, segment_scores, wasserstein
from zoo.flux.module import FLUXModule, MarginalFlowModule, plot_router_usage
from zoo.flux.paths import BendNetwork, geodesic_path, kinetic_energy

__all__ = [
    "BendNetwork",
    "ConditionalFlowMatching",
    "DiagonalMetric",
    "FLUXModule",
    "GumbelRouter",
    "LANDMetric",
    "MarginalFlowModule",
    "MixtureVelocity",
    "RBFMetric",
    "TemperatureSchedule",
    "TimeMLP",
    "build_metric",
    "geodesic_path",
    "icfm",
    "kinetic_energy",
    "mmd",
    "ot_coupling",
    "ot_plan",
    "otcfm",
    "plot_router_usage",
    "segment_scores",
    "wasserstein",
]
