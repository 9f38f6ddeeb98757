"""Compare ANIE with the FNO baseline on Burgers: test error, time per epoch, memory against T.

Both models are those of ``configs/anie/compare_burgers_small.yaml``: :class:`~zoo.integral.ANIE`
with an :class:`~zoo.integral.AttentionIntegral` (Galerkin attention, 2 blocks of width 32)
over space-time tokens, one per time stamp and patch of 8 points (``PatchEncoder1d`` /
``PatchDecoder1d``, 16-D tokens), and :class:`~zoo.integral.FNOForecaster` over space with
the frames as channels (``num_times`` = T, 16 modes, 4 layers of width 32). Both see the
first 2 frames and predict the others, with AdamW at a peak learning rate of 3e-3 under the
modules' one-cycle schedule, the same batches and the same seed.

Quality and speed: each model is fitted by Lightning's ``Trainer.fit`` (CPU, no validation,
logger, checkpoints or progress bar) for ``--epochs`` epochs on the training split of
``Burgers1D`` (64 solutions on 128 points, 16 stamps: every 2nd of 32 on [0, 1]; cached
under ``$ZOO_HOME``), then scored on its test split by the module's ``evaluate``: relative
L2 and MSE of the predicted frames, and the MSE of holding the last given frame, the
baseline to beat. The first epoch of every fit is a warm-up and is not timed; the others
are timed from the start to the end of the training epoch, in wall-clock and in CPU seconds
of this process. The two fits take turns ``--rounds`` times (ANIE first in odd rounds, last
in even ones), so that a load on the machine that comes and goes slows both alike; the
table gives the median and the fastest timed epoch and the median over rounds of each test
metric.

Memory against the number of time stamps T: for each T of ``--times``, each model (the FNO
rebuilt, since its output channels are the T - 2 predicted frames) does one forward and
backward pass of the training loss on random fields ``(B, T, 128)`` (``B`` is
``--batch-size``) in a fresh process: one forked from a server that has imported the
libraries and done nothing else (``multiprocessing``'s ``forkserver``; with ``spawn``
every process would import them again, for seconds each). The number is how far the
process's peak resident set size rises above its resident size at the start of the pass,
in MiB, measured twice, in two processes:

* cold: the first pass of the process. It includes what the pass allocates and touches (the
  activations autograd saves, ANIE's for each of its 3 solver iterations, the parameters'
  gradients, temporaries freed before the end) and what runs for the first time: library
  code paged in, thread pools, FFT plans and kernel workspaces, some 20-30 MiB that hardly
  depend on T or B.
* warm: after a first pass on one trajectory. Most of the one-time costs are paid by then,
  so this is close to the memory that grows with B and T; memory that the first pass freed
  and the allocator kept can be reused, so it can fall short by up to what that one
  trajectory needed.

Neither includes the interpreter, the libraries' code and data loaded at import, the
parameters or the input batch (all resident before the pass), memory the allocator reserves
but never touches, nor memory outside the process. On Linux the peak is ``VmHWM`` of
``/proc/self/status``, reset to the resident size first by writing 5 to
``/proc/self/clear_refs``; ``ru_maxrss`` is read before and after the cold passes as a
check (it cannot be reset, so it says nothing after a warm-up; and a process started by
``spawn`` begins with its parent's mark, which hides any growth below it). Where ``/proc``
is missing, the cold number is the growth of ``ru_maxrss`` and the warm one is not
measured. Galerkin attention is linear in the number of tokens (T x 16 here), so ANIE's
memory should grow about linearly in T, while the FNO's hardly depends on T.

Before anything is timed, both models must map a test batch to finite outputs of its
shape; the script exits with status 1 when they do not, when a test metric is not finite,
or when a memory pass gives a wrong or non-finite output.

Usage::

    python benchmarks/integral.py --epochs 60 --rounds 2 --batch-size 8 --threads 2
    python benchmarks/integral.py --quick
"""

from __future__ import annotations

import argparse
import gc
import math
import multiprocessing
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from datamodules import Burgers1D
from zoo.integral import (
    ANIE,
    AttentionIntegral,
    FNOForecaster,
    PatchDecoder1d,
    PatchEncoder1d,
    TrajectoryModule,
)
from zoo.nn import count_parameters

from common import Durations, bare_trainer, quiet_logs, summarise

