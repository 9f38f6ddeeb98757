"""Neural integral equations (NIE, ANIE): solver, operators, encoders and the modules."""

from zoo.integral.encoders import PatchDecoder1d, PatchDecoder2d, PatchEncoder1d, PatchEncoder2d
from zoo.integral.module import ANIE, NIE, NeuralIntegralEquation, TrajectoryModule
from zoo.integral.operators import AttentionIntegral, KernelMLP, MonteCarloIntegral
from zoo.integral.solver import IntegralSolver

__all__ = [
    "ANIE",
    "NIE",
    "AttentionIntegral",
    "IntegralSolver",
    "KernelMLP",
    "MonteCarloIntegral",
    "NeuralIntegralEquation",
    "PatchDecoder1d",
    "PatchDecoder2d",
    "PatchEncoder1d",
    "PatchEncoder2d",
    "TrajectoryModule",
]
