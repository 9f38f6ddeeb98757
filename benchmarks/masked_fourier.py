"""Time a Fourier-mask fit under Lightning against the same fit in a plain PyTorch loop.

Both fit a data-set :class:`~zoo.fourier.FourierMask` in front of the frozen pretrained
``small_cnn_mnist.digits`` on the training split of ``MNISTDigits``, with the same seed,
batches, loss ``mean(exp(dCE^2)) + lam * ||M||_1 / numel(M)``, Adam at a constant learning
rate and the clamp to [0, 1] after every step. Lightning runs ``Trainer.fit`` of
:class:`~zoo.fourier.MaskedFourierClassifier` without validation, logger, checkpoints or
progress bar. The first ``--warmup`` epochs of each fit are not timed. The two fits take
turns ``--rounds`` times (Lightning first in odd rounds, last in even ones), so that a load
on the machine that comes and goes slows both alike; the table gives the median and the
fastest timed epoch of each, in wall-clock and in CPU seconds of this process. Every fit
does the same steps from the same mask, so all final masks must agree; the script reports
the largest difference and exits with status 1 when it exceeds ``--atol``.

Usage::

    python benchmarks/masked_fourier.py --epochs 5 --rounds 2 --batch-size 100 --threads 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

import zoo
from datamodules import MNISTDigits
from zoo.fourier import FourierMask, MaskedFourierClassifier

from common import Durations, bare_trainer

CLASSIFIER = "small_cnn_mnist.digits"


def clock() -> tuple[float, float]:
    """Wall-clock and CPU seconds of this process, now."""
    return time.perf_counter(), time.process_time()


def elapsed(stamps: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Wall-clock and CPU seconds between consecutive stamps."""
    return [(b[0] - a[0], b[1] - a[1]) for a, b in zip(stamps[:-1], stamps[1:], strict=True)]


class EpochTimer(L.Callback):
    """Clock readings at the start of every training epoch and at the end of training."""

    def __init__(self) -> None:
        self.stamps: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stamps.append(clock())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.stamps.append(clock())


class EpochShuffle(Sampler[int]):
    """A permutation per epoch drawn from ``seed + epoch`` alone.

    A shuffling ``DataLoader`` with a seeded generator does not suffice: its sampler draws
    one more permutation when a ``for`` loop exhausts it, which Lightning's fit loop (it
    stops after ``len(loader)`` batches) never does, so the orders part from epoch 2 on.
    Lightning calls :meth:`set_epoch` before every epoch; the plain loop does the same.
    """

    def __init__(self, num_samples: int, seed: int) -> None:
        self.num_samples = num_samples
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=generator).tolist())

    def __len__(self) -> int:
        return self.num_samples


def train_loader(dataset: Dataset, batch_size: int, seed: int) -> DataLoader:
    """A shuffling loader whose batch order depends on ``seed`` and the epoch alone."""
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochShuffle(len(dataset), seed))


def fit_lightning(dataset: Dataset, args: argparse.Namespace) -> tuple[Durations, Tensor]:
    """``Trainer.fit`` of the mask; returns each epoch's (wall, CPU) seconds and the mask."""
    L.seed_everything(args.seed, verbose=False)
    model = MaskedFourierClassifier(
        classifier=CLASSIFIER, lam=args.lam, lr=args.lr, schedule="constant"
    )
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as root:  # figures drawn at the end of the fit land here
        trainer = bare_trainer(root, [timer], max_epochs=args.warmup + args.epochs)
        trainer.fit(model, train_dataloaders=train_loader(dataset, args.batch_size, args.seed))
    return elapsed(timer.stamps), model.mask.weight.detach().clone()