RESOLUTION = 128
PATCH_SIZE = 8
CONTEXT = 2
LR = 3e-3
TIME_STRIDE = 2
MODELS = ("ANIE", "FNO")
PRELOAD = ("torch", "lightning", "datamodules", "zoo.integral")  # what the memory server imports


def build_anie() -> ANIE:
    """ANIE of the Burgers comparison config."""
    integral = AttentionIntegral(
        state_dim=16, coord_dim=2, hidden_dim=32, num_heads=2, num_layers=2, ff_dim=64
    )
    return ANIE(
        integral=integral,
        encoder=PatchEncoder1d(size=RESOLUTION, patch_size=PATCH_SIZE, dim=16),
        decoder=PatchDecoder1d(patch_size=PATCH_SIZE, dim=16),
        context=CONTEXT,
        lr=LR,
    )


def build_fno(num_times: int) -> FNOForecaster:
    """The FNO of the Burgers comparison config, for trajectories of ``num_times`` frames."""
    return FNOForecaster(
        n_modes=(16,), hidden_dim=32, num_layers=4, num_times=num_times, context=CONTEXT, lr=LR
    )


def build(name: str, num_times: int) -> TrajectoryModule:
    """A freshly initialised model ``name`` (one of :data:`MODELS`)."""
    return build_anie() if name == "ANIE" else build_fno(num_times)


def clock() -> tuple[float, float]:
    """Wall-clock and CPU seconds of this process, now."""
    return time.perf_counter(), time.process_time()


class EpochTimer(L.Callback):
    """Wall-clock and CPU seconds of every training epoch, and the threads torch used."""

    def __init__(self) -> None:
        self.durations: Durations = []
        self.threads: set[int] = set()
        self._start = (0.0, 0.0)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.threads.add(torch.get_num_threads())
        self._start = clock()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        end = clock()
        self.durations.append((end[0] - self._start[0], end[1] - self._start[1]))


def fit(name: str, data: Burgers1D, args: argparse.Namespace) -> dict[str, Any]:
    """Fit model ``name`` from the seed; its epoch times, test metrics and threads used."""
    L.seed_everything(args.seed, verbose=False)
    model = build(name, data.num_times)
    timer = EpochTimer()

    with tempfile.TemporaryDirectory() as root:
        trainer = bare_trainer(root, [timer], max_epochs=args.epochs)
        trainer.fit(model, datamodule=data)

    return {
        "durations": timer.durations[1:],  # the first epoch is the warm-up
        "metrics": model.evaluate(data.test_dataloader()),
        "threads": timer.threads,
        "parameters": count_parameters(model),
    }


def check_outputs(data: Burgers1D, args: argparse.Namespace) -> list[str]:
    """Problems of the untrained models' outputs on a test batch; empty when there are none."""
    y, t = next(iter(data.test_dataloader()))
    train_y, train_t = data.splits["train"].tensors
    problems = []
    for name in MODELS:
        L.seed_everything(args.seed, verbose=False)
        model = build(name, data.num_times)
        model.fit_statistics(train_y, train_t)
        with torch.no_grad():
            prediction = model.eval()(y, t)
        if prediction.shape != y.shape:
            problems.append(f"{name}: output {tuple(prediction.shape)} for data {tuple(y.shape)}")
        elif not torch.isfinite(prediction).all():
            problems.append(f"{name}: output holds NaN or infinite values")
    return problems


def memory_kib() -> dict[str, float]:
    """``ru_maxrss`` and, where ``/proc`` has them, ``VmRSS`` and ``VmHWM``, in KiB."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    readings = {"maxrss": maxrss if sys.platform.startswith("linux") else maxrss / 1024}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                readings[key] = float(value.split()[0])
    except OSError:
        pass
    return readings


def reset_peak() -> bool:
    """Set this process's ``VmHWM`` to its current resident size (Linux 4.0 on)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return "VmHWM" in memory_kib()


def pass_growth(model: TrajectoryModule, y: Tensor, t: Tensor) -> dict[str, Any]:
    """Growth (MiB) of the peak RSS over one forward + backward pass of the training loss.

    ``mib`` is the growth of ``VmHWM`` (reset first), or of ``ru_maxrss`` where ``/proc``
    has no ``VmHWM``; ``maxrss`` is the growth of ``ru_maxrss`` (KiB on Linux).
    """
    gc.collect()
    has_hwm = reset_peak()

    before = memory_kib()
    prediction = model(y, t)
    F.mse_loss(prediction[:, CONTEXT:], y[:, CONTEXT:]).backward()
    after = memory_kib()

    model.zero_grad(set_to_none=True)
    maxrss = (after["maxrss"] - before["maxrss"]) / 1024
    return {
        "mib": (after["VmHWM"] - before["VmRSS"]) / 1024 if has_hwm else maxrss,
        "maxrss": maxrss,
        "has_hwm": has_hwm,
        "ok": prediction.shape == y.shape and bool(torch.isfinite(prediction).all()),
    }


