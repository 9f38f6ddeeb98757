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
from datamodules.longitudinal import (
    AnnDataMarginals,
    CalciumMarginals,
    ManifoldMarginals,
    Marginals,
    MarginalsDataModule,
    MyoblastTimeCourse,
    SwitchingLorenz,
    SyntheticCalcium,
)

__all__ = [
    "CIFAR10",
    "FMRI",
    "MNIST",
    "AnnDataMarginals",
    "Burgers1D",
    "CalciumMarginals",
    "FNOMatFile",
    "FashionMNIST",
    "ImageDataModule",
    "IntegralEquationSpirals",
    "Lorenz",
    "LotkaVolterra",
    "MNISTDigits",
    "ManifoldMarginals",
    "Marginals",
    "MarginalsDataModule",
    "MyoblastTimeCourse",
    "NavierStokes2D",
    "SimulatedTrajectories",
    "SwitchingLorenz",
    "SyntheticCalcium",
    "TrajectoryDataModule",
]