def fit_plain(dataset: Dataset, args: argparse.Namespace) -> tuple[Durations, Tensor]:
    """The same fit as a plain loop; returns each epoch's (wall, CPU) seconds and the mask."""
    L.seed_everything(args.seed, verbose=False)
    classifier: nn.Module = zoo.load_pretrained(CLASSIFIER)
    classifier.requires_grad_(False)
    classifier.eval()
    image_size = tuple(dataset[0][0].shape[-2:])
    mask = FourierMask(image_size)
    optimizer = torch.optim.Adam(mask.parameters(), lr=args.lr)
    loader = train_loader(dataset, args.batch_size, args.seed)

    stamps = []
    for epoch in range(args.warmup + args.epochs):
        stamps.append(clock())
        loader.sampler.set_epoch(epoch)
        for x, y in loader:
            with torch.no_grad():
                reference = classifier(x)
            masked = classifier(mask(x))
            dce = F.cross_entropy(masked, y, reduction="none") - F.cross_entropy(
                reference, y, reduction="none"
            )
            loss = torch.exp(dce.square()).mean() + args.lam * mask.l1_fraction()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            mask.clamp_()
    stamps.append(clock())
    return elapsed(stamps), mask.weight.detach().clone()


def summarise(name: str, durations: Durations, num_images: int) -> dict[str, str | float]:
    """Median and fastest timed epoch, wall-clock and CPU, and images per second."""
    wall = [w for w, _ in durations]
    cpu = [c for _, c in durations]
    return {
        "name": name,
        "epochs": len(durations),
        "wall_median": statistics.median(wall),
        "wall_min": min(wall),
        "cpu_median": statistics.median(cpu),
        "images_per_s": num_images / statistics.median(wall),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first (default 1)")
    parser.add_argument("--rounds", type=int, default=2, help="turns of each fit (default 2)")
    parser.add_argument("--batch-size", type=int, default=100, help="images per step (100)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--lam", type=float, default=0.2, help="weight of the L1 term (0.2)")
    parser.add_argument("--lr", type=float, default=0.02, help="Adam learning rate (0.02)")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (default 0)")
    parser.add_argument(
        "--atol", type=float, default=1e-5, help="largest allowed mask difference (1e-5)"
    )
    args = parser.parse_args(argv)
    for name in ("epochs", "rounds", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.warmup < 0:
        parser.error("--warmup must be a non-negative integer")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    data = MNISTDigits(batch_size=args.batch_size, seed=0)
    data.setup("fit")
    dataset = data.splits["train"]
    num_images = len(dataset)

    fits = {"Lightning `Trainer.fit`": fit_lightning, "plain PyTorch loop": fit_plain}
    durations: dict[str, Durations] = {name: [] for name in fits}
    masks: list[Tensor] = []
    for round_ in range(args.rounds):
        for name in list(fits)[:: 1 if round_ % 2 == 0 else -1]:
            times, mask = fits[name](dataset, args)
            durations[name] += times[args.warmup :]
            masks.append(mask)
    rows = [summarise(name, times, num_images) for name, times in durations.items()]
    difference = max((mask - masks[0]).abs().max().item() for mask in masks)

    print(
        f"MaskedFourierClassifier on MNISTDigits: {num_images} training images, batch "
        f"{args.batch_size}, {args.threads} threads, {args.rounds} rounds of {args.warmup} "
        f"warm-up + {args.epochs} timed epochs, torch {torch.__version__}, lightning "
        f"{L.__version__}\n"
    )
    print(
        "| loop | timed epochs | wall s / epoch (median) | wall s / epoch (fastest) "
        "| CPU s / epoch (median) | images / s (median) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(
            f"| {row['name']} | {row['epochs']} | {row['wall_median']:.3f} | "
            f"{row['wall_min']:.3f} | {row['cpu_median']:.3f} | {row['images_per_s']:.0f} |"
        )
    lightning, plain = rows
    ratios = {key: lightning[key] / plain[key] for key in ("wall_median", "wall_min", "cpu_median")}
    print(
        f"| Lightning / plain | | {ratios['wall_median']:.3f} | {ratios['wall_min']:.3f} | "
        f"{ratios['cpu_median']:.3f} | |"
    )
    print(
        f"\nfinal masks of all {len(masks)} fits: max |M - M_first| = {difference:.3e} "
        f"(atol {args.atol:g}); L1 fraction {masks[0].mean().item():.4f}"
    )
    return 0 if difference <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
