"""Minibatch couplings of two independent samples: exact optimal transport or none.

The plan is POT's exact solution (``ot.emd``) on the squared Euclidean cost, not
normalised: rescaling the cost of one minibatch would change nothing in the plan but its
numerical tolerance, and minibatches of different spread would be treated alike.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import ot
import torch
from torch import Tensor

CouplingMethod = Literal["exact", "independent"]
COUPLING_METHODS = ("exact", "independent")


def ot_plan(x0: Tensor, x1: Tensor) -> Tensor:
    """Exact optimal transport plan between two uniform empirical measures.

    .. math::
        \\pi^\\star = \\arg\\min_{\\pi \\in \\Pi(1/N, 1/M)} \\sum_{ij} \\pi_{ij} \\|x_{0,i} -
        x_{1,j}\\|^2

    Shapes:
        x0: ``(N, D)``; x1: ``(M, D)``; output: ``(N, M)`` float64, summing to 1.
    """
    if x0.ndim != 2 or x1.ndim != 2 or x0.shape[1] != x1.shape[1]:
        raise ValueError(
            f"x0 and x1 must be (N, D) and (M, D) point sets, got {tuple(x0.shape)} and "
            f"{tuple(x1.shape)}"
        )
    a = x0.detach().cpu().double()
    b = x1.detach().cpu().double()
    cost = torch.cdist(a, b).square().numpy()
    weights_a = np.full(len(a), 1.0 / len(a))
    weights_b = np.full(len(b), 1.0 / len(b))
    plan = ot.emd(weights_a, weights_b, cost, numItermax=10_000_000)
    return torch.from_numpy(np.ascontiguousarray(plan))


def ot_coupling(
    x0: Tensor,
    x1: Tensor,
    method: CouplingMethod = "exact",
    replace: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Indices ``(i, j)`` that pair ``x0[i]`` with ``x1[j]``.

    ``exact``: ``N`` pairs drawn from the exact plan :func:`ot_plan` with replacement (each
    pair with probability ``pi_ij``), or, with ``replace=False`` and ``N == M``, the
    permutation the plan is (an exact plan between two uniform sets of equal size is a
    permutation matrix divided by ``N``, a vertex of the transport polytope).
    ``independent``: the samples are paired as given, ``i = j = 0..N-1`` (they are drawn
    independently already).

    Args:
        x0: Points ``(N, D)``.
        x1: Points ``(M, D)``.
        method: ``exact`` or ``independent``.
        replace: Draw pairs from the plan with replacement.
        generator: Random generator of the draws (default: torch's global one).

    Returns:
        ``(i, j)``, two long tensors of length ``N`` on ``x0``'s device.
    """
    if method not in COUPLING_METHODS:
        raise ValueError(f"unknown coupling method {method!r}; expected one of {COUPLING_METHODS}")
    n, m = len(x0), len(x1)
    device = x0.device
    if method == "independent":
        if n != m:
            raise ValueError(f"independent coupling pairs samples of equal size, got {n} and {m}")
        index = torch.arange(n, device=device)
        return index, index.clone()
    plan = ot_plan(x0, x1)
    if not replace:
        if n != m:
            raise ValueError(
                f"replace=False returns the permutation of the plan, which needs samples of "
                f"equal size; got {n} and {m} (use replace=True)"
            )
        j = plan.argmax(dim=1)
        if len(torch.unique(j)) != n:  # a degenerate cost can give a plan that splits mass
            raise RuntimeError("the exact plan is not a permutation; use replace=True")
        return torch.arange(n, device=device), j.to(device)
    flat = plan.flatten().clamp_min(0)
    draws = torch.multinomial(flat / flat.sum(), n, replacement=True, generator=generator)
    return (draws // m).to(device), (draws % m).to(device)
