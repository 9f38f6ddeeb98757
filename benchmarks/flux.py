"""Compare FLUX with torchcfm's OT-CFM: time per training step and held-out W1, same budget.

Both models see the same data, the same batches and the same number of optimisation steps:

* :class:`~zoo.flux.FLUXModule`: RBF metric (100 KMeans centres) fitted on the pooled
  training marginals, a bend network trained for ``--bend-fraction`` of the steps, then a
  2-expert Gumbel-routed velocity field for the rest;
* :class:`~zoo.flux.ConditionalFlowMatching` with ``matcher: exact_ot``, i.e. torchcfm's
  ``ExactOptimalTransportConditionalFlowMatcher`` (sigma 0) and one MLP of the size of one
  FLUX expert (3 hidden layers of 64), for all the steps.

Data: ``SwitchingLorenz`` (8 marginals of 60-D trajectory windows, the regime switching
after marginal 3, marginal 5 held out) and ``ManifoldMarginals`` on the sphere (8
marginals in 10-D, marginal 3 held out). Every training batch holds ``--batch-size``
points of each marginal of every adjacent training pair.

Each model is fitted by Lightning's ``Trainer.fit`` (CPU, no validation, logger,
checkpoints or progress bar). A callback times every training step in wall-clock seconds,
from the start of the batch to the end of its optimiser step; the first ``WARMUP`` steps
of each stage are not counted. The table gives the median step time per stage (FLUX's
bend and velocity stages apart, and their mean over all steps, which is what the budget
costs) and the fit's total time, which includes the metric fit. After the fit, the
marginal before the held-out one is pushed to the held-out time (Euler, 100 steps) and
compared with it by exact W1 (POT) in the data module's space; ``W1 source`` is the W1 of
the source left in place, the baseline to beat, and ``seg-ARI`` scores FLUX's router
regimes against the true ones (Lorenz only); ``parameters`` counts all of a model's
parameters, FLUX's frozen bend network included. The models take turns ``--rounds`` times
(FLUX first in odd rounds, last in even ones) and the table gives medians over rounds.

The script exits with status 1 when a W1 is not finite.

Usage::

    python benchmarks/flux.py --steps 1000 --rounds 1 --threads 1
    python benchmarks/flux.py --quick
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from typing import Any

import lightning as L
import torch

from datamodules import ManifoldMarginals, SwitchingLorenz
from zoo.flux import ConditionalFlowMatching, FLUXModule, segment_scores

from common import bare_trainer, quiet_logs

MODELS = ("FLUX", "OT-CFM")
WARMUP = 3


def build_data(name: str, args: argparse.Namespace) -> L.LightningDataModule:
    """The data module ``name`` (``lorenz`` or ``sphere``), set up."""
    common = {"batch_size": args.batch_size, "steps_per_epoch": 50, "seed": args.seed}
    if name == "lorenz":
        data = SwitchingLorenz(num_trajectories=args.points, held_out=[5], **common)
    else:
        data = ManifoldMarginals(
            manifold="sphere", ambient_dim=10, points_per_marginal=args.points, held_out=[3],
            **common,
        )  # fmt: skip
    data.setup("fit")
    return data


def build(name: str, dim: int, args: argparse.Namespace) -> L.LightningModule:
    """A freshly initialised model ``name`` (one of :data:`MODELS`) for ``dim``-D data."""
    if name == "OT-CFM":
        return ConditionalFlowMatching(dim=dim, matcher="exact_ot", hidden_dim=64, num_layers=3)
    bend_steps = int(round(args.bend_fraction * args.steps))
    return FLUXModule(
        dim=dim,
        metric="rbf",
        bend_steps=bend_steps,
        num_experts=2,
        hidden_dim=64,
        num_layers=3,
        tau_steps=max(args.steps - bend_steps, 1),
    )


class StepTimer(L.Callback):
    """Wall-clock seconds of every training step, labelled by FLUX's stage."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, float]] = []
        self._start = 0.0
        self._stage = "train"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._stage = "bend" if getattr(pl_module, "bending", False) else "velocity"
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append((self._stage, time.perf_counter() - self._start))

    def times(self, stage: str | None = None) -> list[float]:
        """Seconds of the steps of ``stage`` (every stage: ``None``), warm-ups left out."""
        stages = [stage] if stage else sorted({s for s, _ in self.steps})
        return [t for name in stages for t in [t for s, t in self.steps if s == name][WARMUP:]]

    def median(self, stage: str) -> float:
        times = self.times(stage)
        return statistics.median(times) if times else math.nan

    def mean(self) -> float:
        times = self.times()
        return statistics.fmean(times) if times else math.nan