def peak_memory(
    name: str, num_times: int, batch_size: int, threads: int, seed: int, warm: bool
) -> dict[str, Any]:
    """:func:`pass_growth` of a new model on random fields, after a pass on one with ``warm``."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = build(name, num_times).train()
    y = torch.randn(batch_size, num_times, RESOLUTION)
    t = torch.linspace(0.0, 1.0, num_times).expand(batch_size, -1).contiguous()
    if warm:
        pass_growth(model, y[:1], t[:1])
    result = pass_growth(model, y, t)
    if warm and not result["has_hwm"]:  # the mark of the warm-up pass cannot be reset
        result["mib"] = math.nan
    return {**result, "parameters": count_parameters(model)}


def measure_memory(args: argparse.Namespace) -> dict[tuple[str, int, bool], dict[str, Any]]:
    """:func:`peak_memory` of each model, T, cold and warm, each in a new process.

    The processes are forked from a server that has imported the libraries and nothing
    else (``forkserver``), which saves them the seconds that the imports take.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(PRELOAD))
    results = {}
    for num_times in args.times:
        for name in MODELS:
            for warm in (False, True):
                with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                    job = pool.submit(
                        peak_memory,
                        name,
                        num_times,
                        args.batch_size,
                        args.threads,
                        args.seed,
                        warm,
                    )
                    results[name, num_times, warm] = job.result()
    return results


