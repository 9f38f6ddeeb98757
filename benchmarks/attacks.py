"""Time the zoo's PGD against torchattacks, and its FFT circular convolution against Conv2d.

PGD: ``zoo.attacks.pgd`` (L-inf, no random start) and ``torchattacks.PGD`` (no random
start) attack the same batch of ``MNISTDigits`` training images, in [0, 1], with the same
``eps``, step size and number of steps, on the bundled ``small_cnn_mnist.digits``: an
:class:`~zoo.classifiers.ImageClassifier` over a :class:`~zoo.nn.SmallCNN` backbone that
normalises its own input, so that both attacks work in pixel units. Both take the sign of
the same gradient (ours of the summed cross-entropy, torchattacks' of its mean), so their
adversarial batches must agree; the script reports the largest difference and the ratio of
images per second, ours over torchattacks (the target is a ratio of at least 1).

Circular convolution: :class:`~zoo.nn.layers.CircularConv2d`, a product of spectra, against
an ``nn.Conv2d`` with an image-sized kernel and ``padding="same", padding_mode="circular"``
built from the same weights. ``Conv2d`` cross-correlates, so its kernel is the FFT layer's
kernel flipped and rolled (see :func:`equivalent_conv2d`). Each case times a forward and a
backward pass (gradients for the input and the weights) of a batch of random images; the
outputs and all gradients must agree. The table gives the speed-up, Conv2d time over FFT
time, for several image sizes and channel counts.

Every measurement takes turns with its rival ``--rounds`` times (ours first in odd rounds,
last in even ones), after one untimed warm-up call of each, so that a load on the machine
that comes and goes slows both alike; the tables give the median and the fastest turn, in
wall-clock seconds, and the median CPU seconds of this process. The script exits with
status 1 when the adversarial batches differ by more than ``--atol`` or a convolution
output or gradient differs from its Conv2d twin by more than ``--rtol`` of its largest
value; a speed below target is reported as FAIL but does not change the status.

Usage::

    python benchmarks/attacks.py --threads 2 --rounds 10 --batch-size 128 --steps 10
    python benchmarks/attacks.py --quick
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable
from functools import partial

import torch
import torchattacks
from torch import Tensor, nn

import zoo
from datamodules import MNISTDigits
from zoo.attacks import pgd
from zoo.nn.layers import CircularConv2d

from common import Durations, summarise

CLASSIFIER = "small_cnn_mnist.digits"
IMAGE_SIZES = (16, 28, 32)
CHANNELS = ((1, 16), (16, 16))  # (in_channels, out_channels)
QUICK_IMAGE_SIZES = (16, 28)
QUICK_CHANNELS = ((1, 8), (8, 8))


def clock() -> tuple[float, float]:
    """Wall-clock and CPU seconds of this process, now."""
    return time.perf_counter(), time.process_time()


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, float]:
    """Wall-clock and CPU seconds per call of ``fn``, averaged over ``repeats`` calls."""
    start = clock()
    for _ in range(repeats):
        fn()
    end = clock()
    return (end[0] - start[0]) / repeats, (end[1] - start[1]) / repeats


def take_turns(
    contenders: dict[str, Callable[[], object]], rounds: int, repeats: dict[str, int]
) -> dict[str, Durations]:
    """Time each contender once per round, the first one first in odd rounds, last in even."""
    durations: dict[str, Durations] = {name: [] for name in contenders}
    for round_ in range(rounds):
        for name in list(contenders)[:: 1 if round_ % 2 == 0 else -1]:
            durations[name].append(timed(contenders[name], repeats[name]))
    return durations


def repeats_for(fn: Callable[[], object], target_s: float) -> int:
    """Untimed warm-up call; the number of calls that a turn of about ``target_s`` takes."""
    wall, _ = timed(fn)
    return max(1, min(1000, math.ceil(target_s / max(wall, 1e-6))))


def benchmark_pgd(args: argparse.Namespace) -> tuple[dict[str, dict[str, float]], float, str]:
    """Images per second of both PGDs, their largest disagreement, and a line of accuracies."""
    torch.manual_seed(args.seed)
    model = zoo.load_pretrained(CLASSIFIER).eval()
    data = MNISTDigits(seed=args.seed)
    data.setup("fit")
    images, labels = data.splits["train"].tensors
    if args.batch_size > len(images):
        raise ValueError(
            f"--batch-size {args.batch_size} exceeds the {len(images)} training images of "
            "MNISTDigits"
        )
    x, y = images[: args.batch_size].contiguous(), labels[: args.batch_size].contiguous()
    alpha = args.alpha if args.alpha is not None else 2.5 * args.eps / args.steps
    attack = torchattacks.PGD(
        model, eps=args.eps, alpha=alpha, steps=args.steps, random_start=False
    )

    def ours() -> Tensor:
        return pgd(model, x, y, args.eps, alpha, args.steps, "linf", random_start=False)

    def theirs() -> Tensor:
        return attack(x, y)

    contenders = {"zoo.attacks.pgd": ours, "torchattacks.PGD": theirs}
    for fn in contenders.values():
        fn()  # warm-up
    durations = take_turns(contenders, args.rounds, dict.fromkeys(contenders, 1))
    rows = {name: summarise(times) for name, times in durations.items()}

    adv_ours, adv_theirs = ours(), theirs()
    difference = (adv_ours - adv_theirs).abs().max().item()
    with torch.no_grad():
        accuracy = [(model(batch).argmax(-1) == y).float().mean().item() for batch in (x, adv_ours)]
    linf = (adv_ours - x).abs().max().item()
    note = (
        f"eps {args.eps:g}, step {alpha:g}, {args.steps} steps, {len(x)} images: accuracy "
        f"clean {accuracy[0]:.3f}, adversarial {accuracy[1]:.3f}; max |adv - x| {linf:.4g}"
    )
    return rows, difference, note


def equivalent_conv2d(layer: CircularConv2d) -> nn.Conv2d:
    """The ``nn.Conv2d`` with an image-sized kernel and circular padding that equals ``layer``.

    ``layer`` computes ``y[n] = sum_m w[m] x[(n - m) mod N]`` per axis. ``Conv2d`` with
    ``padding="same"`` pads ``p = (N - 1) // 2`` pixels before (and ``N - 1 - p`` after) and
    cross-correlates: ``y[n] = sum_k v[k] x[(n + k - p) mod N]``. The two agree when
    ``k - p = -m (mod N)``, i.e. ``v[k] = w[(p - k) mod N]``: the kernel flipped
    (``w[N - 1 - k]``) and rolled by ``p + 1``. The map is its own inverse, so it also
    carries the weight gradients of one layer onto those of the other.
    """
    out_channels, in_channels, height, width = layer.weight.shape
    conv = nn.Conv2d(
        in_channels,
        out_channels,
        (height, width),
        padding="same",
        padding_mode="circular",
        bias=layer.bias is not None,
    )
    with torch.no_grad():
        conv.weight.copy_(align_kernel(layer.weight))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


def align_kernel(weight: Tensor) -> Tensor:
    """``v[k] = w[(p - k) mod N]`` on both spatial axes, ``p = (N - 1) // 2``; an involution."""
    height, width = weight.shape[-2:]
    shifts = ((height - 1) // 2 + 1, (width - 1) // 2 + 1)
    return torch.roll(weight.flip(-2, -1), shifts, dims=(-2, -1))


def relative_error(a: Tensor, b: Tensor) -> float:
    """``max |a - b| / max |b|``."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def benchmark_conv(args: argparse.Namespace) -> list[dict[str, float | int | str]]:
    """Forward + backward seconds of both convolutions and their disagreement, per case."""
    rows = []
    for size in args.image_sizes:
        for in_channels, out_channels in args.channels:
            torch.manual_seed(args.seed)
            fft = CircularConv2d(in_channels, out_channels, (size, size))
            nn.init.normal_(fft.bias, std=0.1)
            conv = equivalent_conv2d(fft)
            x = torch.rand(args.conv_batch_size, in_channels, size, size, requires_grad=True)
            probe = torch.randn(args.conv_batch_size, out_channels, size, size)

            def step(layer: nn.Module, x: Tensor = x, probe: Tensor = probe) -> Tensor:
                layer.zero_grad(set_to_none=True)
                x.grad = None
                y = layer(x)
                (y * probe).sum().backward()
                return y

            y_fft = step(fft).detach()
            grads_fft = (x.grad.clone(), fft.weight.grad.clone(), fft.bias.grad.clone())
            y_conv = step(conv).detach()
            grads_conv = (x.grad.clone(), align_kernel(conv.weight.grad), conv.bias.grad.clone())
            error = max(
                relative_error(a, b)
                for a, b in zip((y_fft, *grads_fft), (y_conv, *grads_conv), strict=True)
            )

            contenders = {"fft": partial(step, fft), "conv2d": partial(step, conv)}
            repeats = {name: repeats_for(fn, args.turn_s) for name, fn in contenders.items()}
            durations = take_turns(contenders, args.rounds, repeats)
            fft_row, conv_row = (summarise(durations[name]) for name in contenders)
            rows.append(
                {
                    "size": size,
                    "channels": f"{in_channels} -> {out_channels}",
                    "fft_ms": 1e3 * fft_row["wall_median"],
                    "conv_ms": 1e3 * conv_row["wall_median"],
                    "speedup_median": conv_row["wall_median"] / fft_row["wall_median"],
                    "speedup_fastest": conv_row["wall_min"] / fft_row["wall_min"],
                    "speedup_cpu": conv_row["cpu_median"] / fft_row["cpu_median"],
                    "error": error,
                }
            )
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--rounds", type=int, default=None, help="turns of each (10; quick 3)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="images PGD attacks (128; quick 64)"
    )
    parser.add_argument("--steps", type=int, default=None, help="PGD steps (10; quick 5)")
    parser.add_argument("--eps", type=float, default=0.1, help="L-inf radius, pixels (0.1)")
    parser.add_argument(
        "--alpha", type=float, default=None, help="PGD step, pixels (default 2.5 * eps / steps)"
    )
    parser.add_argument(
        "--conv-batch-size", type=int, default=None, help="images per convolution (16; quick 8)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of images and weights (0)")
    parser.add_argument(
        "--atol", type=float, default=1e-5, help="largest allowed PGD difference (1e-5)"
    )
    parser.add_argument(
        "--rtol", type=float, default=1e-4, help="largest relative convolution error (1e-4)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a short run: fewer rounds, steps, sizes, channels"
    )
    args = parser.parse_args(argv)
    defaults = {"rounds": (10, 3), "batch_size": (128, 64), "steps": (10, 5)}
    defaults["conv_batch_size"] = (16, 8)
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    for name in ("threads", "rounds", "batch_size", "steps", "conv_batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if not 0 < args.eps <= 1:
        parser.error(f"--eps must lie in (0, 1] (pixel units), got {args.eps}")
    if args.alpha is not None and args.alpha <= 0:
        parser.error(f"--alpha must be positive, got {args.alpha}")
    args.image_sizes = QUICK_IMAGE_SIZES if args.quick else IMAGE_SIZES
    args.channels = QUICK_CHANNELS if args.quick else CHANNELS
    args.turn_s = 0.05 if args.quick else 0.2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("zoo").setLevel(logging.WARNING)

    pgd_rows, difference, note = benchmark_pgd(args)
    num_images = args.batch_size
    print(
        f"PGD (L-inf, no random start) on {CLASSIFIER}: {note}; {args.threads} threads, "
        f"{args.rounds} rounds, torch {torch.__version__}, torchattacks "
        f"{torchattacks.__version__}\n"
    )
    print(
        "| attack | wall s / batch (median) | wall s / batch (fastest) | CPU s / batch (median) "
        "| images / s (median) |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, row in pgd_rows.items():
        print(
            f"| {name} | {row['wall_median']:.4f} | {row['wall_min']:.4f} | "
            f"{row['cpu_median']:.4f} | {num_images / row['wall_median']:.0f} |"
        )
    ours, theirs = pgd_rows.values()
    ratio = theirs["wall_median"] / ours["wall_median"]
    ratio_fastest = theirs["wall_min"] / ours["wall_min"]
    pgd_agrees = difference <= args.atol
    print(
        f"\nimages / s, ours / torchattacks: {ratio:.3f} (median), {ratio_fastest:.3f} "
        f"(fastest) -> {'PASS' if ratio >= 1 else 'FAIL'} (target >= 1)"
    )
    print(
        f"adversarial batches: max |ours - torchattacks| = {difference:.3e} (atol "
        f"{args.atol:g}) -> {'agree' if pgd_agrees else 'MISMATCH'}\n"
    )

    conv_rows = benchmark_conv(args)
    print(
        f"Circular convolution, forward + backward of {args.conv_batch_size} images: "
        "CircularConv2d (FFT) against nn.Conv2d (image-sized kernel, circular padding), "
        f"{args.threads} threads, {args.rounds} rounds\n"
    )
    print(
        "| image | channels | FFT ms (median) | Conv2d ms (median) | speed-up (median) "
        "| speed-up (fastest) | speed-up (CPU) | max relative error |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in conv_rows:
        print(
            f"| {row['size']}x{row['size']} | {row['channels']} | {row['fft_ms']:.2f} | "
            f"{row['conv_ms']:.2f} | {row['speedup_median']:.1f} | {row['speedup_fastest']:.1f} "
            f"| {row['speedup_cpu']:.1f} | {row['error']:.2e} |"
        )
    conv_error = max(row["error"] for row in conv_rows)
    conv_agrees = conv_error <= args.rtol
    print(
        f"\noutputs and gradients: max relative error {conv_error:.3e} (rtol {args.rtol:g}) -> "
        f"{'agree' if conv_agrees else 'MISMATCH'}"
    )
    return 0 if pgd_agrees and conv_agrees else 1


if __name__ == "__main__":
    sys.exit(main())
