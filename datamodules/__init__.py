"""LightningDataModules of the zoo."""

from datamodules.dynamics import (
    Burgers1D,
    FNOMatFile,
    IntegralEquationSpirals,
    Lorenz,
    LotkaVolterra,
    NavierStokes2D,
    SimulatedTrajectories,
    TrajectoryDataModule,
)
from datamodules.fmri import FMRI
from datamodules.images import CIFAR10, MNIST, FashionMNIST, ImageDataModule, MNISTDigits

__all__ = [
    "CIFAR10",
    "FMRI",
    "MNIST",
    "Burgers1D",
    "FNOMatFile",
    "FashionMNIST",
    "ImageDataModule",
    "IntegralEquationSpirals",
    "Lorenz",
    "LotkaVolterra",
    "MNISTDigits",
    "NavierStokes2D",
    "SimulatedTrajectories",
    "TrajectoryDataModule",
]
