"""Longitudinal marginals: unpaired snapshots of one population at ordered times.

A longitudinal data set is a sequence of ``K`` point clouds ``mu_0 .. mu_{K-1}`` observed
at strictly increasing times ``t_0 < .. < t_{K-1}``, with no correspondence between the
points of different snapshots (cells are destroyed when sequenced, trials differ from day
to day). :class:`Marginals` holds such a sequence; :class:`MarginalsDataModule` serves it
to a flow model, which learns to push ``mu_k`` forward to ``mu_{k+1}``:

- training batches draw points independently from both ends of each adjacent pair of
  training marginals (the model couples them);
- validation and test push the nearest earlier training marginal forward to each
  held-out marginal, whose points the model never saw.

Sources: simulated manifolds and a switching Lorenz system, the real HSMMSingleCell
myoblast time course (Debian ``r-bioc-hsmmsinglecell``), any ``.h5ad`` file with a time
column, widefield calcium arrays per training day, and a clearly labelled synthetic
calcium stand-in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.dynamics import _check_positive, _progress
from zoo.hub import PROJECT_ROOT, zoo_home

log = logging.getLogger(__name__)

CACHE_VERSION = 1
MANIFOLDS = ("sphere", "torus", "s_curve")
TORUS_RADII = (1.0, 0.4)  # (R, r): distance of the tube's centre from the axis, tube radius
HSMM_FILES = ("HSMM_expr_matrix.rda", "HSMM_sample_sheet.rda", "HSMM_gene_annotation.rda")
HSMM_PACKAGE = "r-bioc-hsmmsinglecell"
HSMM_SYSTEM_FOLDER = Path("/usr/lib/R/site-library/HSMMSingleCell/data")
HSMM_FETCH = (
    "`make data` (runs `apt-get download r-bioc-hsmmsinglecell` and `dpkg -x` into "
    ".data/hsmmsinglecell)"
)
FIT_SCOPES = ("train", "all")
CALCIUM_SUFFIXES = (".npy", ".npz")
CALCIUM_STAGE_KEY = "stages"
CALCIUM_STAGE_NAMES = ("early", "intermediate", "late")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_nonnegative(name: str, value: float) -> None:
    if isinstance(value, bool) or not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be non-negative and finite, got {value!r}")


def _to_tensor(values: Any, dtype: torch.dtype | None = None) -> Tensor:
    """An array-like (tensor on any device, numpy array, list) as a CPU tensor."""
    if isinstance(values, Tensor):
        tensor = values.detach().cpu()
    else:
        tensor = torch.as_tensor(np.asarray(values))
    return tensor if dtype is None else tensor.to(dtype)


def _integer_labels(values: Any, what: str) -> Tensor:
    """``values`` as a long tensor; floats are accepted only when they hold whole numbers."""
    tensor = _to_tensor(values)
    if tensor.is_floating_point():
        if not torch.isfinite(tensor).all() or not (tensor == tensor.round()).all():
            raise ValueError(f"{what} must hold integers, got non-integer values")
    elif tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{what} must hold integers, got {tensor.dtype}")
    return tensor.long()


@dataclass
class Marginals:
    """Ordered, unpaired snapshots of a population: the data of a longitudinal flow.

    The constructor converts every array to a tensor and calls :meth:`validate`.

    Args:
        points: One array per time, ``(N_k, D)``; stored as float32.
        times: The time of each marginal, strictly increasing; stored as float32.
        labels: Per-point integer labels (stage, regime, cell state) for evaluation only,
            one ``(N_k,)`` array per marginal, or ``None``.
        segment_labels: The ground-truth regime of each adjacent segment ``k -> k + 1``,
            ``(K - 1,)`` integers, or ``None`` when the data have no known regimes.
        names: A short name per marginal ("0h", "day 3"); ``None`` names them by time.
        metadata: Plain facts about the source (parameters, provenance, coordinates).

    Raises:
        ValueError: Fewer than two marginals, an empty marginal, marginals of different
            dimensions, NaN or infinite points, times that do not match the marginals or
            do not increase strictly, or labels of the wrong length.
    """

    points: list[Tensor]
    times: Tensor
    labels: list[Tensor] | None = None
    segment_labels: Tensor | None = None
    names: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.points, (list, tuple)):
            self.points = [_to_tensor(p, torch.float32) for p in self.points]
        self.times = _to_tensor(self.times, torch.float32)
        if self.labels is not None and isinstance(self.labels, (list, tuple)):
            self.labels = [
                _integer_labels(v, f"labels of marginal {k}") for k, v in enumerate(self.labels)
            ]
        if self.segment_labels is not None:
            self.segment_labels = _integer_labels(self.segment_labels, "segment_labels")
        if self.names is None and self.times.ndim == 1:
            self.names = [f"t={float(t):g}" for t in self.times]
        elif self.names is not None:
            self.names = [str(name) for name in self.names]
        self.validate()

    @property
    def num_marginals(self) -> int:
        """``K``, the number of time points."""
        return len(self.points)

    @property
    def dim(self) -> int:
        """``D``, the dimension of every point."""
        return int(self.points[0].shape[1])

    @property
    def sizes(self) -> list[int]:
        """``N_k``, the number of points of each marginal."""
        return [len(p) for p in self.points]

    def validate(self) -> None:
        """Check shapes, dimensions, finiteness, time order and labels.

        Raises:
            ValueError: See the class docstring.
        """
        if not isinstance(self.points, (list, tuple)) or not all(
            isinstance(p, Tensor) for p in self.points
        ):
            raise ValueError(
                f"points must be a list of (N_k, D) arrays, one per time, got "
                f"{type(self.points).__name__}"
            )
        num = len(self.points)
        if num < 2:
            raise ValueError(
                f"a longitudinal data set needs at least two time points (marginals), got {num}"
            )
        for k, p in enumerate(self.points):
            if p.ndim != 2:
                raise ValueError(
                    f"marginal {k} must be a (N_k, D) array of points, got shape {tuple(p.shape)}"
                )
            if p.shape[0] == 0 or p.shape[1] == 0:
                raise ValueError(
                    f"marginal {k} is empty (shape {tuple(p.shape)}); every time point needs at "
                    "least one point of dimension >= 1"
                )
        dims = [int(p.shape[1]) for p in self.points]
        if len(set(dims)) > 1:
            raise ValueError(
                f"all marginals must have the same dimension; got dimensions {dims} "
                f"(marginal {next(k for k, d in enumerate(dims) if d != dims[0])} differs from "
                f"marginal 0)"
            )
        for k, p in enumerate(self.points):
            bad = int((~torch.isfinite(p)).any(dim=1).sum())
            if bad:
                raise ValueError(
                    f"marginal {k} has {bad} of {len(p)} points with NaN or infinite values"
                )
        if self.times.shape != (num,):
            raise ValueError(
                f"times must have one entry per marginal, shape ({num},), got shape "
                f"{tuple(self.times.shape)}"
            )
        if not torch.isfinite(self.times).all():
            raise ValueError(f"times must be finite, got {self.times.tolist()}")
        if not (torch.diff(self.times) > 0).all():
            raise ValueError(
                f"times must increase strictly from marginal to marginal, got {self.times.tolist()}"
            )
        if self.labels is not None:
            if len(self.labels) != num:
                raise ValueError(
                    f"labels must hold one array per marginal ({num}), got {len(self.labels)}"
                )
            for k, (lab, p) in enumerate(zip(self.labels, self.points, strict=True)):
                if lab.shape != (len(p),):
                    raise ValueError(
                        f"labels of marginal {k} must have shape ({len(p)},), one per point, "
                        f"got {tuple(lab.shape)}"
                    )
        if self.segment_labels is not None and self.segment_labels.shape != (num - 1,):
            raise ValueError(
                f"segment_labels must have one entry per adjacent segment, shape ({num - 1},), "
                f"got {tuple(self.segment_labels.shape)}"
            )
        if self.names is None or len(self.names) != num:
            raise ValueError(
                f"names must hold one name per marginal ({num}), got "
                f"{None if self.names is None else len(self.names)}"
            )


def parse_held_out(held_out: Sequence[int] | int | None) -> list[int]:
    """The held-out indices as a sorted list, checked for type, duplicates and index 0.

    Raises:
        ValueError: A non-integer, negative or repeated index, or index 0 (nothing comes
            before it to push forward).
    """
    if held_out is None:
        return []
    items = [held_out] if _is_int(held_out) else held_out
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(
            f"held_out must be an integer index, a list of indices or null, got {held_out!r}"
        )
    if not all(_is_int(i) for i in items):
        raise ValueError(f"held_out must hold integer indices of marginals, got {held_out!r}")
    if any(i == 0 for i in items):
        raise ValueError(
            "held_out cannot contain index 0: a held-out marginal is predicted by pushing the "
            "training marginal before it forward, and nothing comes before marginal 0"
        )
    if any(i < 0 for i in items):
        raise ValueError(f"held_out indices must be positive, got {held_out!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"held_out lists an index more than once: {held_out!r}")
    return sorted(int(i) for i in items)


def check_held_out(held_out: Sequence[int], num_marginals: int) -> None:
    """Check held-out indices against the number of marginals ``K``.

    Raises:
        ValueError: An index outside ``1 .. K - 1``, or fewer than two marginals left for
            training.
    """
    outside = [i for i in held_out if not 1 <= i <= num_marginals - 1]
    if outside:
        raise ValueError(
            f"held_out indices {outside} are outside the valid range 1..{num_marginals - 1} "
            f"for {num_marginals} marginals (index 0 cannot be held out)"
        )
    if num_marginals - len(held_out) < 2:
        raise ValueError(
            f"held_out={list(held_out)} leaves {num_marginals - len(held_out)} of "
            f"{num_marginals} marginals for training; at least two are needed"
        )


def _seed_of(*keys: int) -> int:
    """A 63-bit seed mixing several non-negative integers (seed, epoch, step)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class EpochSampler(Sampler):
    """Yields the keys ``(epoch, step)`` of one epoch of :class:`PairBatches`.

    Lightning calls :meth:`set_epoch` before every training epoch; a plain loop that
    never calls it still sees a new epoch each time it iterates, the count going up by
    one per pass.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        return iter([(epoch, step) for step in range(self.steps)])


class PairBatches(Dataset):
    """Training batches: independent uniform draws from both ends of every training pair.

    Item ``(epoch, step)`` is drawn with a generator seeded by ``(seed, epoch, step)``
    alone, so a batch does not depend on which batches came before (restarts and
    sampler wrappers see the same data).

    Args:
        points: Every marginal, standardised.
        times: The time of every marginal.
        pairs: Adjacent training pairs ``(a, b)``.
        batch_size: Points drawn per marginal and pair.
        steps: Batches per epoch.
        seed: Base seed.

    Shapes:
        - x0, x1: :math:`(P, B, D)`, from marginals ``a`` and ``b`` of each pair.
        - t0, t1: :math:`(P,)`.
        - pair: :math:`(P,)` long, the index of each pair in ``pairs``.
    """

    def __init__(
        self,
        points: list[Tensor],
        times: Tensor,
        pairs: list[tuple[int, int]],
        batch_size: int,
        steps: int,
        seed: int,
    ) -> None:
        self.points, self.times, self.pairs = points, times, pairs
        self.batch_size, self.steps, self.seed = batch_size, steps, seed
        self._a = torch.tensor([a for a, _ in pairs])
        self._b = torch.tensor([b for _, b in pairs])

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, Tensor]:
        epoch, step = key if isinstance(key, tuple) else (0, key)
        generator = torch.Generator().manual_seed(_seed_of(self.seed, epoch, step))
        size = (self.batch_size,)
        x0, x1 = [], []
        for a, b in self.pairs:
            x0.append(self.points[a][torch.randint(len(self.points[a]), size, generator=generator)])
            x1.append(self.points[b][torch.randint(len(self.points[b]), size, generator=generator)])
        return {
            "x0": torch.stack(x0),
            "x1": torch.stack(x1),
            "t0": self.times[self._a],
            "t1": self.times[self._b],
            "pair": torch.arange(len(self.pairs)),
        }


class MarginalsDataModule(L.LightningDataModule):
    """Serves a :class:`Marginals` sequence for training and scoring longitudinal flows.

    Subclasses implement :meth:`load`. :meth:`setup` calls it once (the result is kept in
    :attr:`raw_marginals`), validates it, checks ``held_out`` against the number of
    marginals and, with ``standardize``, z-scores every feature by the mean and standard
    deviation of the pooled points of the training marginals only (features that are
    constant there keep scale 1), so nothing about a held-out marginal leaks into
    training.

    Training batches (:class:`PairBatches`) hold, for every adjacent pair ``(a, b)`` of
    training marginals, ``batch_size`` points drawn uniformly with replacement from
    ``a`` and, independently, from ``b``; ``steps_per_epoch`` batches make an epoch and
    batch ``(epoch, step)`` depends only on ``(seed, epoch, step)``. Under DDP, Lightning
    wraps the sampler and splits an epoch's steps between processes.

    Validation and test yield one item per held-out marginal ``h``: the nearest earlier
    training marginal (the source) and ``h`` (the target). Without held-out marginals
    they push the second-to-last training marginal forward to the last one, which is
    then also a training marginal. Prediction serves the test items.

    Args:
        held_out: Indices of marginals hidden from training, in ``1 .. K - 1``.
        batch_size: Points drawn per marginal and pair in a training batch.
        steps_per_epoch: Training batches per epoch.
        standardize: Z-score features by the training marginals' statistics.
        seed: Seed of the training draws (and of simulated data unless a subclass takes
            its own ``data_seed``).

    Shapes:
        - train batch: ``x0``, ``x1`` :math:`(P, B, D)`; ``t0``, ``t1``, ``pair``
          :math:`(P,)`, with :math:`P` = ``len(pairs)``, :math:`B` = ``batch_size``.
        - evaluation item: ``x_source`` :math:`(N_s, D)`, ``x_target`` :math:`(N_h, D)`,
          ``t_source``, ``t_target`` scalars, ``index`` and ``source_index`` ints.

    Attributes:
        raw_marginals: After :meth:`setup`, the marginals as loaded.
        marginals: After :meth:`setup`, all marginals, standardised.
    """

    abstract = True  # a base: listed by `zoo list` only through its subclasses

    def __init__(
        self,
        held_out: list[int] | int | None = None,
        batch_size: int = 256,
        steps_per_epoch: int = 50,
        standardize: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self._held_out = parse_held_out(held_out)
        _check_int("batch_size", batch_size, 1)
        _check_int("steps_per_epoch", steps_per_epoch, 1)
        if not isinstance(standardize, bool):
            raise ValueError(f"standardize must be true or false, got {standardize!r}")
        _check_int("seed", seed, 0)
        self.save_hyperparameters()
        self.raw_marginals: Marginals | None = None
        self._marginals: Marginals | None = None
        self._train: list[int] = []
        self._mean: Tensor | None = None
        self._std: Tensor | None = None

    def load(self) -> Marginals:
        """Every marginal of the source, as loaded or simulated (not standardised)."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self._marginals is not None:
            return
        if self.raw_marginals is None:
            raw = self.load()
            if not isinstance(raw, Marginals):
                raise TypeError(
                    f"{type(self).__name__}.load() must return Marginals, got {type(raw).__name__}"
                )
            raw.validate()
            self.raw_marginals = raw
        raw = self.raw_marginals
        check_held_out(self._held_out, raw.num_marginals)
        self._train = [k for k in range(raw.num_marginals) if k not in self._held_out]

        if self.hparams.standardize:
            pooled = torch.cat([raw.points[k] for k in self._train]).double()
            mean, std = pooled.mean(0), pooled.std(0, correction=0)
            constant = std <= 1e-12 * mean.abs().clamp_min(1.0)
            if constant.any():
                log.info(
                    "%s: %d features are constant on the training marginals; they keep scale 1",
                    type(self).__name__,
                    int(constant.sum()),
                )
            std = torch.where(constant, torch.ones_like(std), std)
        else:
            mean, std = torch.zeros(raw.dim).double(), torch.ones(raw.dim).double()
        self._mean, self._std = mean.float(), std.float()
        points = [self.standardize_points(p) for p in raw.points]
        self._marginals = dataclasses.replace(raw, points=points, metadata=dict(raw.metadata))

        log.info(
            "%s: %d marginals of dimension %d (%s points), training %s, held out %s",
            type(self).__name__,
            raw.num_marginals,
            raw.dim,
            ", ".join(map(str, raw.sizes)),
            self._train,
            self._held_out or "none",
        )

    @property
    def feature_mean(self) -> Tensor:
        """Per-feature mean subtracted by the standardisation, :math:`(D,)` (0 without it)."""
        if self._mean is None:
            self.setup()
        return self._mean

    @property
    def feature_std(self) -> Tensor:
        """Per-feature scale divided out by the standardisation, :math:`(D,)` (1 without it)."""
        if self._std is None:
            self.setup()
        return self._std

    def standardize_points(self, x: Tensor) -> Tensor:
        """Map points in data units to the standardised space the loaders serve."""
        return (x - self.feature_mean.to(x)) / self.feature_std.to(x)

    def unstandardize(self, x: Tensor) -> Tensor:
        """Map standardised points back to data units."""
        return x * self.feature_std.to(x) + self.feature_mean.to(x)

    @property
    def marginals(self) -> Marginals:
        """All marginals, standardised (training and held out)."""
        if self._marginals is None:
            self.setup()
        return self._marginals

    @property
    def num_marginals(self) -> int:
        return self.marginals.num_marginals

    @property
    def dim(self) -> int:
        """``D``, the dimension of every point."""
        return self.marginals.dim

    @property
    def times(self) -> Tensor:
        """The time of every marginal, :math:`(K,)`."""
        return self.marginals.times

    @property
    def segment_labels(self) -> Tensor | None:
        """Ground-truth regime of each segment ``k -> k + 1``, :math:`(K - 1,)`, or ``None``."""
        return self.marginals.segment_labels

    @property
    def train_indices(self) -> list[int]:
        """Indices of the training marginals, sorted."""
        if self._marginals is None:
            self.setup()
        return list(self._train)

    @property
    def held_out_indices(self) -> list[int]:
        """Indices of the held-out marginals, sorted."""
        return list(self._held_out)

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """Adjacent training pairs ``(a, b)``: consecutive entries of :attr:`train_indices`."""
        train = self.train_indices
        return list(zip(train[:-1], train[1:], strict=True))

    def pooled_points(self) -> Tensor:
        """The points of every training marginal, concatenated, :math:`(N, D)`.

        Held-out marginals are never included; this is what a metric on the data may
        learn from.
        """
        return torch.cat([self.marginals.points[k] for k in self.train_indices])

    def evaluation_items(self) -> list[dict[str, Any]]:
        """One item per held-out marginal (or the last training pair): source and target."""
        train = self.train_indices
        targets = self.held_out_indices or [train[-1]]
        points, times = self.marginals.points, self.marginals.times
        items = []
        for h in targets:
            s = max(k for k in train if k < h)
            items.append(
                {
                    "x_source": points[s],
                    "t_source": times[s],
                    "x_target": points[h],
                    "t_target": times[h],
                    "index": h,
                    "source_index": s,
                }
            )
        return items

    def train_dataloader(self) -> DataLoader:
        hp = self.hparams
        dataset = PairBatches(
            self.marginals.points,
            self.marginals.times,
            self.pairs,
            hp.batch_size,
            hp.steps_per_epoch,
            hp.seed,
        )
        return DataLoader(dataset, batch_size=None, sampler=EpochSampler(hp.steps_per_epoch))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.evaluation_items(), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.evaluation_items(), batch_size=None)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthogonal matrix, Haar-distributed (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    return q * np.sign(np.diag(r))


def manifold_embedding(manifold: str, coords: np.ndarray) -> np.ndarray:
    """Points of a 2-D manifold in 3-D from their intrinsic coordinates.

    - ``sphere``: (longitude, latitude) to ``(cos b cos a, cos b sin a, sin b)``, radius 1.
    - ``torus``: angles (u, v) to ``((R + r cos v) cos u, (R + r cos v) sin u, r sin v)``
      with ``R, r = 1, 0.4``.
    - ``s_curve``: (t, h) to ``(sin t, h, sign(t) (cos t - 1))``, scikit-learn's
      S-curve; ``t`` is arc length along the curve, so ``(t, h)`` are isometric
      coordinates of this flat surface.

    Shapes:
        - coords: :math:`(N, 2)`.
        - output: :math:`(N, 3)`.
    """
    a, b = coords[:, 0], coords[:, 1]
    if manifold == "sphere":
        return np.stack([np.cos(b) * np.cos(a), np.cos(b) * np.sin(a), np.sin(b)], axis=1)
    if manifold == "torus":
        big, small = TORUS_RADII
        ring = big + small * np.cos(b)
        return np.stack([ring * np.cos(a), ring * np.sin(a), small * np.sin(b)], axis=1)
    if manifold == "s_curve":
        return np.stack([np.sin(a), b, np.sign(a) * (np.cos(a) - 1.0)], axis=1)
    raise ValueError(f"manifold must be one of {', '.join(MANIFOLDS)}, got {manifold!r}")


def _blob(
    manifold: str, s: float, num: int, spread: float, sweep: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsic centre and coordinates of a blob at progress ``s`` in [0, 1] of the path."""
    if manifold == "sphere":
        # the centre runs along the equator, a great circle; points spread by the
        # exponential map of a Gaussian tangent vector, so they lie on the sphere exactly
        lon = 2 * math.pi * sweep * s
        centre = np.array([math.cos(lon), math.sin(lon), 0.0])
        east, north = np.array([-math.sin(lon), math.cos(lon), 0.0]), np.array([0.0, 0.0, 1.0])
        tangent = spread * rng.standard_normal((num, 2))
        length = np.linalg.norm(tangent, axis=1, keepdims=True)
        direction = (tangent[:, :1] * east + tangent[:, 1:] * north) / np.maximum(length, 1e-300)
        xyz = np.cos(length) * centre + np.sin(length) * direction
        coords = np.stack([np.arctan2(xyz[:, 1], xyz[:, 0]), np.arcsin(np.clip(xyz[:, 2], -1, 1))])
        return np.array([math.remainder(lon, 2 * math.pi), 0.0]), coords.T
    if manifold == "torus":
        # the outer equator v = 0 of the torus is a geodesic; u advances along it
        centre = np.array([2 * math.pi * sweep * s, 0.0])
        coords = centre + spread * rng.standard_normal((num, 2))
        wrapped = np.remainder(coords + math.pi, 2 * math.pi) - math.pi
        return np.remainder(centre + math.pi, 2 * math.pi) - math.pi, wrapped
    # s_curve: a straight line at mid height in the flat (t, h) coordinates
    half = 1.5 * math.pi
    centre = np.array([2 * half * (sweep * s + (1 - sweep) / 2) - half, 1.0])
    return centre, centre + spread * rng.standard_normal((num, 2))


class ManifoldMarginals(MarginalsDataModule):
    """A blob of mass travelling along a geodesic of a 2-D manifold, embedded in ``D``-D.

    Simulated. Marginal ``k`` holds ``points_per_marginal`` points of a blob on the unit
    sphere (centre on the equator, spread by the exponential map), a torus (``R = 1``,
    ``r = 0.4``, centre on the outer equator) or scikit-learn's S-curve (centre on a
    straight line of its flat coordinates); the centre covers ``sweep`` of the
    manifold's circle (sphere, torus) or length (S-curve) at even steps from the first
    marginal to the last, at times ``0, 1, .., K - 1``. The 3-D points are padded with
    zeros to ``ambient_dim``, rotated by a fixed random orthogonal matrix (drawn from
    ``data_seed``) and get isotropic Gaussian noise. ``metadata`` keeps the intrinsic
    coordinates of every point (``"intrinsic"``, a list of ``(N_k, 2)`` tensors), the
    blob centres and the rotation (``x_ambient = pad(x_3d) @ rotation.T``). There are no
    regimes (labels are ``None``). Standardisation is off by default: a per-feature
    rescaling would distort the geometry the benchmark is about.

    Args:
        manifold: ``"sphere"``, ``"torus"`` or ``"s_curve"``.
        ambient_dim: Dimension of the embedding, at least 3.
        num_marginals: Number of time points ``K``.
        points_per_marginal: Points per marginal.
        noise: Standard deviation of the isotropic noise in the ambient space.
        spread: Standard deviation of the blob in intrinsic units (radians on the sphere
            and torus, arc length on the S-curve).
        sweep: Fraction of the great circle, equator or S-curve covered by the centre,
            in (0, 1].
        data_seed: Seed of the simulation; ``None`` uses ``seed``.
        standardize: Z-score features by the training marginals (off by default).
        **kwargs: Arguments of :class:`MarginalsDataModule`.

    Shapes:
        - every marginal: :math:`(N, D)` with ``N = points_per_marginal``,
          ``D = ambient_dim``.
    """

    def __init__(
        self,
        manifold: str = "sphere",
        ambient_dim: int = 10,
        num_marginals: int = 8,
        points_per_marginal: int = 300,
        noise: float = 0.02,
        spread: float = 0.15,
        sweep: float = 0.5,
        data_seed: int | None = None,
        standardize: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(standardize=standardize, **kwargs)
        if manifold not in MANIFOLDS:
            raise ValueError(f"manifold must be one of {', '.join(MANIFOLDS)}, got {manifold!r}")
        _check_int("ambient_dim", ambient_dim, 3)
        _check_int("num_marginals", num_marginals, 2)
        _check_int("points_per_marginal", points_per_marginal, 1)
        _check_nonnegative("noise", noise)
        _check_positive("spread", spread)
        if isinstance(sweep, bool) or not 0 < sweep <= 1:
            raise ValueError(f"sweep must lie in (0, 1], got {sweep!r}")
        if data_seed is not None:
            _check_int("data_seed", data_seed, 0)

    def load(self) -> Marginals:
        hp = self.hparams
        rng = np.random.default_rng(self.hparams.seed if hp.data_seed is None else hp.data_seed)
        rotation = random_rotation(hp.ambient_dim, rng)
        points, intrinsic, centres = [], [], []
        for s in np.linspace(0.0, 1.0, hp.num_marginals):
            centre, coords = _blob(hp.manifold, s, hp.points_per_marginal, hp.spread, hp.sweep, rng)
            xyz = manifold_embedding(hp.manifold, coords)
            padded = np.zeros((len(xyz), hp.ambient_dim))
            padded[:, :3] = xyz
            noise = hp.noise * rng.standard_normal(padded.shape)
            points.append(padded @ rotation.T + noise)
            intrinsic.append(torch.from_numpy(coords).float())
            centres.append(centre)
        metadata = {
            "simulated": True,
            "manifold": hp.manifold,
            "intrinsic": intrinsic,
            "intrinsic_names": {
                "sphere": ("longitude", "latitude"),
                "torus": ("u", "v"),
                "s_curve": ("t", "height"),
            }[hp.manifold],
            "centres": torch.tensor(np.array(centres)).float(),
            "rotation": torch.from_numpy(rotation).float(),
            "torus_radii": TORUS_RADII if hp.manifold == "torus" else None,
        }
        times = np.arange(hp.num_marginals, dtype=np.float64)
        return Marginals(
            points, times, names=[f"t{k}" for k in range(len(times))], metadata=metadata
        )


def lorenz_field(state: np.ndarray, sigma: float, rho: float, beta: float) -> np.ndarray:
    """The Lorenz vector field ``(sigma (y - x), x (rho - z) - y, x y - beta z)``.

    Shapes:
        - state, output: :math:`(..., 3)`.
    """
    x, y, z = state[..., 0], state[..., 1], state[..., 2]
    return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=-1)


def simulate_switching_lorenz(
    x0: np.ndarray,
    rhos: Sequence[float],
    sigma: float,
    beta: float,
    window: int,
    stride: int,
    dt: float,
    burn_in_steps: int,
) -> np.ndarray:
    """Windows of Lorenz trajectories whose ``rho`` changes from span to span.

    Integrates every trajectory with classical fourth-order Runge-Kutta of step ``dt``,
    vectorised over trajectories: first ``burn_in_steps`` steps with ``rhos[0]``, then one
    span of ``window * stride`` steps per entry of ``rhos`` with that ``rho``, keeping
    every ``stride``-th state of the span (its first state included). The state carries
    over from span to span, so a change of ``rho`` continues the same trajectories.

    Args:
        x0: Initial states.
        rhos: The Rayleigh number of each span.
        sigma: Prandtl number.
        beta: Aspect ratio.
        window: States kept per span.
        stride: Integration steps between kept states.
        dt: Integration step.
        burn_in_steps: Steps integrated before the first span.

    Returns:
        The kept states, float64.

    Raises:
        RuntimeError: If the integration overflows (``dt`` too large).

    Shapes:
        - x0: :math:`(N, 3)`.
        - output: :math:`(K, N, W, 3)` with ``K = len(rhos)``, ``W = window``.
    """

    def step(state: np.ndarray, rho: float) -> np.ndarray:
        k1 = lorenz_field(state, sigma, rho, beta)
        k2 = lorenz_field(state + 0.5 * dt * k1, sigma, rho, beta)
        k3 = lorenz_field(state + 0.5 * dt * k2, sigma, rho, beta)
        k4 = lorenz_field(state + dt * k3, sigma, rho, beta)
        return state + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    state = np.array(x0, dtype=np.float64)
    out = np.empty((len(rhos), len(state), window, 3))
    with (
        np.errstate(over="ignore", invalid="ignore"),
        _progress(burn_in_steps + len(rhos) * window * stride, "SwitchingLorenz", "step") as bar,
    ):
        for _ in range(burn_in_steps):
            state = step(state, rhos[0])
        bar.update(burn_in_steps)
        for k, rho in enumerate(rhos):
            for j in range(window * stride):
                if j % stride == 0:
                    out[k, :, j // stride] = state
                state = step(state, rho)
            if not np.isfinite(state).all():
                raise RuntimeError(
                    f"SwitchingLorenz: the integration overflowed in span {k} (rho={rho}) with "
                    f"dt={dt}; lower dt"
                )
            bar.update(window * stride)
    return out


class SwitchingLorenz(MarginalsDataModule):
    """Windows of Lorenz trajectories that switch from a chaotic to a lower-``rho`` regime.

    Simulated, after the Lorenz benchmark of FLUX ("geometry-aware longitudinal flow
    matching with mixture of experts", 2026). ``num_trajectories`` Lorenz trajectories
    (``sigma``, ``beta`` fixed) start from random states (``x, y, z`` uniform in
    ``[-15, 15] x [-15, 15] x [10, 40]``), are integrated (RK4, step ``dt``) for ``burn_in``
    time units with ``rho[0]`` to reach the attractor, then through ``num_marginals``
    consecutive spans of ``window * stride`` steps. Spans ``0 .. switch_after - 1``
    use ``rho[0]`` (28: chaotic), the rest ``rho[1]`` (10: the trajectories spiral into
    a stable fixed point); the switch happens at the first state of span
    ``switch_after`` and the same trajectories continue. Marginal ``k`` holds, per
    trajectory, the ``window`` states of span ``k`` spaced by ``stride * dt``, flattened
    coordinate-major into ``3 * window`` features ``(x_0 .. x_{W-1}, y_0 .., z_0 ..)``,
    plus Gaussian noise of standard deviation ``noise``; times are ``0 .. K - 1``.
    Per-point labels are the regime of the marginal (0 before the switch, 1 after).

    The switch segment ``switch_after - 1 -> switch_after`` has no single regime: the
    trajectories of marginal ``switch_after - 1`` evolve with the first ``rho`` until the
    switch, but the flow that carries that marginal to the next must arrive at windows of
    the second regime. ``segment_convention`` says which it is scored as: ``"target"``
    (default) gives segment ``k -> k + 1`` the regime of marginal ``k + 1`` (with the
    defaults ``[0, 0, 0, 1, 1, 1, 1]``): a marginal is a set of whole windows, and every
    state of a window of marginal ``k + 1`` evolved under that marginal's regime, so the
    map that carries marginal ``k`` to marginal ``k + 1`` is that regime's dynamics.
    ``"source"`` gives it the regime of marginal ``k``, the regime in force between the
    two marginals' start times (``[0, 0, 0, 0, 1, 1, 1]``). Features are z-scored by the
    training marginals.

    Args:
        num_marginals: Number of time points ``K``.
        switch_after: Index of the first marginal of the second regime, in ``1 .. K - 1``.
        rho: Rayleigh numbers of the two regimes.
        sigma: Prandtl number.
        beta: Aspect ratio.
        window: States per window ``W``.
        stride: Integration steps between the states of a window.
        dt: Integration step.
        burn_in: Time integrated with ``rho[0]`` before the first span.
        num_trajectories: Trajectories, i.e. points per marginal.
        noise: Standard deviation of the observation noise, in state units.
        data_seed: Seed of the initial states and the noise; ``None`` uses ``seed``.
        segment_convention: ``"source"`` or ``"target"``: the regime of the switch segment.
        **kwargs: Arguments of :class:`MarginalsDataModule`.

    Shapes:
        - every marginal: :math:`(N, 3 W)`, ``N = num_trajectories`` (60-D by default).
    """

    def __init__(
        self,
        num_marginals: int = 8,
        switch_after: int = 4,
        rho: tuple[float, float] = (28.0, 10.0),
        sigma: float = 10.0,
        beta: float = 8.0 / 3.0,
        window: int = 20,
        stride: int = 5,
        dt: float = 0.01,
        burn_in: float = 10.0,
        num_trajectories: int = 300,
        noise: float = 0.1,
        data_seed: int | None = None,
        segment_convention: str = "target",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_int("num_marginals", num_marginals, 2)
        if segment_convention not in ("source", "target"):
            raise ValueError(
                f"segment_convention must be 'source' (segment k -> k+1 has the regime of "
                f"marginal k) or 'target' (that of marginal k+1), got {segment_convention!r}"
            )
        if not _is_int(switch_after) or not 1 <= switch_after <= num_marginals - 1:
            raise ValueError(
                f"switch_after must be an integer in 1..{num_marginals - 1} (the first marginal "
                f"of the second regime), got {switch_after!r}"
            )
        if len(rho) != 2 or not all(math.isfinite(r) and r > 0 for r in rho):
            raise ValueError(f"rho must be two positive Rayleigh numbers, got {rho!r}")
        _check_positive("sigma", sigma)
        _check_positive("beta", beta)
        _check_int("window", window, 2)
        _check_int("stride", stride, 1)
        _check_positive("dt", dt)
        _check_nonnegative("burn_in", burn_in)
        _check_int("num_trajectories", num_trajectories, 1)
        _check_nonnegative("noise", noise)
        if data_seed is not None:
            _check_int("data_seed", data_seed, 0)

    def load(self) -> Marginals:
        hp = self.hparams
        rng = np.random.default_rng(hp.seed if hp.data_seed is None else hp.data_seed)
        low, high = np.array([-15.0, -15.0, 10.0]), np.array([15.0, 15.0, 40.0])
        x0 = rng.uniform(low, high, size=(hp.num_trajectories, 3))
        regimes = [0 if k < hp.switch_after else 1 for k in range(hp.num_marginals)]
        rhos = [float(hp.rho[r]) for r in regimes]
        burn_in_steps = int(round(hp.burn_in / hp.dt))
        states = simulate_switching_lorenz(
            x0, rhos, hp.sigma, hp.beta, hp.window, hp.stride, hp.dt, burn_in_steps
        )
        windows = states.transpose(0, 1, 3, 2).reshape(hp.num_marginals, hp.num_trajectories, -1)
        windows = windows + hp.noise * rng.standard_normal(windows.shape)

        span = hp.window * hp.stride * hp.dt
        metadata = {
            "simulated": True,
            "switch_after": hp.switch_after,
            "regimes": regimes,
            "rho": list(hp.rho),
            "sigma": hp.sigma,
            "beta": hp.beta,
            "window": hp.window,
            "sample_interval": hp.stride * hp.dt,
            "span_start_times": [burn_in_steps * hp.dt + k * span for k in range(len(rhos))],
            "layout": "coordinate-major (3, window): x_0..x_{W-1}, y_0..y_{W-1}, z_0..z_{W-1}",
            "segment_convention": hp.segment_convention,
        }
        shift = 1 if hp.segment_convention == "target" else 0
        return Marginals(
            points=list(windows),
            times=np.arange(hp.num_marginals, dtype=np.float64),
            labels=[np.full(hp.num_trajectories, r) for r in regimes],
            segment_labels=regimes[shift : shift + hp.num_marginals - 1],
            names=[f"t{k}" for k in range(hp.num_marginals)],
            metadata=metadata,
        )


def hsmm_search_folders(root: str | Path | None = None) -> list[Path]:
    """Where :class:`MyoblastTimeCourse` looks for the HSMMSingleCell ``.rda`` files, in order.

    ``root`` alone if given; else ``$ZOO_DATA_DIR/hsmmsinglecell`` (when the variable is
    set), the project's ``.data/hsmmsinglecell`` and the system R library.
    """
    if root is not None:
        return [Path(root).expanduser()]
    folders = []
    if os.environ.get("ZOO_DATA_DIR"):
        folders.append(Path(os.environ["ZOO_DATA_DIR"]).expanduser() / "hsmmsinglecell")
    return [*folders, PROJECT_ROOT / ".data" / "hsmmsinglecell", HSMM_SYSTEM_FOLDER]


def find_hsmm_folder(root: str | Path | None = None) -> Path:
    """The first folder holding all three HSMMSingleCell ``.rda`` files.

    Each place of :func:`hsmm_search_folders` is searched recursively (a ``dpkg -x``
    tree keeps the files under ``usr/lib/R/site-library/HSMMSingleCell/data``).

    Raises:
        FileNotFoundError: No place holds the files; the message names the places
            searched and how to fetch the data.
    """
    searched = hsmm_search_folders(root)
    for place in searched:
        if not place.is_dir():
            continue
        for expr in sorted(place.rglob(HSMM_FILES[0])):
            if all((expr.parent / name).is_file() for name in HSMM_FILES):
                return expr.parent
    raise FileNotFoundError(
        f"HSMMSingleCell data ({', '.join(HSMM_FILES)}) not found; searched (recursively) "
        f"{', '.join(str(p) for p in searched)}. Fetch it with {HSMM_FETCH}, set ZOO_DATA_DIR "
        "to a folder holding hsmmsinglecell/, or pass root= the folder of the .rda files"
    )


def read_hsmm(folder: str | Path) -> Any:
    """The HSMMSingleCell myoblast data as an ``anndata.AnnData`` (cells x genes).

    Reads the package's three ``.rda`` files with ``rdata`` (no R needed). ``X`` is
    ``log1p`` of the FPKM values (float32); ``obs`` is the sample sheet (``Hours``,
    ``Media``, ``Pseudotime``, ``State``, ...), ``var`` the gene annotation.

    Args:
        folder: The folder holding the ``.rda`` files.

    Raises:
        ValueError: If the cells or genes of the files do not match.
    """
    import anndata
    import pandas as pd
    import rdata

    folder = Path(folder)
    content = {}
    with _progress(len(HSMM_FILES), "HSMMSingleCell", "file") as bar:
        for name in HSMM_FILES:
            content[name] = next(iter(rdata.read_rda(folder / name).values()))
            bar.update()
    expr, samples, genes = (content[name] for name in HSMM_FILES)
    gene_ids, cell_ids = (np.asarray(expr.coords[d].values).astype(str) for d in expr.dims)
    if sorted(cell_ids) != sorted(samples.index.astype(str)):
        raise ValueError(
            f"{folder}: the expression matrix has {len(cell_ids)} cells but the sample sheet "
            f"lists {len(samples)} that do not match them"
        )
    if sorted(gene_ids) != sorted(genes.index.astype(str)):
        raise ValueError(
            f"{folder}: the expression matrix has {len(gene_ids)} genes that do not match the "
            f"{len(genes)} of the gene annotation"
        )
    fpkm = np.asarray(expr.values, dtype=np.float64).T
    obs = samples.loc[cell_ids].copy()
    var = pd.DataFrame(genes.loc[gene_ids].copy())
    obs.index, var.index = obs.index.astype(str), var.index.astype(str)
    adata = anndata.AnnData(np.log1p(fpkm).astype(np.float32), obs=obs, var=var)
    adata.uns["X"] = "log1p(FPKM)"
    adata.uns["source"] = f"HSMMSingleCell (Debian {HSMM_PACKAGE}), {folder}"
    return adata


def highly_variable_genes(log_expression: np.ndarray, num_genes: int, bins: int = 20) -> np.ndarray:
    """Indices of the most variable genes by normalised dispersion (Seurat's recipe).

    Per gene, from the linear values ``expm1(log_expression)``: mean ``m``, variance
    ``v`` and log dispersion ``log(v / m)``; genes are binned into ``bins`` equal-width
    bins of ``log1p(m)`` and the dispersion is z-scored within its bin (bins of one gene
    or no spread score 0). Genes never expressed are excluded; the top ``num_genes`` by
    normalised dispersion are returned, most variable first (ties keep gene order).

    Shapes:
        - log_expression: :math:`(cells, genes)`.
        - output: ``(num_genes,)`` gene indices.
    """
    linear = np.expm1(np.asarray(log_expression, dtype=np.float64))
    mean = linear.mean(0)
    expressed = np.flatnonzero(mean > 0)
    if num_genes > len(expressed):
        raise ValueError(
            f"num_genes={num_genes} exceeds the {len(expressed)} genes expressed in the cells "
            "used for the selection"
        )
    mean = mean[expressed]
    var = linear[:, expressed].var(0, ddof=1)
    dispersion = np.log(np.maximum(var, 1e-300) / mean)
    level = np.log1p(mean)
    edges = np.linspace(level.min(), level.max(), bins + 1)
    which = np.clip(np.digitize(level, edges[1:-1]), 0, bins - 1)
    score = np.zeros_like(dispersion)
    for b in np.unique(which):
        members = which == b
        spread = dispersion[members].std(ddof=1) if members.sum() > 1 else 0.0
        if spread > 0:
            score[members] = (dispersion[members] - dispersion[members].mean()) / spread
    order = np.argsort(-score, kind="stable")[:num_genes]
    return expressed[order]


def _json_digest(parameters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parameters, sort_keys=True).encode()).hexdigest()[:16]


class MyoblastTimeCourse(MarginalsDataModule):
    """Real single-cell RNA-seq of human skeletal myoblasts differentiating over 72 hours.

    Real data: the HSMMSingleCell package (from "The dynamics and regulators of cell fate
    decisions are revealed by pseudotemporal ordering of single cells", Trapnell et al.,
    2014), 271 cells x 47,192 genes (FPKM) sampled at 0, 24, 48 and 72 h (69, 74, 79 and
    49 cells), installed from the Debian package ``r-bioc-hsmmsinglecell`` and read with
    ``rdata`` (no R). The ``.rda`` files are searched (recursively) in ``root`` if given,
    else ``$ZOO_DATA_DIR/hsmmsinglecell``, the project's ``.data/hsmmsinglecell`` (what
    ``make data`` fills) and ``/usr/lib/R/site-library/HSMMSingleCell/data``. Cells are
    embedded by ``log1p(FPKM)``, the ``num_genes`` most variable genes
    (:func:`highly_variable_genes`) and PCA to ``num_pcs`` components (scikit-learn);
    with ``fit_scope="train"`` the genes and components are chosen on the cells of the
    training times only and the held-out cells are projected, with ``"all"`` on every
    cell (the transductive practice of published single-cell benchmarks). Marginal
    ``k`` holds the cells of the ``k``-th time, at time ``hours / hours_per_unit``
    (days by default) and named "0h", "24h", ...; per-cell labels are monocle's
    ``State`` (codes 0, 1, 2 for states "1", "2", "3"); there are no segment labels.
    The embedding is cached beside the ``.rda`` files (or in ``$ZOO_HOME/data`` when
    that folder is read-only), keyed by the parameters.

    Args:
        root: Folder holding the ``.rda`` files (searched recursively).
        num_genes: Highly variable genes kept.
        num_pcs: Principal components kept.
        fit_scope: ``"train"`` or ``"all"``: the cells the gene selection and PCA see.
        hours_per_unit: Hours per unit of the served times.
        held_out: Marginals hidden from training; the default 2 is 48 h.
        **kwargs: Arguments of :class:`MarginalsDataModule`.

    Shapes:
        - marginal ``k``: :math:`(N_k, P)`, ``N_k`` in (69, 74, 79, 49), ``P = num_pcs``.
    """

    def __init__(
        self,
        root: str | None = None,
        num_genes: int = 2000,
        num_pcs: int = 10,
        fit_scope: str = "train",
        hours_per_unit: float = 24.0,
        held_out: list[int] | int | None = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__(held_out=held_out, **kwargs)
        _check_int("num_genes", num_genes, 1)
        _check_int("num_pcs", num_pcs, 1)
        if num_pcs > num_genes:
            raise ValueError(f"num_pcs={num_pcs} cannot exceed num_genes={num_genes}")
        if fit_scope not in FIT_SCOPES:
            raise ValueError(f"fit_scope must be one of {', '.join(FIT_SCOPES)}, got {fit_scope!r}")
        _check_positive("hours_per_unit", hours_per_unit)

    def _cache_path(self, folder: Path, parameters: dict[str, Any]) -> Path:
        base = folder / "zoo-cache"
        writable = base if base.is_dir() else folder
        if not os.access(writable, os.W_OK):
            base = zoo_home() / "data" / "hsmmsinglecell"
        return base / f"marginals-{_json_digest(parameters)}.pt"

    def _read_cache(self, path: Path, parameters: dict[str, Any]) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged file: zip, pickle or end-of-file errors
            warnings.warn(f"cache {path} is unreadable ({err}); recomputing it", stacklevel=3)
            return None
        if not isinstance(blob, dict) or blob.get("parameters") != parameters:
            warnings.warn(f"cache {path} holds other parameters; recomputing it", stacklevel=3)
            return None
        return blob

    def load(self) -> Marginals:
        hp = self.hparams
        folder = find_hsmm_folder(hp.root)
        files = {name: (folder / name).stat().st_size for name in HSMM_FILES}
        parameters = {
            "version": CACHE_VERSION,
            "num_genes": hp.num_genes,
            "num_pcs": hp.num_pcs,
            "fit_scope": hp.fit_scope,
            "held_out": self._held_out if hp.fit_scope == "train" else [],
            "file_sizes": files,
        }
        path = self._cache_path(folder, parameters)
        blob = self._read_cache(path, parameters)
        if blob is None:
            blob = self._embed(folder, parameters)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(blob, path)
                log.info("MyoblastTimeCourse: cached the embedding in %s", path)
            except OSError as err:
                warnings.warn(f"could not write the cache {path}: {err}", stacklevel=2)
        else:
            log.info("MyoblastTimeCourse: embedding read from the cache %s", path)
        hours = blob["hours"]
        return Marginals(
            points=blob["points"],
            times=np.asarray(hours, dtype=np.float64) / hp.hours_per_unit,
            labels=blob["labels"],
            names=[f"{h:g}h" for h in hours],
            metadata={**blob["metadata"], "folder": str(folder), "cache": str(path)},
        )

    def _embed(self, folder: Path, parameters: dict[str, Any]) -> dict[str, Any]:
        from sklearn.decomposition import PCA

        hp = self.hparams
        adata = read_hsmm(folder)
        hours_of_cell = adata.obs["Hours"].astype(float).to_numpy()
        hours = sorted(set(hours_of_cell.tolist()))
        check_held_out(self._held_out, len(hours))
        held = {hours[k] for k in parameters["held_out"]}
        fit = np.array([h not in held for h in hours_of_cell])
        x = np.asarray(adata.X, dtype=np.float64)

        genes = highly_variable_genes(x[fit], hp.num_genes)
        if hp.num_pcs > fit.sum():
            raise ValueError(
                f"num_pcs={hp.num_pcs} exceeds the {int(fit.sum())} cells the PCA is fitted on"
            )
        pca = PCA(n_components=hp.num_pcs, svd_solver="full").fit(x[fit][:, genes])
        embedded = pca.transform(x[:, genes])

        state = adata.obs.get("State")
        if state is not None:
            state = state.astype("category")
            state_names = [str(c) for c in state.cat.categories]
            codes = state.cat.codes.to_numpy()
        points, labels = [], []
        for h in hours:
            cells = hours_of_cell == h
            points.append(torch.from_numpy(embedded[cells]).float())
            labels.append(torch.from_numpy(codes[cells]).long() if state is not None else None)
        media = adata.obs["Media"].astype(str) if "Media" in adata.obs else None
        metadata = {
            "source": adata.uns["source"],
            "real": True,
            "num_cells": int(adata.n_obs),
            "num_genes_measured": int(adata.n_vars),
            "hours": hours,
            "cells_per_time": [int((hours_of_cell == h).sum()) for h in hours],
            "media_per_time": [
                sorted(set(media[hours_of_cell == h])) if media is not None else [] for h in hours
            ],
            "state_names": state_names if state is not None else [],
            "fit_scope": hp.fit_scope,
            "genes": [str(g) for g in adata.var_names[genes]],
            "explained_variance_ratio": pca.explained_variance_ratio_.tolist(),
        }
        log.info(
            "MyoblastTimeCourse: %d cells x %d genes from %s; %d PCs of %d genes explain %.1f%%",
            adata.n_obs,
            adata.n_vars,
            folder,
            hp.num_pcs,
            hp.num_genes,
            100 * float(pca.explained_variance_ratio_.sum()),
        )
        return {
            "parameters": parameters,
            "hours": hours,
            "points": points,
            "labels": labels if state is not None else None,
            "metadata": metadata,
        }


def _time_values(column: Any, key: str, path: Path) -> tuple[np.ndarray, list[float], list[str]]:
    """Per-cell time index, the distinct times and their names from an ``obs`` column.

    An ordered categorical gives times ``0, 1, ..`` in the order of its categories (the
    ones present); any other column must hold numbers, or strings that all parse as
    numbers.
    """
    import pandas as pd

    if isinstance(column.dtype, pd.CategoricalDtype) and column.cat.ordered:
        if column.isna().any():
            raise ValueError(f"{path}: obs[{key!r}] has {int(column.isna().sum())} missing times")
        present = column.cat.remove_unused_categories()
        names = [str(c) for c in present.cat.categories]
        return present.cat.codes.to_numpy(dtype=np.int64), list(range(len(names))), names
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(column.astype(str), errors="coerce").to_numpy(dtype=np.float64)
        unparsed = np.isnan(values) & ~column.isna().to_numpy()
        if unparsed.any():
            raise ValueError(
                f"{path}: obs[{key!r}] must be numeric or an ordered categorical (whose order "
                f"gives the time order); got dtype {column.dtype} with values such as "
                f"{list(map(str, column[unparsed].unique()[:5]))}"
            )
    if not np.isfinite(values).all():
        raise ValueError(
            f"{path}: obs[{key!r}] has {int((~np.isfinite(values)).sum())} missing or infinite "
            "times"
        )
    times = sorted(set(values.tolist()))
    return np.searchsorted(np.asarray(times), values), times, [f"{t:g}" for t in times]


class AnnDataMarginals(MarginalsDataModule):
    """Marginals from any ``.h5ad`` file: cells grouped by a time column of ``obs``.

    Real or simulated, as the file is. Reads the file with ``anndata``; the time of a
    cell comes from ``obs[time_key]``, numeric (its values are the times) or an ordered
    categorical (its categories in order are times ``0, 1, ..``); strings that all parse
    as numbers count as numeric. Each distinct time is one marginal, in increasing
    order. A cell's features are ``obsm[use_rep]`` (default ``"X_pca"``), its first
    ``num_pcs`` columns if given; with ``use_rep=None`` they are ``X`` (dense or sparse),
    reduced by PCA (scikit-learn) to ``num_pcs`` components if given. Labels are integer
    codes of ``obs[label_key]`` (categories in sorted order, listed in
    ``metadata["label_names"]``), or ``None``.

    Args:
        path: The ``.h5ad`` file.
        time_key: Column of ``obs`` holding each cell's time.
        use_rep: Key of ``obsm`` with the features, or ``None`` for ``X``.
        num_pcs: Keep this many columns of ``obsm[use_rep]``, or PCA components of ``X``.
        label_key: Column of ``obs`` with per-cell labels for evaluation, or ``None``.
        **kwargs: Arguments of :class:`MarginalsDataModule`.

    Shapes:
        - marginal ``k``: :math:`(N_k, D)`, ``D`` = ``num_pcs`` or the width of the
          representation.
    """

    def __init__(
        self,
        path: str,
        time_key: str,
        use_rep: str | None = "X_pca",
        num_pcs: int | None = None,
        label_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if num_pcs is not None:
            _check_int("num_pcs", num_pcs, 1)

    def load(self) -> Marginals:
        import anndata
        import pandas as pd
        import scipy.sparse

        hp = self.hparams
        path = Path(hp.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"AnnDataMarginals: no .h5ad file at path={str(path)!r}")
        try:
            adata = anndata.read_h5ad(path)
        except (OSError, KeyError, ValueError) as err:
            raise ValueError(
                f"AnnDataMarginals: {path} is not a readable .h5ad file ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'no detail'})"
            ) from None
        obs_keys = ", ".join(map(str, adata.obs.columns)) or "none"
        for name, key in (("time_key", hp.time_key), ("label_key", hp.label_key)):
            if key is not None and key not in adata.obs:
                raise ValueError(
                    f"{path}: {name}={key!r} is not a column of obs; available obs keys: {obs_keys}"
                )
        cell_time, times, names = _time_values(adata.obs[hp.time_key], hp.time_key, path)
        if len(times) < 2:
            raise ValueError(
                f"{path}: obs[{hp.time_key!r}] holds {len(times)} distinct time(s) {names}; a "
                "longitudinal data set needs at least two"
            )

        if hp.use_rep is not None:
            if hp.use_rep not in adata.obsm:
                raise ValueError(
                    f"{path}: use_rep={hp.use_rep!r} is not a key of obsm; available obsm keys: "
                    f"{', '.join(adata.obsm.keys()) or 'none'} (or use_rep=null for X)"
                )
            features = np.asarray(adata.obsm[hp.use_rep], dtype=np.float64)
            if hp.num_pcs is not None:
                if hp.num_pcs > features.shape[1]:
                    raise ValueError(
                        f"{path}: num_pcs={hp.num_pcs} exceeds the {features.shape[1]} columns "
                        f"of obsm[{hp.use_rep!r}]"
                    )
                features = features[:, : hp.num_pcs]
            source = f"obsm[{hp.use_rep!r}]"
        else:
            x = adata.X
            features = x.toarray() if scipy.sparse.issparse(x) else np.asarray(x)
            features = features.astype(np.float64)
            source = "X"
            if hp.num_pcs is not None:
                from sklearn.decomposition import PCA

                if hp.num_pcs > min(features.shape):
                    raise ValueError(
                        f"{path}: num_pcs={hp.num_pcs} exceeds min(cells, genes) = "
                        f"{min(features.shape)} of X"
                    )
                features = PCA(n_components=hp.num_pcs, svd_solver="full").fit_transform(features)
                source = f"PCA({hp.num_pcs}) of X"

        labels, label_names = None, []
        if hp.label_key is not None:
            column = adata.obs[hp.label_key]
            if column.isna().any():
                raise ValueError(
                    f"{path}: obs[{hp.label_key!r}] has {int(column.isna().sum())} missing labels"
                )
            category = pd.Categorical(column.astype(str))
            label_names = [str(c) for c in category.categories]
            codes = np.asarray(category.codes)
        points = [features[cell_time == k] for k in range(len(times))]
        if hp.label_key is not None:
            labels = [codes[cell_time == k] for k in range(len(times))]
        metadata = {
            "path": str(path.resolve()),
            "time_key": hp.time_key,
            "features": source,
            "label_key": hp.label_key,
            "label_names": label_names,
        }
        return Marginals(points, np.asarray(times), labels=labels, names=names, metadata=metadata)


def _natural_key(text: str) -> tuple:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


def _trials(array: np.ndarray, what: str) -> np.ndarray:
    """One day's trials as ``(trials, features)``: ``(trials, areas, time)`` is flattened."""
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{what} holds {array.dtype} values; real numbers are accepted")
    if array.ndim == 2:
        return array.astype(np.float64)
    if array.ndim == 3:
        return array.reshape(len(array), -1).astype(np.float64)
    raise ValueError(
        f"{what} has shape {array.shape}; a day must be (trials, features) or (trials, areas, time)"
    )


def _load_numbers(path: Path) -> Any:
    """``np.load`` without pickles; a file that is not plain numbers names itself."""
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(
            f"{path} is not a readable NumPy {path.suffix} file of numbers (corrupt, or it holds "
            f"Python objects, which are not loaded): {str(err).split('. ')[0]}"
        ) from None


def read_calcium(path: str | Path) -> tuple[list[np.ndarray], np.ndarray | None, list[str]]:
    """Read widefield calcium responses per training day.

    Accepted layouts:

    - ``.npy``: ``(days, trials, features)`` or ``(days, trials, areas, time)``;
    - ``.npz``: one array per day, ``(trials, features)`` or ``(trials, areas, time)``,
      days ordered by key in natural order (``day2`` before ``day10``); an optional
      entry ``stages`` holds one learning-stage label per day.

    ``(areas, time)`` is flattened per trial, area-major. Trials whose values are all
    NaN (padding of days with fewer trials) are dropped.

    Returns:
        ``(days, stages, names)``: one ``(trials_d, features)`` float64 array per day,
        the stages from the file (or ``None``) and a name per day.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: On another suffix, a wrong layout, or a trial with some (not all)
            values NaN or infinite.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"calcium file not found: path={str(path)!r}")
    stages = None
    if path.suffix == ".npy":
        array = _load_numbers(path)
        if array.ndim not in (3, 4):
            raise ValueError(
                f"{path} has shape {array.shape}; accepted are (days, trials, features) and "
                "(days, trials, areas, time)"
            )
        days = [_trials(day, f"{path} day {d}") for d, day in enumerate(array)]
        names = [f"day {d}" for d in range(len(days))]
    elif path.suffix == ".npz":
        with _load_numbers(path) as content:
            keys = sorted((k for k in content.files if k != CALCIUM_STAGE_KEY), key=_natural_key)
            try:
                days = [_trials(content[k], f"{path} entry {k!r}") for k in keys]
                if CALCIUM_STAGE_KEY in content.files:
                    stages = np.asarray(content[CALCIUM_STAGE_KEY]).reshape(-1)
            except (OSError, EOFError, ValueError) as err:
                if "allow_pickle" not in str(err) and not isinstance(err, (OSError, EOFError)):
                    raise
                raise ValueError(
                    f"{path} holds an entry that is not plain numbers (Python objects are not "
                    "loaded) or is corrupt"
                ) from None
        names = keys
    else:
        raise ValueError(
            f"calcium file {path} has suffix {path.suffix!r}; accepted are "
            f"{', '.join(CALCIUM_SUFFIXES)}"
        )

    kept = []
    for name, day in zip(names, days, strict=True):
        finite = np.isfinite(day)
        padding = ~finite.any(1)
        partial = int((~finite.all(1) & ~padding).sum())
        if partial:
            raise ValueError(
                f"{path}: {name} has {partial} trials with some NaN or infinite values; clean or "
                "drop them (trials that are entirely NaN count as padding and are dropped)"
            )
        if padding.any():
            log.info("read_calcium: %s: dropped %d all-NaN trials", name, int(padding.sum()))
        kept.append(day[~padding])
    return kept, stages, names


def _stage_segments(stages: np.ndarray | None) -> Tensor | None:
    return None if stages is None else torch.as_tensor(stages[:-1]).long()


def calcium_marginals(
    days: list[np.ndarray],
    stages: np.ndarray | None,
    names: list[str],
    times: Sequence[float] | None,
    metadata: dict[str, Any],
) -> Marginals:
    """Marginals of per-day trials: stage labels per trial, segment ``k -> k + 1`` = stage k."""
    if stages is not None:
        stages = np.asarray(_integer_labels(stages, "stages"))
        if stages.shape != (len(days),):
            raise ValueError(
                f"stages must hold one label per day ({len(days)}), got shape {stages.shape}"
            )
    if times is None:
        times = np.arange(len(days), dtype=np.float64)
    elif len(times) != len(days):
        raise ValueError(f"days must give one time per day ({len(days)}), got {len(times)}")
    labels = None
    if stages is not None:
        labels = [np.full(len(day), stage) for day, stage in zip(days, stages, strict=True)]
    return Marginals(
        points=days,
        times=np.asarray(times, dtype=np.float64),
        labels=labels,
        segment_labels=_stage_segments(stages),
        names=names,
        metadata=metadata,
    )


class CalciumMarginals(MarginalsDataModule):
    """Widefield calcium responses, one marginal per training day, read from a file.

    Real recordings as the user supplies them (none install from a package registry):
    post-stimulus responses of brain areas per trial, e.g. the FLUX widefield benchmark
    (41 areas x 11 frames = 451 features, 22 days of Go/No-Go learning). Reads the
    layouts of :func:`read_calcium`: a ``.npy`` ``(days, trials, features)`` or
    ``(days, trials, areas, time)``, or a ``.npz`` of one array per day. Marginal ``d``
    holds the trials of day ``d`` at time ``days[d]`` (default ``d``). Learning-stage
    labels per day (``stages``, or the file's ``stages`` entry) label every trial of the
    day, and segment ``d -> d + 1`` gets the stage of day ``d``.

    Args:
        path: The ``.npy`` or ``.npz`` file.
        stages: Integer learning stage of each day, overriding the file's.
        days: Time of each day (training-day numbers), strictly increasing.
        **kwargs: Arguments of :class:`MarginalsDataModule`.

    Shapes:
        - marginal ``d``: :math:`(trials_d, F)`, ``F = features`` or ``areas * time``.
    """

    def __init__(
        self,
        path: str,
        stages: list[int] | None = None,
        days: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if Path(path).suffix not in CALCIUM_SUFFIXES:
            raise ValueError(f"path must be a {' or '.join(CALCIUM_SUFFIXES)} file, got {path!r}")

    def load(self) -> Marginals:
        hp = self.hparams
        days, file_stages, names = read_calcium(hp.path)
        stages = file_stages if hp.stages is None else np.asarray(hp.stages)
        metadata = {
            "path": str(Path(hp.path).expanduser().resolve()),
            "stage_source": (
                "argument" if hp.stages is not None else "file" if file_stages is not None else None
            ),
        }
        return calcium_marginals(days, stages, names, hp.days, metadata)


def _alpha_kernel(lag: np.ndarray, peak: float) -> np.ndarray:
    """``(lag / peak) exp(1 - lag / peak)`` for positive lags, 0 before: peaks at 1."""
    x = np.maximum(lag, 0.0) / peak
    return x * np.exp(1.0 - x)


def check_calcium_parameters(
    num_days: int,
    trials_per_day: int,
    num_areas: int,
    num_frames: int,
    stage_starts: Sequence[int] | None,
    noise: float,
    frame_interval: float = 0.1,
) -> tuple[int, int]:
    """Validate the parameters of :func:`simulate_calcium`; return the stage starts."""
    _check_int("num_days", num_days, 3)
    _check_int("trials_per_day", trials_per_day, 1)
    _check_int("num_areas", num_areas, 2)
    _check_int("num_frames", num_frames, 2)
    _check_nonnegative("noise", noise)
    _check_positive("frame_interval", frame_interval)
    if stage_starts is None:
        return num_days // 3, 2 * num_days // 3
    if (
        len(stage_starts) != 2
        or not all(_is_int(s) for s in stage_starts)
        or not 0 < stage_starts[0] < stage_starts[1] < num_days
    ):
        raise ValueError(
            f"stage_starts must be two days 0 < s1 < s2 < num_days={num_days} (the first days of "
            f"the intermediate and late stages), got {stage_starts!r}"
        )
    return int(stage_starts[0]), int(stage_starts[1])


def simulate_calcium(
    num_days: int = 12,
    trials_per_day: int = 100,
    num_areas: int = 8,
    num_frames: int = 10,
    stage_starts: tuple[int, int] | None = None,
    noise: float = 0.1,
    frame_interval: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic post-stimulus responses of brain areas over days of learning.

    Not real data. Area ``a`` on day ``d`` responds to the stimulus with
    ``A[d, a] * kernel(tau - L[d, a])``, an alpha kernel peaking 0.2 s after its onset,
    sampled at ``tau = frame_interval * (1 .. num_frames)``. Trials scale the amplitude
    by a log-normal factor (sd 0.2), shift the latency by N(0, 0.02 s) and add frame
    noise of sd ``noise``. Days fall into three stages (early, intermediate, late,
    starting at days 0 and ``stage_starts``) with different day-to-day drifts of
    ``A`` and ``L``; the first half of the areas is "sensory", the rest "association":

    - early: sensory amplitudes grow (+0.15 / day), latencies stay;
    - intermediate: association amplitudes grow (+0.2 / day), sensory ones saturate,
      every latency shortens by 0.01 s / day;
    - late: amplitudes and latencies settle; association areas habituate (-0.05 / day).

    The drift from day ``d`` to ``d + 1`` follows the stage of day ``d``; every rate is
    scaled per area by a factor in U(0.5, 1.5).

    Returns:
        ``(responses, stages)``: float32 ``(days, trials, areas, frames)`` and the
        integer stage of each day (0, 1, 2).
    """
    stage_starts = check_calcium_parameters(
        num_days, trials_per_day, num_areas, num_frames, stage_starts, noise, frame_interval
    )
    rng = np.random.default_rng(seed)
    stages = np.searchsorted(np.asarray(stage_starts), np.arange(num_days), side="right")
    sensory = np.arange(num_areas) < num_areas // 2
    amp_rate = np.stack(
        [np.where(sensory, 0.15, 0.0), np.where(sensory, 0.0, 0.2), np.where(sensory, 0.0, -0.05)]
    )
    lat_rate = np.stack([np.zeros(num_areas), np.full(num_areas, -0.01), np.zeros(num_areas)])
    scale = rng.uniform(0.5, 1.5, size=(2, num_areas))
    amplitude = np.empty((num_days, num_areas))
    latency = np.empty((num_days, num_areas))
    amplitude[0] = rng.uniform(0.8, 1.2, num_areas) * np.where(sensory, 1.0, 0.3)
    latency[0] = np.where(sensory, 0.05, 0.15) + rng.uniform(0.0, 0.03, num_areas)
    for d in range(1, num_days):
        stage = stages[d - 1]
        amplitude[d] = amplitude[d - 1] + amp_rate[stage] * scale[0]
        latency[d] = np.maximum(latency[d - 1] + lat_rate[stage] * scale[1], 0.0)

    tau = frame_interval * np.arange(1, num_frames + 1)
    gain = np.exp(0.2 * rng.standard_normal((num_days, trials_per_day, num_areas)))
    jitter = 0.02 * rng.standard_normal((num_days, trials_per_day, num_areas))
    lag = tau - (latency[:, None, :] + jitter)[..., None]
    responses = (amplitude[:, None, :] * gain)[..., None] * _alpha_kernel(lag, 0.2)
    responses = responses + noise * rng.standard_normal(responses.shape)
    return responses.astype(np.float32), stages.astype(np.int64)


def write_synthetic_calcium(path: str | Path, **kwargs: Any) -> np.ndarray:
    """Write :func:`simulate_calcium` responses in a format :func:`read_calcium` reads.

    A ``.npy`` path gets the ``(days, trials, areas, frames)`` array; a ``.npz`` path one
    entry per day (``day00``, ``day01``, ..) and the ``stages`` entry.

    Args:
        path: Where to write, ending in ``.npy`` or ``.npz``.
        **kwargs: Arguments of :func:`simulate_calcium`.

    Returns:
        The stage of each day (not stored in a ``.npy`` file).
    """
    path = Path(path)
    if path.suffix not in CALCIUM_SUFFIXES:
        raise ValueError(f"path must end in {' or '.join(CALCIUM_SUFFIXES)}, got {str(path)!r}")
    responses, stages = simulate_calcium(**kwargs)
    if path.suffix == ".npy":
        np.save(path, responses)
    else:
        width = len(str(len(responses) - 1))
        days = {f"day{d:0{max(width, 2)}d}": day for d, day in enumerate(responses)}
        np.savez(path, **days, **{CALCIUM_STAGE_KEY: stages})
    return stages


class SyntheticCalcium(MarginalsDataModule):
    """A synthetic stand-in for widefield calcium imaging over days of learning.

    Simulated, not real data (``metadata["synthetic"]`` is true): no calcium recordings
    install from a package registry, so this module lets a longitudinal model run end to
    end on data shaped like :class:`CalciumMarginals`'. Responses come from
    :func:`simulate_calcium`: ``trials_per_day`` trials per day of ``num_areas`` areas x
    ``num_frames`` post-stimulus frames, whose amplitudes and latencies drift with
    learning through three stages (early, intermediate, late) with a different drift in
    each. Marginal ``d`` holds day ``d``'s trials (flattened area-major to
    ``num_areas * num_frames`` features) at time ``d``; per-trial labels and segment
    ``d -> d + 1`` carry the stage of day ``d``.

    Args:
        num_days: Days, i.e. marginals.
        trials_per_day: Trials per day.
        num_areas: Brain areas.
        num_frames: Post-stimulus frames per area.
        stage_starts: First days of the intermediate and late stages; ``None`` splits the
            days in thirds.
        noise: Frame noise standard deviation.
        data_seed: Seed of the simulation; ``None`` uses ``seed``.
        **kwargs: Arguments of :class:`MarginalsDataModule`.

    Shapes:
        - marginal ``d``: :math:`(T, A F)`, ``T = trials_per_day``, ``A = num_areas``,
          ``F = num_frames`` (80-D by default).
    """

    def __init__(
        self,
        num_days: int = 12,
        trials_per_day: int = 100,
        num_areas: int = 8,
        num_frames: int = 10,
        stage_starts: tuple[int, int] | None = None,
        noise: float = 0.1,
        data_seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if data_seed is not None:
            _check_int("data_seed", data_seed, 0)
        check_calcium_parameters(
            num_days, trials_per_day, num_areas, num_frames, stage_starts, noise
        )

    def load(self) -> Marginals:
        hp = self.hparams
        seed = hp.seed if hp.data_seed is None else hp.data_seed
        responses, stages = simulate_calcium(
            hp.num_days,
            hp.trials_per_day,
            hp.num_areas,
            hp.num_frames,
            hp.stage_starts,
            hp.noise,
            seed=seed,
        )
        days = [_trials(day, f"day {d}") for d, day in enumerate(responses)]
        metadata = {
            "synthetic": True,
            "source": "simulated widefield calcium stand-in (simulate_calcium), not recordings",
            "stage_names": list(CALCIUM_STAGE_NAMES),
            "shape": list(responses.shape),
        }
        names = [f"day {d}" for d in range(hp.num_days)]
        return calcium_marginals(days, stages, names, None, metadata)