def parse_times(text: str) -> tuple[int, ...]:
    """``"8,16,32"`` -> ``(8, 16, 32)``."""
    try:
        times = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None
    if min(times) <= CONTEXT:
        raise argparse.ArgumentTypeError(
            f"every T must exceed the {CONTEXT} given frames, got {text!r}"
        )
    return times


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (60; quick 3)")
    parser.add_argument("--rounds", type=int, default=None, help="fits of each (2; quick 1)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="trajectories per step (8; quick 4)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument(
        "--times",
        type=parse_times,
        default=None,
        help="time stamps T of the memory passes (8,16,32,64; quick 8,16)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of data, split, weights (0)")
    parser.add_argument(
        "--quick", action="store_true", help="a short run: 16 solutions, 3 epochs, 1 round"
    )
    args = parser.parse_args(argv)
    defaults = {"epochs": (60, 3), "rounds": (2, 1), "batch_size": (8, 4)}
    defaults["times"] = ((8, 16, 32, 64), (8, 16))
    for name, (full, quick) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    for name in ("rounds", "batch_size", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer")
    if args.epochs < 2:
        parser.error(f"--epochs must be at least 2 (1 warm-up + 1 timed), got {args.epochs}")
    args.num_samples = 16 if args.quick else 64
    return args


def print_quality(data: Burgers1D, fits: dict[str, list[dict]], args: argparse.Namespace) -> bool:
    """The table of test metrics and epoch times; whether every metric is finite."""
    threads = sorted(set().union(*(f["threads"] for runs in fits.values() for f in runs)))
    print(
        f"Burgers1D: {len(data.splits['train'])} training / {len(data.splits['test'])} test "
        f"solutions, {data.num_times} stamps on {RESOLUTION} points, {CONTEXT} given; batch "
        f"{args.batch_size}, rounds {args.rounds}, each 1 warm-up + {args.epochs - 1} timed "
        f"epochs, torch threads {threads}, torch {torch.__version__}, lightning "
        f"{L.__version__}\n"
    )
    print(
        "| model | parameters | test rel. L2 | test MSE | hold-last MSE | wall s / epoch "
        "(median) | wall s / epoch (fastest) | CPU s / epoch (median) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows, finite = {}, True
    for name, runs in fits.items():
        metrics = {
            key: statistics.median(run["metrics"][key] for run in runs)
            for key in ("rel_l2", "mse", "mse_hold_last")
        }
        finite &= all(math.isfinite(run["metrics"][k]) for run in runs for k in metrics)
        rows[name] = summarise([d for run in runs for d in run["durations"]])
        print(
            f"| {name} | {runs[0]['parameters']:,} | {metrics['rel_l2']:.4f} | "
            f"{metrics['mse']:.4e} | {metrics['mse_hold_last']:.4e} | "
            f"{rows[name]['wall_median']:.3f} | {rows[name]['wall_min']:.3f} | "
            f"{rows[name]['cpu_median']:.3f} |"
        )
    anie, fno = rows.values()
    ratios = {key: anie[key] / fno[key] for key in anie}
    print(
        f"| ANIE / FNO | | | | | {ratios['wall_median']:.2f} | {ratios['wall_min']:.2f} | "
        f"{ratios['cpu_median']:.2f} |"
    )
    if args.rounds > 1:
        spread = {
            name: max(r["metrics"]["rel_l2"] for r in runs)
            - min(r["metrics"]["rel_l2"] for r in runs)
            for name, runs in fits.items()
        }
        print(
            "\nspread of test rel. L2 over rounds: "
            + ", ".join(f"{name} {value:.2e}" for name, value in spread.items())
        )
    return finite


def print_memory(
    results: dict[tuple[str, int, bool], dict[str, Any]], args: argparse.Namespace
) -> bool:
    """The table of peak memory against T; whether every pass gave a sound output."""
    anie_parameters = results["ANIE", args.times[0], False]["parameters"]
    print(
        f"\nPeak memory of one forward + backward pass of the training loss, batch "
        f"{args.batch_size}, random fields on {RESOLUTION} points, torch threads {args.threads}, a "
        f"fresh process each; growth of VmHWM in MiB, first pass (cold) and after a pass on "
        f"one trajectory (warm); ANIE has {anie_parameters:,} parameters for every T\n"
    )
    print(
        "| T | ANIE tokens (T x patches) | ANIE cold | ANIE warm | FNO parameters | FNO cold "
        "| FNO warm | ANIE / FNO (warm) |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    patches = RESOLUTION // PATCH_SIZE
    for num_times in args.times:
        anie_cold, anie_warm, fno_cold, fno_warm = (
            results[name, num_times, warm] for name in MODELS for warm in (False, True)
        )
        ratio = anie_warm["mib"] / fno_warm["mib"] if fno_warm["mib"] > 0 else math.inf
        print(
            f"| {num_times} | {num_times * patches:,} ({num_times} x {patches}) | "
            f"{anie_cold['mib']:.1f} | {anie_warm['mib']:.1f} | {fno_cold['parameters']:,} | "
            f"{fno_cold['mib']:.1f} | {fno_warm['mib']:.1f} | {ratio:.2f} |"
        )
    cold = [result for (_, _, warm), result in results.items() if not warm]
    if all(result["has_hwm"] for result in cold):
        mismatch = max(abs(result["maxrss"] - result["mib"]) for result in cold)
        print(
            f"\nru_maxrss, read before and after each cold pass, grew by the same amounts "
            f"within {mismatch:.1f} MiB"
        )
    failed = [f"{n} at T={T}" for (n, T, _), result in results.items() if not result["ok"]]
    if failed:
        print(f"\nwrong or non-finite outputs: {', '.join(failed)}")
    return not failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    quiet_logs()

    data = Burgers1D(
        num_samples=args.num_samples,
        resolution=RESOLUTION,
        num_snapshots=32,
        time_stride=TIME_STRIDE,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    data.prepare_data()
    data.setup("fit")
    problems = check_outputs(data, args)
    if problems:
        print("outputs of the untrained models are wrong:\n  " + "\n  ".join(problems))
        return 1

    fits: dict[str, list[dict]] = {name: [] for name in MODELS}
    for round_ in range(args.rounds):
        for name in MODELS[:: 1 if round_ % 2 == 0 else -1]:
            fits[name].append(fit(name, data, args))
    finite = print_quality(data, fits, args)
    fitted = time.perf_counter()

    memory = measure_memory(args)
    sound = print_memory(memory, args)
    print(
        f"\n{fitted - started:.0f} s for the check and the fits, "
        f"{time.perf_counter() - fitted:.0f} s for the memory passes"
    )
    if not finite:
        print("\na test metric is NaN or infinite")
    return 0 if finite and sound else 1


if __name__ == "__main__":
    sys.exit(main())