def fit(name: str, data: L.LightningDataModule, args: argparse.Namespace) -> dict[str, Any]:
    """Fit model ``name`` from the seed; its step times, held-out W1 and regime score."""
    L.seed_everything(args.seed, verbose=False)
    model = build(name, data.dim, args)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as root:
        trainer = bare_trainer(root, [timer], max_steps=args.steps)
        start = time.perf_counter()
        trainer.fit(model, datamodule=data)
        seconds = time.perf_counter() - start

    model.eval()
    item = next(iter(data.test_dataloader()))
    scores = model.evaluate_marginal(item)
    seg_ari = math.nan
    if isinstance(model, FLUXModule) and data.segment_labels is not None:
        seg_ari = segment_scores(model.regimes(data)["predicted"], data.segment_labels)["seg_ari"]
    return {
        "bend": timer.median("bend"),
        "velocity": timer.median("velocity"),
        "all": timer.mean(),
        "fit": seconds,
        "w1": scores["w1"],
        "w1_source": scores["w1_source"],
        "seg_ari": seg_ari,
        "parameters": sum(p.numel() for p in model.parameters()),  # the frozen bend too
    }


def ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{1000 * value:.1f}"


def number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3f}"


def print_table(results: dict[str, dict[str, list[dict]]], args: argparse.Namespace) -> bool:
    """Print the medians over rounds; return whether every W1 is finite."""
    print(
        f"\n{args.steps} steps, batches of {args.batch_size} points per marginal and pair, "
        f"{args.rounds} round(s), {args.threads} thread(s); FLUX bends for "
        f"{int(round(args.bend_fraction * args.steps))} steps\n"
    )
    header = (
        "| data | model | parameters | bend ms/step | velocity ms/step | mean ms/step | "
        "fit s | held-out W1 | W1 source | seg-ARI |"
    )
    print(header)
    print("|" + " --- |" * (header.count("|") - 1))
    finite = True
    for data_name, per_model in results.items():
        for model, fits in per_model.items():

            def med(key: str, fits: list[dict] = fits) -> float:
                values = [f[key] for f in fits if not math.isnan(f[key])]
                return statistics.median(values) if values else math.nan

            finite &= all(math.isfinite(f["w1"]) for f in fits)
            print(
                f"| {data_name} | {model} | {fits[0]['parameters']:,} | {ms(med('bend'))} | "
                f"{ms(med('velocity'))} | {ms(med('all'))} | {med('fit'):.1f} | "
                f"{number(med('w1'))} | {number(med('w1_source'))} | {number(med('seg_ari'))} |"
            )
    return finite


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="optimisation steps per fit")
    parser.add_argument("--batch-size", type=int, default=128, help="points per marginal, pair")
    parser.add_argument("--points", type=int, default=300, help="points per marginal")
    parser.add_argument("--bend-fraction", type=float, default=0.2, help="FLUX's bend steps")
    parser.add_argument("--rounds", type=int, default=1, help="fits of each model per data set")
    parser.add_argument("--data", default="lorenz,sphere", help="comma-separated data sets")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a short run: 60 steps, small data")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.points, args.batch_size, args.rounds = 60, 100, 64, 1
    if args.steps < 2 * WARMUP + 2 or not 0 <= args.bend_fraction < 1:
        parser.error("need --steps >= 8 and --bend-fraction in [0, 1)")
    unknown = set(args.data.split(",")) - {"lorenz", "sphere"}
    if unknown:
        parser.error(f"unknown data set(s) {sorted(unknown)}; choose from lorenz, sphere")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    quiet_logs()

    results: dict[str, dict[str, list[dict]]] = {}
    for data_name in args.data.split(","):
        data = build_data(data_name, args)
        results[data_name] = {name: [] for name in MODELS}
        for round_ in range(args.rounds):
            for name in MODELS[:: 1 if round_ % 2 == 0 else -1]:
                results[data_name][name].append(fit(name, data, args))
    finite = print_table(results, args)
    print(f"\n{time.perf_counter() - started:.0f} s in all")
    if not finite:
        print("\na held-out W1 is NaN or infinite")
    return 0 if finite else 1


if __name__ == "__main__":
    sys.exit(main())
