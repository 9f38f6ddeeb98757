"""Distances between point clouds and scores of regime assignments.

Pure functions shared by every longitudinal model: exact Wasserstein distances with POT,
a kernel maximum mean discrepancy, and the segment-level agreement of predicted regimes
with the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import ot
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from torch import Tensor

DEFAULT_BANDWIDTH_SCALES = (0.5, 1.0, 2.0)


def _as_points(x: Tensor | np.ndarray, name: str) -> np.ndarray:
    array = x.detach().cpu().double().numpy() if isinstance(x, Tensor) else np.asarray(x, float)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"{name} must be a non-empty (N, D) point set, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _pair(x: Tensor | np.ndarray, y: Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_points(x, "x"), _as_points(y, "y")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got {a.shape[1]} and {b.shape[1]}")
    return a, b


def wasserstein(x: Tensor | np.ndarray, y: Tensor | np.ndarray, p: int = 1) -> float:
    """Exact ``p``-Wasserstein distance between two empirical measures of uniform weights.

    .. math::
        W_p(\\mu, \\nu) = \\Big(\\min_{\\pi \\in \\Pi(\\mu, \\nu)}
        \\sum_{ij} \\pi_{ij} \\|x_i - y_j\\|_2^p\\Big)^{1/p}

    solved as a linear program by POT's ``ot.emd2`` on the Euclidean cost (``p=1``) or
    the squared Euclidean cost (``p=2``, then the square root). Computed in float64.

    Args:
        x: Points ``(N, D)``.
        y: Points ``(M, D)``.
        p: 1 or 2.

    Returns:
        The distance, a Python float.
    """
    if p not in (1, 2):
        raise ValueError(f"p must be 1 or 2, got {p!r}")
    a, b = _pair(x, y)
    cost = ot.dist(a, b, metric="sqeuclidean")
    if p == 1:
        cost = np.sqrt(np.maximum(cost, 0.0))
    weights_a = np.full(len(a), 1.0 / len(a))
    weights_b = np.full(len(b), 1.0 / len(b))
    value = float(ot.emd2(weights_a, weights_b, cost, numItermax=10_000_000))
    return value if p == 1 else float(np.sqrt(max(value, 0.0)))


def median_bandwidths(
    y: Tensor | np.ndarray, scales: Sequence[float] = DEFAULT_BANDWIDTH_SCALES
) -> list[float]:
    """RBF bandwidths from the median heuristic: ``scales`` times the median distance in ``y``.

    The median runs over the distances between distinct points of ``y``; a set whose points
    all coincide gets bandwidth 1.
    """
    b = _as_points(y, "y")
    distances = np.sqrt(np.maximum(ot.dist(b, b, metric="sqeuclidean"), 0.0))
    off_diagonal = distances[~np.eye(len(b), dtype=bool)]
    median = float(np.median(off_diagonal)) if off_diagonal.size else 0.0
    median = median if median > 0 else 1.0
    return [float(s) * median for s in scales]


def mmd(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    bandwidths: Sequence[float] | None = None,
    squared: bool = False,
) -> float:
    """Maximum mean discrepancy with a sum of RBF kernels (the biased V-statistic).

    .. math::
        \\mathrm{MMD}^2 = \\overline{k(x, x')} + \\overline{k(y, y')} - 2\\,\\overline{k(x, y)},
        \\quad k(a, b) = \\frac{1}{H} \\sum_h \\exp\\!\\Big(-\\frac{\\|a - b\\|^2}{2 h^2}\\Big)

    where the bars are means over all pairs (diagonals included), so identical sets give
    exactly 0.

    Args:
        x: Points ``(N, D)``.
        y: Points ``(M, D)``, the reference set.
        bandwidths: Kernel bandwidths ``h``; ``None`` uses :func:`median_bandwidths` of
            ``y`` (0.5, 1 and 2 times its median pairwise distance), so that every model
            scored against the same ``y`` is scored with the same kernel.
        squared: Return ``MMD^2`` instead of ``MMD``.

    Returns:
        ``MMD`` (or ``MMD^2``), a Python float.
    """
    a, b = _pair(x, y)
    widths = median_bandwidths(b) if bandwidths is None else [float(h) for h in bandwidths]
    if not widths or any(not (h > 0 and np.isfinite(h)) for h in widths):
        raise ValueError(f"bandwidths must be positive and finite, got {bandwidths}")

    def kernel(u: np.ndarray, v: np.ndarray) -> float:
        squared_distances = np.maximum(ot.dist(u, v, metric="sqeuclidean"), 0.0)
        return float(np.mean([np.exp(-squared_distances / (2 * h * h)).mean() for h in widths]))

    value = max(kernel(a, a) + kernel(b, b) - 2 * kernel(a, b), 0.0)
    return value if squared else float(np.sqrt(value))


def segment_scores(
    predicted: Tensor | Sequence[int], true: Tensor | Sequence[int]
) -> dict[str, float]:
    """Agreement of predicted regimes per segment with the true ones, up to relabelling.

    Args:
        predicted: Predicted regime (expert index) of each adjacent-marginal segment.
        true: Ground-truth regime of each segment.

    Returns:
        ``{"seg_ari": adjusted Rand index, "seg_nmi": normalised mutual information}``
        (scikit-learn's, NMI with arithmetic averaging).
    """
    pred = torch.as_tensor(predicted).flatten().tolist()
    truth = torch.as_tensor(true).flatten().tolist()
    if len(pred) != len(truth) or not pred:
        raise ValueError(
            f"predicted and true must be non-empty and of equal length, got {len(pred)} and "
            f"{len(truth)} segments"
        )
    return {
        "seg_ari": float(adjusted_rand_score(truth, pred)),
        "seg_nmi": float(normalized_mutual_info_score(truth, pred)),
    }
