"""Neural integral equations (NIE, ANIE): solver, operators, encoders, modules, baselines."""

from zoo.integral.baselines import FNOForecaster, NeuralODE, TransformerForecaster
from zoo.integral.encoders import PatchDecoder1d, PatchDecoder2d, PatchEncoder1d, PatchEncoder2d
from zoo.integral.module import ANIE, NIE, NeuralIntegralEquation, TrajectoryModule
from zoo.integral.operators import AttentionIntegral, KernelMLP, MonteCarloIntegral
from zoo.integral.solver import IntegralSolver

__all__ = [
    "ANIE",
    "NIE",
    "AttentionIntegral",
    "FNOForecaster",
    "IntegralSolver",
    "KernelMLP",
    "MonteCarloIntegral",
    "NeuralIntegralEquation",
    "NeuralODE",
    "PatchDecoder1d",
    "PatchDecoder2d",
    "PatchEncoder1d",
    "PatchEncoder2d",
    "TrajectoryModule",
    "TransformerForecaster",
]
