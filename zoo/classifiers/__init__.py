"""Image classifiers with injected backbones."""

from zoo.classifiers.module import ImageClassifier

__all__ = ["ImageClassifier"]
