"""Fixed-point solver for integral equations of the second kind.

From "Learning integral operators via neural integral equations" (Zappala et al., Nature
Machine Intelligence, 2024).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

log = logging.getLogger(__name__)


class IntegralSolver(nn.Module):
    """Solves ``y = f + I[y]`` by smoothed fixed-point iteration.

    Starting from ``y_0 = f`` (or a given initial guess), every iteration computes

        y_{k+1} = alpha * y_k + (1 - alpha) * (f + I[y_k]),

    for ``iterations`` steps, or fewer once the relative residual
    ``||f + I[y_k] - y_k|| / ||y_k||`` falls below ``tol``. ``alpha = 0`` is plain Picard
    iteration; the iteration converges whenever ``I`` is a contraction. A residual that
    grows warns with the iteration and its value; one that overflows raises.

    Args:
        alpha: Smoothing factor in [0, 1): the weight of the previous iterate.
        iterations: Largest number of iterations; a fixed count when ``tol`` is 0.
        tol: Relative residual at which to stop early (0: never).
        grad: ``all`` back-propagates through every iteration; ``last`` runs all but the
            last iteration without gradients, so only the last application of ``I``
            (and ``f``) gets them, at the memory cost of one iteration.
        divergence_factor: Warn when the residual grows by more than this factor from
            its smallest value: the operator is not contracting.

    Shapes:
        f: ``(B, ...)``; output: the same shape.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        iterations: int = 3,
        tol: float = 0.0,
        grad: Literal["all", "last"] = "all",
        divergence_factor: float = 10.0,
    ) -> None:
        super().__init__()
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        if iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations}")
        if tol < 0:
            raise ValueError(f"tol must be non-negative, got {tol}")
        if grad not in ("all", "last"):
            raise ValueError(f"grad must be 'all' or 'last', got {grad!r}")
        self.alpha, self.iterations, self.tol, self.grad = alpha, iterations, tol, grad
        self.divergence_factor = divergence_factor
        self.residuals: list[float] = []  # relative, one per iteration of the last call
        self._absolute: list[float] = []

    def forward(
        self, f: Tensor, integral: Callable[[Tensor], Tensor], y0: Tensor | None = None
    ) -> Tensor:
        y = f if y0 is None else y0
        self.residuals, self._absolute = [], []
        for k in range(self.iterations):
            last = k == self.iterations - 1
            with torch.set_grad_enabled(torch.is_grad_enabled() and (self.grad == "all" or last)):
                if self.grad == "last" and last:
                    y = y.detach()
                update = f + integral(y)
                residual = self._residual(update, y, k)
                y = self.alpha * y + (1 - self.alpha) * update
            if self.tol and residual < self.tol:
                log.debug("integral solver converged after %d iterations", k + 1)
                break
        return y

    def _residual(self, update: Tensor, y: Tensor, k: int) -> float:
        """Relative residual of iteration ``k``; warns when the absolute residual grows."""
        with torch.no_grad():
            absolute = float((update - y).norm())
            residual = absolute / max(float(y.norm()), 1e-12)
        if not math.isfinite(absolute):
            raise FloatingPointError(
                f"integral solver diverged: residual {absolute} at iteration {k + 1}; lower the "
                "learning rate, raise alpha, or scale the operator down"
            )
        if self._absolute and absolute > self.divergence_factor * min(self._absolute):
            warnings.warn(
                f"integral solver is diverging: residual {absolute:.3g} at iteration {k + 1} "
                f"after {min(self._absolute):.3g}; the operator is not a contraction",
                RuntimeWarning,
                stacklevel=3,
            )
        self._absolute.append(absolute)
        self.residuals.append(residual)
        return residual

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, iterations={self.iterations}, tol={self.tol}, grad={self.grad}"
