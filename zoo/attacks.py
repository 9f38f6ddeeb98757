"""FGSM and PGD attacks with explicit units.

``eps`` and ``step_size`` are in pixel units: the attacked images live in ``clip`` (by
default ``[0, 1]``), whatever normalisation the model applies inside. For a model that
expects normalised inputs, pass ``mean`` and ``std``: the attack then perturbs pixels and
normalises them before calling the model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["linf", "l2"]
NORMS = ("linf", "l2")


def _check(x: Tensor, y: Tensor, eps: float, norm: str, clip: tuple[float, float] | None) -> None:
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {NORMS}")
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(
            f"expected images (B, ...) and integer labels (B,), got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite non-negative number of pixel units, got {eps}")
    width = (clip[1] - clip[0]) if clip is not None else math.inf
    limit = width if norm == "linf" else width * math.sqrt(x[0].numel())
    if eps > limit:
        raise ValueError(
            f"eps={eps} exceeds the largest {norm} distance inside the pixel range {clip} "
            f"({limit:.4g}); eps is in pixel units, e.g. 8/255 for L-inf"
        )


def _as_logits_model(
    model: nn.Module, mean: Sequence[float] | None, std: Sequence[float] | None
) -> Callable[[Tensor], Tensor]:
    if mean is None and std is None:
        return model
    mean_t = torch.as_tensor(mean if mean is not None else [0.0])
    std_t = torch.as_tensor(std if std is not None else [1.0])

    def normalised(x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        m = mean_t.to(x).view(shape)
        s = std_t.to(x).view(shape)
        return model((x - m) / s)

    return normalised


def _loss_gradient(forward: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    logits = forward(x)
    if logits.ndim != 2 or logits.shape[0] != len(y):
        raise ValueError(
            f"the model must return logits (B, num_classes); got shape {tuple(logits.shape)} "
            f"for {len(y)} images"
        )
    if int(y.max()) >= logits.shape[1] or int(y.min()) < 0:
        raise ValueError(
            f"labels range over [{int(y.min())}, {int(y.max())}] but the model returns "
            f"{logits.shape[1]} logits; the model's outputs are not logits of the data's classes"
        )
    loss = F.cross_entropy(logits, y, reduction="sum")  # per-image gradients
    (grad,) = torch.autograd.grad(loss, x)
    return grad


def _per_image_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.ndim - 1)))


def _ascend(grad: Tensor, step: float, norm: str) -> Tensor:
    if norm == "linf":
        return step * grad.sign()
    return step * grad / (_per_image_norm(grad) + 1e-10)


def _project(delta: Tensor, eps: float, norm: str) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = (eps / (_per_image_norm(delta) + 1e-12)).clamp(max=1.0)
    return delta * factor


def _clip(x: Tensor, clip: tuple[float, float] | None) -> Tensor:
    return x if clip is None else x.clamp(*clip)


class _EvalMode:
    """Puts a module in eval mode and restores its (and its children's) modes after."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes = [m.training for m in model.modules()]

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc) -> None:
        for module, mode in zip(self.model.modules(), self.modes, strict=True):
            module.training = mode


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    norm: Norm = "linf",
    clip: tuple[float, float] | None = (0.0, 1.0),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Tensor:
    """One step of size ``eps`` along the loss gradient (its sign for L-inf).

    Args:
        model: Maps images to logits.
        x: Clean images in pixel units.
        y: Integer labels.
        eps: Perturbation size in pixel units (L-inf or L2 of each image's perturbation).
        norm: ``linf`` or ``l2``.
        clip: Valid pixel range, or ``None`` for no clipping.
        mean: Per-channel normalisation the model expects, if it does not normalise itself.
        std: Per-channel standard deviation, likewise.

    Returns:
        The adversarial images, detached, in ``clip``.
    """
    _check(x, y, eps, norm, clip)
    forward = _as_logits_model(model, mean, std)
    with _EvalMode(model):
        grad = _loss_gradient(forward, x, y)
    return _clip(x + _ascend(grad, eps, norm), clip).detach()


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    step_size: float | None = None,
    steps: int = 10,
    norm: Norm = "linf",
    random_start: bool = True,
    clip: tuple[float, float] | None = (0.0, 1.0),
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient ascent of the cross-entropy inside the ``eps`` ball (Madry et al., 2018).

    Each step moves by ``step_size`` along the gradient's sign (L-inf) or its direction
    (L2), projects the perturbation back onto the ball and clips to the pixel range.

    Args:
        model: Maps images to logits; put in eval mode during the attack, restored after.
        x: Clean images in pixel units.
        y: Integer labels.
        eps: Radius of the ball in pixel units.
        step_size: Step in pixel units; default ``2.5 * eps / steps``.
        steps: Number of gradient steps.
        norm: ``linf`` or ``l2``.
        random_start: Start from a uniform point in the ball instead of ``x``.
        clip: Valid pixel range, or ``None`` for no clipping.
        mean: Per-channel normalisation the model expects, if it does not normalise itself.
        std: Per-channel standard deviation, likewise.
        generator: Random generator for the start point.

    Returns:
        The adversarial images, detached, in ``clip`` and within ``eps`` of ``x``.
    """
    _check(x, y, eps, norm, clip)
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    if not math.isfinite(step_size) or step_size <= 0:
        raise ValueError(f"step_size must be a positive number of pixel units, got {step_size}")
    forward = _as_logits_model(model, mean, std)
    x = x.detach()
    delta = torch.zeros_like(x)
    if random_start and eps > 0:
        delta = _random_in_ball(x, eps, norm, generator)
    adv = _clip(x + delta, clip)
    with _EvalMode(model):
        for _ in range(steps):
            grad = _loss_gradient(forward, adv, y)
            adv = adv + _ascend(grad, step_size, norm)
            adv = _clip(x + _project(adv - x, eps, norm), clip).detach()
    return adv


def _random_in_ball(x: Tensor, eps: float, norm: str, generator: torch.Generator | None) -> Tensor:
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return (2 * u - 1) * eps
    direction = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    direction = direction / _per_image_norm(direction)
    radius = torch.rand(len(x), generator=generator, device=x.device, dtype=x.dtype)
    radius = radius ** (1.0 / x[0].numel())  # uniform in the ball's volume
    return direction * (eps * radius).view(-1, *([1] * (x.ndim - 1)))
