"""LightningDataModules of the zoo."""

from datamodules.images import CIFAR10, MNIST, FashionMNIST, ImageDataModule, MNISTDigits

__all__ = ["CIFAR10", "MNIST", "FashionMNIST", "ImageDataModule", "MNISTDigits"]
