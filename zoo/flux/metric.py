"""Data-dependent diagonal Riemannian metrics: small on the data, large away from it.

Both metrics are fitted once on a point cloud (for FLUX, the pooled training marginals)
and then map points ``(N, D)`` to the diagonal of ``G(x)``, ``(N, D)``. Their fitted state
lives in buffers, so a checkpoint restores them without refitting. Geodesics of such a
metric avoid regions without data. Both follow "Metric Flow Matching for Smooth
Interpolations on the Data Manifold" (Kapusniak et al., NeurIPS 2024); LAND is from
"A Locally Adaptive Normal Distribution" (Arvanitidis et al., NeurIPS 2016).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import Tensor, nn

log = logging.getLogger(__name__)

METRICS = ("land", "rbf", "none")


def _check_positive(name: str, value: float) -> None:
    if not (value > 0 and np.isfinite(value)):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")


def _check_points(points: Tensor, where: str) -> Tensor:
    points = torch.as_tensor(points)
    if points.ndim != 2 or len(points) < 2:
        raise ValueError(f"{where} needs a point set (N >= 2, D), got shape {tuple(points.shape)}")
    if not torch.isfinite(points).all():
        raise ValueError(f"{where}: the points contain NaN or infinite values")
    return points.float()


class DiagonalMetric(nn.Module):
    """Base of the fitted metrics: buffers resized from checkpoints, a ``fitted`` flag.

    Subclasses name their fitted buffers in :attr:`fitted_buffers` and implement
    :meth:`fit` and :meth:`diagonal`.
    """

    fitted_buffers: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_load_state_dict_pre_hook(self._resize_buffers)

    def _resize_buffers(self, module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
        """Fitted buffers take the shape the data gave them: read it from the checkpoint."""
        for name in self.fitted_buffers:
            value = state_dict.get(prefix + name)
            current = getattr(self, name)
            if value is not None and value.shape != current.shape:
                setattr(self, name, torch.empty_like(value, device=current.device))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def fit(self, points: Tensor) -> DiagonalMetric:
        raise NotImplementedError

    def diagonal(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if not self.is_fitted:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(points) first")
        return self.diagonal(x)


class RBFMetric(DiagonalMetric):
    """``G(x) = (h(x) + eps)^(-alpha) I`` with ``h`` a radial-basis network fitted to 1 on the data.

    .. math::
        h(x) = \\sum_{k=1}^{K} \\omega_k \\exp\\!\\big(-\\tfrac{\\lambda_k}{2}
        \\|x - c_k\\|^2\\big), \\qquad \\lambda_k = \\frac{1}{2 (\\kappa \\sigma_k)^2}

    Fitting: the centres ``c_k`` are scikit-learn's KMeans centres of the points (at most
    one per point); ``sigma_k`` is the root-mean-square distance of cluster ``k``'s points
    to its centre, clamped at 1e-6 (a cluster of one point has none); the weights start at
    1 and are trained with Adam to minimise ``mean (1 - h(x))^2`` over the points, clamped
    at 1e-4 after every step.

    Args:
        num_centers: Number of KMeans centres ``K``.
        kappa: Width factor of the kernels.
        alpha: Exponent of ``G``.
        eps: Floor added to ``h`` (``G`` is at most ``eps^-alpha``).
        epochs: Passes over the points when training the weights.
        lr: Adam learning rate of the weights.
        batch_size: Points per weight update.
        seed: Seed of KMeans and of the shuffling.

    Shapes:
        points: ``(N, D)``; x: ``(B, D)``; output: ``(B, D)``.
    """

    fitted_buffers = ("centers", "lambdas", "weights")

    def __init__(
        self,
        num_centers: int = 100,
        kappa: float = 1.0,
        alpha: float = 1.0,
        eps: float = 1e-3,
        epochs: int = 50,
        lr: float = 1e-2,
        batch_size: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if num_centers < 1:
            raise ValueError(f"num_centers must be a positive integer, got {num_centers}")
        for name, value in (("kappa", kappa), ("eps", eps), ("lr", lr)):
            _check_positive(name, value)
        if alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {alpha}")
        if epochs < 1 or batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive, got {epochs}, {batch_size}")
        self.num_centers, self.kappa, self.alpha, self.eps = num_centers, kappa, alpha, eps
        self.epochs, self.lr, self.batch_size, self.seed = epochs, lr, batch_size, seed
        self.register_buffer("centers", torch.zeros(0, 0))
        self.register_buffer("lambdas", torch.zeros(0))
        self.register_buffer("weights", torch.zeros(0))

    def h(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        """The radial-basis network ``h(x)`` ``(B,)``."""
        weights = self.weights if weights is None else weights
        squared = torch.cdist(x, self.centers.to(x)).square()
        return (weights.to(x) * torch.exp(-0.5 * self.lambdas.to(x) * squared)).sum(dim=-1)

    @torch.no_grad()
    def fit(self, points: Tensor) -> RBFMetric:
        points = _check_points(points, "RBFMetric.fit")
        device = self.fitted.device
        data = points.cpu().double().numpy()
        k = min(self.num_centers, len(np.unique(data, axis=0)))
        kmeans = KMeans(n_clusters=k, n_init=3, random_state=self.seed).fit(data)
        centers = torch.as_tensor(kmeans.cluster_centers_, dtype=torch.float32)
        labels = torch.as_tensor(kmeans.labels_)
        x = points.cpu()
        sigmas = torch.stack(
            [(x[labels == j] - centers[j]).square().sum(dim=-1).mean().sqrt() for j in range(k)]
        ).clamp_min(1e-6)
        self.centers = centers.to(device)
        self.lambdas = (0.5 / (self.kappa * sigmas).square()).to(device)

        weights = torch.ones(k, device=device, requires_grad=True)
        optimizer = torch.optim.Adam([weights], lr=self.lr)
        generator = torch.Generator().manual_seed(self.seed)
        x = points.to(device)
        for _ in range(self.epochs):
            for rows in torch.randperm(len(x), generator=generator).split(self.batch_size):
                with torch.enable_grad():
                    loss = (1 - self.h(x[rows.to(device)], weights)).square().mean()
                    optimizer.zero_grad()
                    loss.backward()
                optimizer.step()
                weights.clamp_(min=1e-4)
        self.weights = weights.detach().clone()
        self.fitted.fill_(True)
        final = (1 - self.h(x)).square().mean()
        log.info(
            "RBF metric: %d centres fitted on %d points, mean (1 - h)^2 = %.4f",
            k,
            len(x),
            float(final),
        )
        return self

    def diagonal(self, x: Tensor) -> Tensor:
        g = (self.h(x) + self.eps).pow(-self.alpha)
        return g[:, None].expand_as(x)

    def extra_repr(self) -> str:
        return (
            f"num_centers={self.num_centers}, kappa={self.kappa}, alpha={self.alpha}, "
            f"eps={self.eps}, fitted={self.is_fitted}"
        )


class LANDMetric(DiagonalMetric):
    """The LAND metric: the inverse of a local diagonal covariance of the data, to a power.

    .. math::
        [G^{-1}(x)]_{dd} = \\sum_i w_i(x)\\,(x_{i,d} - x_d)^2 + \\rho, \\qquad
        w_i(x) = \\exp\\!\\Big(-\\frac{\\|x - x_i\\|^2}{2\\gamma^2}\\Big), \\qquad
        G_{dd}(x) = [G^{-1}(x)]_{dd}^{-\\alpha}

    so ``alpha = 1`` is the metric of the LAND paper, ``alpha = 0`` the Euclidean one, and
    far from the data ``G -> rho^-alpha``. The weights are not normalised: few neighbours
    mean a small local covariance, hence a large ``G``. ``x_i`` are the fitted points (a
    seeded random subset of ``max_points`` of them when there are more).

    Args:
        gamma: Kernel bandwidth, in the units of the points.
        rho: Floor of the local covariance.
        alpha: Exponent applied to ``G^{-1}`` (see above).
        max_points: Reference points kept.
        seed: Seed of the subset.

    Shapes:
        points: ``(N, D)``; x: ``(B, D)``; output: ``(B, D)``.
    """

    fitted_buffers = ("points",)

    def __init__(
        self,
        gamma: float = 0.125,
        rho: float = 1e-3,
        alpha: float = 1.0,
        max_points: int = 2000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check_positive("gamma", gamma)
        _check_positive("rho", rho)
        if alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {alpha}")
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        self.gamma, self.rho, self.alpha = gamma, rho, alpha
        self.max_points, self.seed = max_points, seed
        self.register_buffer("points", torch.zeros(0, 0))

    @torch.no_grad()
    def fit(self, points: Tensor) -> LANDMetric:
        points = _check_points(points, "LANDMetric.fit")
        if len(points) > self.max_points:
            generator = torch.Generator().manual_seed(self.seed)
            rows = torch.randperm(len(points), generator=generator)[: self.max_points]
            points = points[rows.sort().values.to(points.device)]
        self.points = points.to(self.fitted.device).clone()
        self.fitted.fill_(True)
        local = self.local_covariance(self.points[:500]) - self.rho
        flat = float((local.mean(dim=-1) < self.rho).float().mean())
        if flat > 0.5:
            spacing = torch.cdist(self.points[:500], self.points).topk(2, largest=False).values
            warnings.warn(
                f"LANDMetric(gamma={self.gamma}): at {flat:.0%} of the data the local covariance "
                f"is below rho={self.rho}, so G is nearly constant; gamma is small for these "
                f"data (median nearest-neighbour distance {float(spacing[:, 1].median()):.3g})",
                UserWarning,
                stacklevel=2,
            )
        log.info("LAND metric: %d reference points", len(self.points))
        return self

    def local_covariance(self, x: Tensor) -> Tensor:
        """``G^{-1}(x)``'s diagonal ``(B, D)``, the floor ``rho`` included."""
        centre = self.points.mean(dim=0).to(x)  # centred, to keep the expansion below exact
        reference, x = self.points.to(x) - centre, x - centre
        weights = torch.exp(-torch.cdist(x, reference).square() / (2 * self.gamma**2))
        # sum_i w_i (x_i - x)^2 = W x_i^2 - 2 x (W x_i) + x^2 sum_i w_i, without (B, N, D)
        spread = (
            weights @ reference.square()
            - 2 * x * (weights @ reference)
            + x.square() * weights.sum(dim=-1, keepdim=True)
        )
        return spread.clamp_min(0) + self.rho

    def diagonal(self, x: Tensor) -> Tensor:
        return self.local_covariance(x).pow(-self.alpha)

    def extra_repr(self) -> str:
        return (
            f"gamma={self.gamma}, rho={self.rho}, alpha={self.alpha}, "
            f"max_points={self.max_points}, fitted={self.is_fitted}"
        )


def build_metric(name: str, options: dict[str, Any] | None = None) -> DiagonalMetric | None:
    """The metric called ``name`` (``land``, ``rbf``; ``none`` gives ``None``, Euclidean)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; expected one of {METRICS}")
    options = dict(options or {})
    if name == "none":
        if options:
            raise ValueError(f"metric 'none' takes no options, got {sorted(options)}")
        return None
    cls = LANDMetric if name == "land" else RBFMetric
    try:
        return cls(**options)
    except TypeError as err:
        raise ValueError(f"bad options for metric {name!r}: {err}") from err
