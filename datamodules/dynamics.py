"""Trajectory data: simulated ODEs, integral equations and PDEs, and FNO ``.mat`` files.

Every module yields pairs ``(y, t)``: ``y`` float32 of shape ``(T, *state_shape)`` and
``t`` float32 of shape ``(T,)``, the strictly increasing time stamps of that trajectory.
The state is ``(D,)`` for ODE systems (channels last), ``(X,)`` for 1-D fields and
``(H, W)`` for 2-D fields, the first spatial axis being ``x``. Splits are by trajectory
and deterministic given ``seed``.

Simulated sets are generated once per parameter set and cached in ``cache_dir`` (default
``$ZOO_HOME/data/dynamics``) as one ``torch.save`` file of plain values, named after a
hash of the generator's parameters. The file stores those parameters; a file whose
parameters differ, or that cannot be read, is regenerated with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import TensorDataset
from tqdm.auto import tqdm

from datamodules.base import SplitDataModule
from zoo.hub import zoo_home

log = logging.getLogger(__name__)

CACHE_VERSION = 1
FNO_KEYS = {"a": "a", "u": "u", "t": "t"}


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must lie in [0, 1), got {value}")


def _check_positive(name: str, value: float, integer: bool = False) -> None:
    kind = "a positive integer" if integer else "positive and finite"
    if integer and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be {kind}, got {value!r}")


def _check_range(name: str, value: tuple[float, float], low: float = -math.inf) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1]:
        bound = "" if low == -math.inf else f" with low >= {low}"
        raise ValueError(f"{name} must be a pair (low, high) with low <= high{bound}, got {value}")


def _check_snapshots(num_snapshots: int) -> None:
    if isinstance(num_snapshots, bool) or not isinstance(num_snapshots, int) or num_snapshots < 2:
        raise ValueError(f"num_snapshots must be an integer >= 2, got {num_snapshots!r}")


def _check_resolution(resolution: int) -> None:
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 8:
        raise ValueError(f"resolution must be an integer >= 8 grid points, got {resolution!r}")


def check_trajectories(y: Any, t: Any, source: str) -> tuple[Tensor, Tensor]:
    """Validate a set of trajectories and return them as float32 tensors.

    Args:
        y: States of every trajectory.
        t: Time stamps, shared by all trajectories or one row per trajectory.
        source: Where the data came from (a file or a generator), named in errors.

    Returns:
        ``(y, t)`` as float32 tensors, ``t`` broadcast to one row per trajectory.

    Raises:
        ValueError: On wrong shapes, NaN or infinite values, or time stamps that do not
            increase strictly.

    Shapes:
        - y: :math:`(N, T, *S)`.
        - t: :math:`(T,)` or :math:`(N, T)`; returned as :math:`(N, T)`.
    """
    y = torch.as_tensor(np.asarray(y)).to(torch.float32)
    t = torch.as_tensor(np.asarray(t)).to(torch.float32)
    if y.ndim < 3 or y.shape[0] < 1 or y.shape[1] < 1:
        raise ValueError(
            f"{source}: trajectories must be (N, T, *state_shape) with N, T >= 1, got "
            f"shape {tuple(y.shape)}"
        )
    num, steps = y.shape[:2]
    if t.shape not in ((steps,), (num, steps)):
        raise ValueError(
            f"{source}: time stamps must have shape ({steps},) or ({num}, {steps}) to match "
            f"trajectories of shape {tuple(y.shape)}, got {tuple(t.shape)}"
        )
    if not torch.isfinite(y).all():
        bad = int((~torch.isfinite(y)).flatten(1).any(1).sum())
        raise ValueError(f"{source}: {bad} of {num} trajectories contain NaN or infinite values")
    if not torch.isfinite(t).all():
        raise ValueError(f"{source}: time stamps contain NaN or infinite values")
    t = t.expand(num, steps).contiguous()
    if steps > 1 and not (torch.diff(t, dim=1) > 0).all():
        row = int((torch.diff(t, dim=1) <= 0).any(1).nonzero()[0])
        raise ValueError(
            f"{source}: time stamps must increase strictly along each trajectory; "
            f"trajectory {row} has {t[row, :6].tolist()}..."
        )
    return y.contiguous(), t


class TrajectoryDataModule(SplitDataModule):
    """Shared splitting, time sub-sampling and loading for sets of trajectories.

    Subclasses implement :meth:`load`, which returns every trajectory at once; this base
    validates them, keeps every ``time_stride``-th stamp (then the first ``num_times``),
    splits the trajectories into train / val / test by ``seed`` and serves each split as
    a ``TensorDataset(y, t)``.

    Args:
        batch_size: Trajectories per batch for every split.
        num_workers: Data loader worker processes.
        val_fraction: Fraction of the trajectories held out for validation.
        test_fraction: Fraction of the trajectories held out for testing.
        seed: Seed of the split permutation and of the training shuffle.
        cache_dir: Folder of generated data; ``None`` means ``$ZOO_HOME/data/dynamics``.
        time_stride: Keep every ``time_stride``-th time stamp, starting with the first.
        num_times: Keep only the first ``num_times`` stamps after striding; ``None``
            keeps them all.

    Shapes:
        - y: :math:`(T, *S)` per sample, :math:`(B, T, *S)` per batch, float32, where
          :math:`S` is :attr:`state_shape` and :math:`T` is :attr:`num_times`.
        - t: :math:`(T,)` per sample, :math:`(B, T)` per batch, float32, increasing.

    Attributes:
        splits: After :meth:`setup`, ``"train"``, ``"val"`` and ``"test"`` datasets.
        split_indices: The rows of each split in the source's order of trajectories.
    """

    abstract = True  # a base: listed by `zoo list` only through its subclasses

    def __init__(
        self,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        cache_dir: str | None = None,
        time_stride: int = 1,
        num_times: int | None = None,
    ) -> None:
        super().__init__()
        _check_fraction("val_fraction", val_fraction)
        _check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must leave training trajectories, got "
                f"{val_fraction} + {test_fraction}"
            )
        _check_positive("batch_size", batch_size, integer=True)
        _check_positive("time_stride", time_stride, integer=True)
        if num_times is not None:
            _check_positive("num_times", num_times, integer=True)
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        self.save_hyperparameters()
        self.cache_dir = (
            Path(cache_dir).expanduser() if cache_dir else zoo_home() / "data" / "dynamics"
        )
        self.splits: dict[str, TensorDataset] = {}
        self.split_indices: dict[str, Tensor] = {}
        self._y: Tensor | None = None
        self._t: Tensor | None = None
        self._metadata: dict[str, Any] | None = None

    def load(self) -> tuple[Any, Any, dict[str, Any]]:
        """Every trajectory ``(y, t, metadata)``: see :func:`check_trajectories`."""
        raise NotImplementedError

    def source_name(self) -> str:
        """How errors name where the data come from."""
        return type(self).__name__

    def _raw_num_times(self) -> int | None:
        """Time stamps in the source before striding, when known without loading it."""
        return None

    def _raw_state_shape(self) -> tuple[int, ...] | None:
        """State shape, when known without loading the data."""
        return None

    def _kept_times(self, raw: int) -> int:
        """Stamps left of ``raw`` after ``time_stride`` and ``num_times``."""
        stride, keep = self.hparams.time_stride, self.hparams.num_times
        left = len(range(0, raw, stride))
        if keep is not None and keep > left:
            raise ValueError(
                f"num_times={keep} exceeds the {left} time stamps left after "
                f"time_stride={stride} (the data have {raw}); pass num_times <= {left} or null"
            )
        return left if keep is None else keep

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        y, t, metadata = self.load()
        y, t = check_trajectories(y, t, self.source_name())

        stride, keep = self.hparams.time_stride, self._kept_times(y.shape[1])
        y, t = y[:, ::stride][:, :keep], t[:, ::stride][:, :keep]
        self._y, self._t, self._metadata = y.contiguous(), t.contiguous(), metadata

        num = len(y)
        generator = torch.Generator().manual_seed(self.hparams.seed)
        order = torch.randperm(num, generator=generator)
        num_test = int(round(self.hparams.test_fraction * num))
        num_val = int(round(self.hparams.val_fraction * num))
        if num_test + num_val >= num:
            raise ValueError(
                f"{self.source_name()}: {num} trajectories leave none for training with "
                f"val_fraction={self.hparams.val_fraction} and "
                f"test_fraction={self.hparams.test_fraction}; generate more trajectories or "
                "lower the fractions"
            )
        self.split_indices = {
            "train": order[num_test + num_val :].sort().values,
            "val": order[num_test : num_test + num_val].sort().values,
            "test": order[:num_test].sort().values,
        }
        self.splits = {
            split: TensorDataset(self._y[index], self._t[index])
            for split, index in self.split_indices.items()
        }
        log.info(
            "%s: %s trajectories of %d stamps, state %s",
            type(self).__name__,
            ", ".join(f"{k} {len(v)}" for k, v in self.splits.items()),
            self.num_times,
            self.state_shape,
        )

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one state: ``(D,)``, ``(X,)`` or ``(H, W)``."""
        if self._y is None:
            shape = self._raw_state_shape()
            if shape is not None:
                return shape
            self.setup()
        return tuple(self._y.shape[2:])

    @property
    def num_times(self) -> int:
        """Time stamps per trajectory, after ``time_stride`` and ``num_times``."""
        if self._y is None:
            raw = self._raw_num_times()
            if raw is not None:
                return self._kept_times(raw)
            self.setup()
        return self._y.shape[1]

    @property
    def metadata(self) -> dict[str, Any]:
        """The parameters of the generator (or the description of the file) of the data."""
        if self._metadata is None:
            self.setup()
        return dict(self._metadata)


class SimulatedTrajectories(TrajectoryDataModule):
    """A :class:`TrajectoryDataModule` whose data come from a seeded, cached generator.

    Subclasses implement :meth:`generator_parameters` (plain values that determine the
    data) and :meth:`simulate`. The result is cached in ``cache_dir`` under a name that
    hashes those parameters, with the parameters stored beside the arrays.

    Args:
        data_seed: Seed of the generator; ``None`` uses ``seed``.
        **kwargs: The arguments of :class:`TrajectoryDataModule`.

    Attributes:
        trajectory_parameters: After :meth:`setup`, the per-trajectory parameters the
            generator drew (rates, initial states, kernels), one row per trajectory in
            generation order; :attr:`split_indices` selects the rows of each split.
    """

    abstract = True

    def __init__(self, data_seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_seed = self.hparams.seed if data_seed is None else data_seed
        self.trajectory_parameters: dict[str, Tensor] = {}
        self._generated: tuple[Tensor, Tensor, dict[str, Tensor]] | None = None

    def generator_parameters(self) -> dict[str, Any]:
        """Plain values that, with ``data_seed``, determine the generated data."""
        raise NotImplementedError

    def simulate(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Generate the data ``(y, t, parameters)``.

        ``y`` is (N, T, *S), ``t`` (T,) and ``parameters`` maps names to per-trajectory
        arrays with N rows (possibly none).
        """
        raise NotImplementedError

    def transform(self, y: Tensor) -> Tensor:
        """A view of the cached states (identity unless a subclass says otherwise)."""
        return y

    def cache_metadata(self) -> dict[str, Any]:
        """What the cache file must store to be reused."""
        metadata = {
            "generator": type(self).__name__,
            "version": CACHE_VERSION,
            "data_seed": self.data_seed,
            **self.generator_parameters(),
        }
        return json.loads(json.dumps(metadata, sort_keys=True))

    @property
    def cache_path(self) -> Path:
        """The cache file of the current parameters."""
        text = json.dumps(self.cache_metadata(), sort_keys=True)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return self.cache_dir / f"{type(self).__name__.lower()}-{digest}.pt"

    def source_name(self) -> str:
        return f"{type(self).__name__} generator (data_seed={self.data_seed})"

    @property
    def metadata(self) -> dict[str, Any]:
        """The generator's parameters, as stored in the cache file (known before setup)."""
        return self.cache_metadata()

    def prepare_data(self) -> None:
        self._load_or_generate()

    def load(self) -> tuple[Tensor, Tensor, dict[str, Any]]:
        y, t, parameters = self._load_or_generate()
        self.trajectory_parameters = parameters
        return self.transform(y), t, self.cache_metadata()

    def _load_or_generate(self) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        if self._generated is not None:
            return self._generated
        path, expected = self.cache_path, self.cache_metadata()
        if path.is_file():
            cached = self._read_cache(path, expected)
            if cached is not None:
                log.info("%s: loaded cached data from %s", type(self).__name__, path)
                self._generated = cached
                return cached

        start = time.perf_counter()
        y, t, parameters = self.simulate()
        y, t_rows = check_trajectories(y, t, self.source_name())
        t = t_rows[0].clone()
        parameters = {k: torch.as_tensor(np.asarray(v)) for k, v in parameters.items()}
        elapsed = time.perf_counter() - start

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        blob = {"y": y, "t": t, "metadata": expected, "parameters": parameters}
        torch.save(blob, partial)
        os.replace(partial, path)
        log.info(
            "%s: generated %d trajectories in %.1f s, cached in %s",
            type(self).__name__,
            len(y),
            elapsed,
            path,
        )
        self._generated = (y, t, parameters)
        return self._generated

    def _read_cache(
        self, path: Path, expected: dict[str, Any]
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]] | None:
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged file: zip, pickle or end-of-file errors
            warnings.warn(
                f"cache file {path} is unreadable ({type(err).__name__}: {err}); regenerating it",
                stacklevel=3,
            )
            return None
        if not isinstance(blob, dict) or not {"y", "t", "metadata"} <= set(blob):
            warnings.warn(
                f"cache file {path} lacks the entries y, t and metadata; regenerating it",
                stacklevel=3,
            )
            return None
        stored = blob["metadata"]
        if stored != expected:
            stored = stored if isinstance(stored, dict) else {}
            keys = set(expected) | set(stored)
            differ = sorted(k for k in keys if stored.get(k) != expected.get(k))
            warnings.warn(
                f"cache file {path} holds data of other parameters (differing: "
                f"{', '.join(differ)}); regenerating it",
                stacklevel=3,
            )
            return None
        y, t = check_trajectories(
            blob["y"], blob["t"], f"cache file {path} (delete it to regenerate)"
        )
        return y, t[0].clone(), dict(blob.get("parameters", {}))


def _time_grid(t_max: float, num_snapshots: int) -> np.ndarray:
    return np.linspace(0.0, t_max, num_snapshots)


def _progress(total: int, desc: str, unit: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, disable=None, leave=False)


def integrate_stacked(
    rhs: Callable[[np.ndarray], np.ndarray],
    x0: np.ndarray,
    t: np.ndarray,
    rtol: float,
    atol: float,
    desc: str = "ODE",
) -> np.ndarray:
    """Integrate an autonomous ODE for many initial states at once with ``solve_ivp``.

    The states are stacked into one system and integrated with DOP853 from stamp to
    stamp, so all trajectories share the step size (chosen by the hardest one); a
    progress bar advances per stamp.

    Args:
        rhs: Vectorised right-hand side, states ``(N, D)`` to derivatives ``(N, D)``.
        x0: Initial states.
        t: Output time stamps, increasing; ``t[0]`` is the time of ``x0``.
        rtol: Relative tolerance of the solver.
        atol: Absolute tolerance of the solver.
        desc: Label of the progress bar and of errors.

    Returns:
        The states at ``t``.

    Shapes:
        - x0: :math:`(N, D)`.
        - t: :math:`(T,)`.
        - output: :math:`(N, T, D)`.
    """
    from scipy.integrate import solve_ivp

    num, dim = x0.shape
    out = np.empty((num, len(t), dim))
    out[:, 0] = x0
    state = np.asarray(x0, dtype=np.float64).reshape(-1)

    def fun(_: float, flat: np.ndarray) -> np.ndarray:
        return rhs(flat.reshape(num, dim)).reshape(-1)

    with _progress(len(t) - 1, desc, "stamp") as bar:
        for k in range(1, len(t)):
            sol = solve_ivp(fun, (t[k - 1], t[k]), state, method="DOP853", rtol=rtol, atol=atol)
            if not sol.success:
                raise RuntimeError(
                    f"{desc}: the ODE solver failed between t={t[k - 1]} and t={t[k]}: "
                    f"{sol.message}"
                )
            state = sol.y[:, -1]
            out[:, k] = state.reshape(num, dim)
            bar.update()
    return out


def solve_lotka_volterra(
    x0: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray,
    d: np.ndarray,
    t: np.ndarray,
    rtol: float = 1e-10,
    atol: float = 1e-10,
) -> np.ndarray:
    """Lotka-Volterra trajectories ``dx = a x - b x y``, ``dy = -c y + d b x y``.

    Integrated in log populations, ``d ln x = a - b y``, ``d ln y = -c + d b x``, so that
    the tolerances are relative: far from equilibrium the prey falls to ``1e-13`` and
    below, where an absolute tolerance would lose it. Along each trajectory
    ``H = d b x - c ln x + b y - a ln y`` is conserved.

    Args:
        x0: Initial (prey, predator) populations, positive.
        a: Prey growth rates.
        b: Predation rates.
        c: Predator death rates.
        d: Conversion efficiencies of prey into predators.
        t: Output time stamps, increasing, ``t[0]`` the time of ``x0``.
        rtol: Relative tolerance of the solver.
        atol: Absolute tolerance of the solver, on the log populations.

    Returns:
        The populations at ``t`` (float64).

    Shapes:
        - x0: :math:`(N, 2)`; a, b, c, d: :math:`(N,)`; t: :math:`(T,)`.
        - output: :math:`(N, T, 2)`.
    """
    a, b, c, d = (np.asarray(v, dtype=np.float64) for v in (a, b, c, d))
    x0 = np.asarray(x0, dtype=np.float64)
    if not (x0 > 0).all():
        raise ValueError(f"x0 must hold positive populations, got minimum {x0.min()}")

    def rhs(log_state: np.ndarray) -> np.ndarray:
        x, y = np.exp(log_state[:, 0]), np.exp(log_state[:, 1])
        return np.stack([a - b * y, -c + d * b * x], axis=1)

    return np.exp(integrate_stacked(rhs, np.log(x0), t, rtol, atol, "LotkaVolterra"))


def solve_lorenz(
    x0: np.ndarray,
    t: np.ndarray,
    sigma: float = 10.0,
    rho: float = 28.0,
    beta: float = 8.0 / 3.0,
    rtol: float = 1e-9,
    atol: float = 1e-9,
) -> np.ndarray:
    """Lorenz trajectories from many initial states.

    Solves ``dx = sigma (y - x)``, ``dy = x (rho - z) - y``, ``dz = x y - beta z``.

    Args:
        x0: Initial states.
        t: Output time stamps, increasing, ``t[0]`` the time of ``x0``.
        sigma: Prandtl number.
        rho: Rayleigh number.
        beta: Aspect ratio.
        rtol: Relative tolerance of the solver.
        atol: Absolute tolerance of the solver.

    Returns:
        The states at ``t`` (float64).

    Shapes:
        - x0: :math:`(N, 3)`; t: :math:`(T,)`.
        - output: :math:`(N, T, 3)`.
    """

    def rhs(state: np.ndarray) -> np.ndarray:
        x, y, z = state[:, 0], state[:, 1], state[:, 2]
        return np.stack([sigma * (y - x), x * (rho - z) - y, x * y - beta * z], axis=1)

    return integrate_stacked(rhs, np.asarray(x0, dtype=np.float64), t, rtol, atol, "Lorenz")


class LotkaVolterra(SimulatedTrajectories):
    """Predator-prey trajectories of the Lotka-Volterra system, the NIE recipe.

    Each trajectory draws its own rates and solves
    ``dx = a x - b x y``, ``dy = -c y + d b x y`` with ``solve_ivp`` (DOP853) on
    ``t = linspace(0, t_max, num_snapshots)``. The defaults follow the data of "Neural
    Integral Equations" (Zappala et al., 2022): ``a, b ~ U(0.5, 1.5)``,
    ``c ~ U(0.5, 2.5)``, ``d ~ U(0.25, 1.25)``, all from ``(x, y) = (10, 5)``, 100
    stamps on ``[0, 15]``. Since every trajectory starts from the same state, a model
    must see more than ``y(0)`` to tell them apart.

    Args:
        num_trajectories: Number of trajectories.
        t_max: Final time.
        num_snapshots: Time stamps generated on ``[0, t_max]``, ``t = 0`` included.
        a_range: Range of the prey growth rate ``a``.
        b_range: Range of the predation rate ``b``.
        c_range: Range of the predator death rate ``c``.
        d_range: Range of the conversion efficiency ``d``.
        x0: Initial (prey, predator) populations of every trajectory.
        initial_range: If set, draw each initial population from ``U(low, high)``
            instead of using ``x0``.
        log_scale: Serve ``log1p`` of the populations (the cache keeps raw values).
        rtol: Relative tolerance of the solver.
        atol: Absolute tolerance of the solver.
        **kwargs: Arguments of :class:`SimulatedTrajectories` and
            :class:`TrajectoryDataModule`.

    Shapes:
        - y: :math:`(T, 2)`, (prey, predator).
        - t: :math:`(T,)`.
    """

    def __init__(
        self,
        num_trajectories: int = 100,
        t_max: float = 15.0,
        num_snapshots: int = 100,
        a_range: tuple[float, float] = (0.5, 1.5),
        b_range: tuple[float, float] = (0.5, 1.5),
        c_range: tuple[float, float] = (0.5, 2.5),
        d_range: tuple[float, float] = (0.25, 1.25),
        x0: tuple[float, float] = (10.0, 5.0),
        initial_range: tuple[float, float] | None = None,
        log_scale: bool = False,
        rtol: float = 1e-10,
        atol: float = 1e-10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_positive("num_trajectories", num_trajectories, integer=True)
        _check_positive("t_max", t_max)
        _check_snapshots(num_snapshots)
        for name, value in (("a_range", a_range), ("b_range", b_range)):
            _check_range(name, value, low=0.0)
        _check_range("c_range", c_range, low=0.0)
        _check_range("d_range", d_range, low=0.0)
        if len(x0) != 2 or min(x0) <= 0:
            raise ValueError(f"x0 must be two positive populations (prey, predator), got {x0}")
        if initial_range is not None:
            _check_range("initial_range", initial_range, low=0.0)
            if initial_range[0] <= 0:
                raise ValueError(f"initial_range must be positive populations, got {initial_range}")
        _check_positive("rtol", rtol)
        _check_positive("atol", atol)

    def generator_parameters(self) -> dict[str, Any]:
        keys = ("num_trajectories", "t_max", "num_snapshots", "a_range", "b_range", "c_range")
        keys += ("d_range", "x0", "initial_range", "rtol", "atol")
        return {k: self.hparams[k] for k in keys}

    def _raw_num_times(self) -> int:
        return self.hparams.num_snapshots

    def _raw_state_shape(self) -> tuple[int, ...]:
        return (2,)

    def simulate(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        hp = self.hparams
        rng = np.random.default_rng(self.data_seed)
        num = hp.num_trajectories
        rates = {k: rng.uniform(*hp[f"{k}_range"], size=num) for k in "abcd"}
        if hp.initial_range is None:
            x0 = np.broadcast_to(np.asarray(hp.x0, dtype=np.float64), (num, 2)).copy()
        else:
            x0 = rng.uniform(*hp.initial_range, size=(num, 2))
        t = _time_grid(hp.t_max, hp.num_snapshots)
        y = solve_lotka_volterra(x0, t=t, rtol=hp.rtol, atol=hp.atol, **rates)
        return y, t, {**rates, "x0": x0}

    def transform(self, y: Tensor) -> Tensor:
        return torch.log1p(y) if self.hparams.log_scale else y


class Lorenz(SimulatedTrajectories):
    """Chaotic trajectories of the Lorenz system, the NIE recipe.

    Solves ``dx = sigma (y - x)``, ``dy = x (rho - z) - y``, ``dz = x y - beta z`` with
    ``solve_ivp`` (DOP853) from ``x0 ~ U(low, high)^3``. The defaults follow the data of
    "Neural Integral Equations" (Zappala et al., 2022): ``sigma = 10``, ``rho = 28``,
    ``beta = 8/3``, ``x0 ~ U(0, 0.5)^3``, 100 stamps on ``[0, 100]``; the stamps are
    then about one Lyapunov time apart, so neighbours are nearly decorrelated.

    Args:
        num_trajectories: Number of trajectories.
        t_max: Final time.
        num_snapshots: Time stamps generated on ``[0, t_max]``, ``t = 0`` included.
        sigma: Prandtl number.
        rho: Rayleigh number.
        beta: Aspect ratio.
        initial_range: Range of each coordinate of the initial state.
        rtol: Relative tolerance of the solver.
        atol: Absolute tolerance of the solver.
        **kwargs: Arguments of :class:`SimulatedTrajectories` and
            :class:`TrajectoryDataModule`.

    Shapes:
        - y: :math:`(T, 3)`, (x, y, z).
        - t: :math:`(T,)`.
    """

    def __init__(
        self,
        num_trajectories: int = 100,
        t_max: float = 100.0,
        num_snapshots: int = 100,
        sigma: float = 10.0,
        rho: float = 28.0,
        beta: float = 8.0 / 3.0,
        initial_range: tuple[float, float] = (0.0, 0.5),
        rtol: float = 1e-9,
        atol: float = 1e-9,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_positive("num_trajectories", num_trajectories, integer=True)
        _check_positive("t_max", t_max)
        _check_snapshots(num_snapshots)
        _check_range("initial_range", initial_range)
        _check_positive("rtol", rtol)
        _check_positive("atol", atol)

    def generator_parameters(self) -> dict[str, Any]:
        keys = ("num_trajectories", "t_max", "num_snapshots", "sigma", "rho", "beta")
        keys += ("initial_range", "rtol", "atol")
        return {k: self.hparams[k] for k in keys}

    def _raw_num_times(self) -> int:
        return self.hparams.num_snapshots

    def _raw_state_shape(self) -> tuple[int, ...]:
        return (3,)

    def simulate(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        hp = self.hparams
        rng = np.random.default_rng(self.data_seed)
        x0 = rng.uniform(*hp.initial_range, size=(hp.num_trajectories, 3))
        t = _time_grid(hp.t_max, hp.num_snapshots)
        y = solve_lorenz(x0, t, hp.sigma, hp.rho, hp.beta, hp.rtol, hp.atol)
        return y, t, {"x0": x0}


def spiral_free_function(t: np.ndarray, parameters: dict[str, np.ndarray]) -> np.ndarray:
    """The free function ``f(t) = r0 exp(-decay t) (cos theta(t), sin theta(t))``.

    ``theta(t) = theta0 + 2 pi turns t``, with ``turns`` signed (the sense of rotation).

    Args:
        t: Times in ``[0, 1]``.
        parameters: Per-curve ``r0``, ``decay``, ``theta0`` and ``turns``.

    Returns:
        One spiral per curve.

    Shapes:
        - t: :math:`(T,)`; each parameter :math:`(N,)`.
        - output: :math:`(N, T, 2)`.
    """
    radius = parameters["r0"][:, None] * np.exp(-parameters["decay"][:, None] * t)
    theta = parameters["theta0"][:, None] + 2 * np.pi * parameters["turns"][:, None] * t
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=-1)


def spiral_kernel(t: np.ndarray, s: np.ndarray, parameters: dict[str, np.ndarray]) -> np.ndarray:
    """The kernel ``K_ij(t, s) = A_ij cos(2 pi beta_ij (t - s) + phi_ij)``.

    Args:
        t: Output times.
        s: Integration times.
        parameters: Per-curve ``amplitude`` (A), ``frequency`` (beta) and ``phase`` (phi).

    Returns:
        The 2x2 kernel matrix of each curve at every ``(t, s)`` pair.

    Shapes:
        - t: :math:`(T,)`; s: :math:`(S,)`; each parameter :math:`(N, 2, 2)`.
        - output: :math:`(N, T, S, 2, 2)`.
    """
    lag = (t[:, None] - s[None, :])[None, :, :, None, None]
    amplitude, frequency, phase = (
        parameters[k][:, None, None] for k in ("amplitude", "frequency", "phase")
    )
    return amplitude * np.cos(2 * np.pi * frequency * lag + phase)


def solve_spirals(
    parameters: dict[str, np.ndarray],
    t: np.ndarray,
    quadrature_points: int = 128,
    tol: float = 1e-12,
    max_iterations: int = 500,
) -> np.ndarray:
    """Solve ``y(t) = f(t) + int_0^1 K(t, s) tanh(y(s)) ds`` for every curve.

    Nystrom method: the integral is a Gauss-Legendre rule on ``[0, 1]``; the equation
    is solved on its nodes by fixed-point iteration (a contraction when the Frobenius
    norm of ``A`` is below 1, since ``|K_ij| <= |A_ij|`` and tanh is 1-Lipschitz), then
    evaluated at ``t`` through the same rule.

    Args:
        parameters: Per-curve parameters of :func:`spiral_free_function` and
            :func:`spiral_kernel`.
        t: Output times in ``[0, 1]``.
        quadrature_points: Nodes of the Gauss-Legendre rule.
        tol: Stop when no coordinate changes by more than this in one iteration.
        max_iterations: Give up (RuntimeError) after this many iterations.

    Returns:
        The solution of each curve at ``t`` (float64).

    Shapes:
        - t: :math:`(T,)`.
        - output: :math:`(N, T, 2)`.
    """
    nodes, weights = np.polynomial.legendre.leggauss(quadrature_points)
    s, w = (nodes + 1) / 2, weights / 2
    num = len(parameters["r0"])
    out = np.empty((num, len(t), 2))
    for i in tqdm(
        range(num), desc="IntegralEquationSpirals", unit="curve", disable=None, leave=False
    ):
        one = {k: v[i : i + 1] for k, v in parameters.items()}
        f_nodes = spiral_free_function(s, one)[0]
        k_nodes = spiral_kernel(s, s, one)[0] * w[None, :, None, None]
        operator = k_nodes.transpose(0, 2, 1, 3).reshape(2 * len(s), 2 * len(s))
        y = f_nodes.reshape(-1)
        for _ in range(max_iterations):
            update = f_nodes.reshape(-1) + operator @ np.tanh(y)
            change = np.abs(update - y).max()
            y = update
            if change < tol:
                break
        else:
            raise RuntimeError(
                f"IntegralEquationSpirals: curve {i} did not converge in {max_iterations} "
                f"iterations (last change {change:.2e}); lower kernel_norm"
            )
        k_out = spiral_kernel(t, s, one)[0] * w[None, :, None, None]
        integral = np.einsum("tsij,sj->ti", k_out, np.tanh(y.reshape(len(s), 2)))
        out[i] = spiral_free_function(t, one)[0] + integral
    return out


class IntegralEquationSpirals(SimulatedTrajectories):
    """2-D spirals that solve a Fredholm integral equation of the second kind.

    A documented reconstruction of the integral-equation curves of "Neural Integral
    Equations" (Zappala et al., 2022), not the authors' file. Each curve solves

    ``y(t) = f(t) + int_0^1 K(t, s) tanh(y(s)) ds``, ``t`` in ``[0, 1]``,

    with, drawn per curve from ``numpy.random.default_rng(data_seed)`` (each quantity for
    all curves at once, in the order r0, decay, theta0, sign, ``|turns|``, G, kappa,
    beta, phi):

    - ``r0 ~ U(1, 2)``, ``decay ~ U(0.5, 1.5)``, ``theta0 ~ U(0, 2 pi)``,
      ``turns = sign * U(0.5, 1.5)`` with ``sign = +-1`` equally likely; the free function
      is the spiral ``f(t) = r0 exp(-decay t) (cos theta(t), sin theta(t))``,
      ``theta(t) = theta0 + 2 pi turns t`` (:func:`spiral_free_function`);
    - a convolutional 2x2 kernel ``K_ij(t, s) = A_ij cos(2 pi beta_ij (t - s) + phi_ij)``
      with ``A = kappa G / ||G||_F``, ``G`` a 2x2 standard normal matrix,
      ``kappa ~ U(kernel_norm)``, ``beta_ij ~ U(0.5, 2)`` and ``phi_ij ~ U(0, 2 pi)``
      (:func:`spiral_kernel`). Since ``||K(t, s)||_2 <= kappa < 1`` and tanh is
      1-Lipschitz, the right-hand side is a contraction.

    The equation is solved by fixed-point iteration on a Gauss-Legendre rule of
    ``quadrature_points`` nodes to ``1e-12``, then evaluated on
    ``t = linspace(0, 1, num_snapshots)`` by the Nystrom formula
    (:func:`solve_spirals`). The defaults give 500 curves x 100 stamps x 2 dims, in the
    range of about ``[-2.2, 2.2]`` (the original set spans ``[-2.31, 2.19]``).

    Args:
        num_trajectories: Number of curves.
        num_snapshots: Time stamps on ``[0, 1]``.
        kernel_norm: Range of ``kappa``, the Frobenius norm of the kernel amplitudes;
            both ends in ``(0, 1)``.
        quadrature_points: Nodes of the Gauss-Legendre rule.
        **kwargs: Arguments of :class:`SimulatedTrajectories` and
            :class:`TrajectoryDataModule`.

    Shapes:
        - y: :math:`(T, 2)`.
        - t: :math:`(T,)`.
    """

    def __init__(
        self,
        num_trajectories: int = 500,
        num_snapshots: int = 100,
        kernel_norm: tuple[float, float] = (0.3, 0.7),
        quadrature_points: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_positive("num_trajectories", num_trajectories, integer=True)
        _check_snapshots(num_snapshots)
        if len(kernel_norm) != 2 or not 0 < kernel_norm[0] <= kernel_norm[1] < 1:
            raise ValueError(
                f"kernel_norm must be a pair (low, high) with 0 < low <= high < 1 (so that "
                f"the iteration contracts), got {kernel_norm}"
            )
        if (
            isinstance(quadrature_points, bool)
            or not isinstance(quadrature_points, int)
            or (quadrature_points < 8)
        ):
            raise ValueError(
                f"quadrature_points must be an integer >= 8, got {quadrature_points!r}"
            )

    def generator_parameters(self) -> dict[str, Any]:
        keys = ("num_trajectories", "num_snapshots", "kernel_norm", "quadrature_points")
        return {k: self.hparams[k] for k in keys}

    def _raw_num_times(self) -> int:
        return self.hparams.num_snapshots

    def _raw_state_shape(self) -> tuple[int, ...]:
        return (2,)

    def draw_parameters(self) -> dict[str, np.ndarray]:
        """The per-curve parameters of the recipe, drawn from ``data_seed``."""
        num = self.hparams.num_trajectories
        rng = np.random.default_rng(self.data_seed)
        r0 = rng.uniform(1.0, 2.0, num)
        decay = rng.uniform(0.5, 1.5, num)
        theta0 = rng.uniform(0.0, 2 * np.pi, num)
        turns = rng.choice([-1.0, 1.0], num) * rng.uniform(0.5, 1.5, num)
        gauss = rng.standard_normal((num, 2, 2))
        kappa = rng.uniform(*self.hparams.kernel_norm, num)
        amplitude = kappa[:, None, None] * gauss / np.linalg.norm(gauss, axis=(1, 2))[:, None, None]
        frequency = rng.uniform(0.5, 2.0, (num, 2, 2))
        phase = rng.uniform(0.0, 2 * np.pi, (num, 2, 2))
        return {
            "r0": r0,
            "decay": decay,
            "theta0": theta0,
            "turns": turns,
            "amplitude": amplitude,
            "frequency": frequency,
            "phase": phase,
        }

    def simulate(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        parameters = self.draw_parameters()
        t = np.linspace(0.0, 1.0, self.hparams.num_snapshots)
        y = solve_spirals(parameters, t, self.hparams.quadrature_points)
        return y, t, parameters


def gaussian_random_field(
    num_samples: int,
    resolution: int,
    dims: int,
    scale: float,
    tau: float,
    alpha: float,
    rng: np.random.Generator,
    zero_mean: bool = False,
) -> np.ndarray:
    """Samples of ``N(0, scale (-Delta + tau^2 I)^(-alpha))`` on the periodic unit cube.

    The covariance has eigenfunctions ``exp(2 pi i k.x)`` and eigenvalues
    ``lambda_k = scale (4 pi^2 |k|^2 + tau^2)^(-alpha)``; a sample is the inverse FFT of
    the FFT of white noise times ``sqrt(lambda_k)`` (up to the FFT's normalisation), so
    each grid value has variance ``sum_k lambda_k`` over the grid's modes.

    Args:
        num_samples: Number of fields.
        resolution: Grid points per dimension.
        dims: Spatial dimensions, 1 or 2.
        scale: Factor in front of the covariance operator.
        tau: Inverse length scale.
        alpha: Smoothness exponent.
        rng: Source of the white noise.
        zero_mean: Drop the constant mode (needed for vorticity on the torus).

    Returns:
        The fields (float64).

    Shapes:
        - output: :math:`(N, X)` for ``dims=1``, :math:`(N, X, X)` for ``dims=2``.
    """
    axes = tuple(range(1, dims + 1))
    noise = rng.standard_normal((num_samples,) + (resolution,) * dims)
    k = np.fft.fftfreq(resolution, d=1.0 / resolution)
    k2 = sum(np.meshgrid(*([k**2] * dims), indexing="ij"))
    eigenvalues = scale * (4 * np.pi**2 * k2 + tau**2) ** (-alpha)
    if zero_mean:
        eigenvalues[(0,) * dims] = 0.0
    amplitude = np.sqrt(eigenvalues * resolution**dims)
    return np.fft.ifftn(amplitude * np.fft.fftn(noise, axes=axes), axes=axes).real


def _dealias_mask(k_int: Tensor, resolution: int) -> Tensor:
    return (k_int.abs() < resolution / 3).to(torch.float64)


def solve_burgers(
    u0: Tensor,
    nu: float,
    times: Tensor,
    dt: float | None = None,
    cfl: float = 0.5,
) -> Tensor:
    """Viscous Burgers ``u_t + u u_x = nu u_xx`` on the periodic unit interval.

    Pseudo-spectral in space with the 2/3 rule (the state keeps only the modes
    ``|k| < X/3``, so the quadratic term is computed without aliasing) and the
    integrating-factor Runge-Kutta 4 scheme in time: diffusion is integrated exactly,
    the conservative term ``-(u^2/2)_x`` by RK4. Substeps divide each interval between
    output times evenly and are at most ``dt``; with ``dt=None`` they follow
    ``cfl dx / max|u|`` from the state at the start of each interval.

    Args:
        u0: Initial conditions (projected onto the kept modes).
        nu: Viscosity, ``>= 0``.
        times: Output times, increasing, ``times[0]`` the time of ``u0``.
        dt: Largest substep; ``None`` chooses it from ``cfl``.
        cfl: Courant number of the automatic substep.

    Returns:
        The solutions at ``times`` (float64).

    Shapes:
        - u0: :math:`(N, X)`; times: :math:`(T,)`.
        - output: :math:`(N, T, X)`.
    """
    num, n = u0.shape
    k_int = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)
    mask = _dealias_mask(k_int, n)
    k = 2 * math.pi * k_int
    linear = -nu * k**2
    u_hat = torch.fft.rfft(u0.to(torch.float64)) * mask

    def nonlinear(v_hat: Tensor) -> Tensor:
        u = torch.fft.irfft(v_hat, n=n)
        return -0.5j * k * torch.fft.rfft(u * u) * mask

    out = torch.empty(num, len(times), n, dtype=torch.float64)
    out[:, 0] = torch.fft.irfft(u_hat, n=n)
    intervals = torch.diff(times.to(torch.float64)).tolist()
    with _progress(len(intervals), "Burgers1D", "stamp") as bar:
        for index, interval in enumerate(intervals, start=1):
            step_max = dt
            if step_max is None:
                speed = float(out[:, index - 1].abs().max())
                step_max = cfl / n / max(speed, 1e-8)
            steps = max(1, math.ceil(interval / step_max - 1e-9))
            h = interval / steps
            e_full, e_half = torch.exp(linear * h), torch.exp(linear * h / 2)
            for _ in range(steps):
                k1 = nonlinear(u_hat)
                k2 = nonlinear(e_half * (u_hat + h / 2 * k1))
                k3 = nonlinear(e_half * u_hat + h / 2 * k2)
                k4 = nonlinear(e_full * u_hat + h * e_half * k3)
                u_hat = e_full * u_hat + h / 6 * (e_full * k1 + 2 * e_half * (k2 + k3) + k4)
            out[:, index] = torch.fft.irfft(u_hat, n=n)
            if not torch.isfinite(out[:, index]).all():
                raise ValueError(
                    f"Burgers1D: the solution blew up by t={float(times[index]):.4g} with "
                    f"substeps of {h:.3g}; lower dt"
                )
            bar.update()
    return out


class Burgers1D(SimulatedTrajectories):
    """Viscous Burgers ``u_t + u u_x = nu u_xx`` on the periodic unit interval.

    Initial conditions follow "Fourier Neural Operator for Parametric Partial
    Differential Equations" (Li et al., 2021): ``u0 ~ N(0, 625 (-Delta + 25 I)^(-2))``
    (the formula read literally, constant mode included: see
    :func:`gaussian_random_field`), solved with ``nu = 0.1`` to ``t = 1`` by
    :func:`solve_burgers` (pseudo-spectral, 2/3 de-aliasing, integrating-factor RK4).
    Snapshots are stored at ``linspace(0, t_max, num_snapshots)``, ``t = 0`` included.
    The defaults are CPU-sized; FNO solved on 8192 points and subsampled.

    Args:
        num_samples: Number of initial conditions.
        resolution: Grid points on ``[0, 1)``.
        nu: Viscosity.
        t_max: Final time.
        num_snapshots: Stored time stamps, ``t = 0`` included.
        dt: Largest time substep; ``None`` picks it from a Courant number of 0.5.
        grf_scale: Factor in front of the covariance of the initial conditions.
        grf_tau: ``tau`` of the covariance ``(-Delta + tau^2 I)^(-alpha)``.
        grf_alpha: ``alpha`` of that covariance.
        **kwargs: Arguments of :class:`SimulatedTrajectories` and
            :class:`TrajectoryDataModule`.

    Shapes:
        - y: :math:`(T, X)`, ``u`` at ``x = i / X``.
        - t: :math:`(T,)`.
    """

    def __init__(
        self,
        num_samples: int = 64,
        resolution: int = 128,
        nu: float = 0.1,
        t_max: float = 1.0,
        num_snapshots: int = 32,
        dt: float | None = None,
        grf_scale: float = 625.0,
        grf_tau: float = 5.0,
        grf_alpha: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_positive("num_samples", num_samples, integer=True)
        _check_resolution(resolution)
        _check_positive("nu", nu)
        _check_positive("t_max", t_max)
        _check_snapshots(num_snapshots)
        if dt is not None:
            _check_positive("dt", dt)
        _check_positive("grf_scale", grf_scale)
        _check_positive("grf_tau", grf_tau)
        _check_positive("grf_alpha", grf_alpha)

    def generator_parameters(self) -> dict[str, Any]:
        keys = ("num_samples", "resolution", "nu", "t_max", "num_snapshots", "dt")
        keys += ("grf_scale", "grf_tau", "grf_alpha")
        return {k: self.hparams[k] for k in keys}

    def _raw_num_times(self) -> int:
        return self.hparams.num_snapshots

    def _raw_state_shape(self) -> tuple[int, ...]:
        return (self.hparams.resolution,)

    def simulate(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        hp = self.hparams
        rng = np.random.default_rng(self.data_seed)
        u0 = gaussian_random_field(
            hp.num_samples, hp.resolution, 1, hp.grf_scale, hp.grf_tau, hp.grf_alpha, rng
        )
        t = _time_grid(hp.t_max, hp.num_snapshots)
        y = solve_burgers(torch.from_numpy(u0), hp.nu, torch.from_numpy(t), hp.dt)
        return y.numpy(), t, {}


def _torus_wavenumbers(n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Integer wavenumbers ``kx`` (n, 1), ``ky`` (1, n//2 + 1) of rfft2 and the mask."""
    kx = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)[:, None]
    ky = torch.fft.rfftfreq(n, d=1.0 / n, dtype=torch.float64)[None, :]
    mask = _dealias_mask(kx, n) * _dealias_mask(ky, n)
    return kx, ky, mask


def _inverse_laplacian(kx: Tensor, ky: Tensor) -> Tensor:
    """Symbol of ``(-Delta)^(-1)`` on zero-mean fields, 0 on the constant mode."""
    laplacian = 4 * math.pi**2 * (kx**2 + ky**2)
    laplacian[0, 0] = math.inf
    return 1 / laplacian


def navier_stokes_velocity(w: Tensor) -> tuple[Tensor, Tensor]:
    """Velocity of a vorticity field on the unit torus.

    Solves ``-Delta psi = w`` spectrally (zero-mean ``psi``) and returns
    ``u = d psi / dy``, ``v = -d psi / dx``, where ``x`` runs along the first spatial
    axis.

    Args:
        w: Vorticity on a uniform ``n x n`` grid, ``w[..., i, j] = w(i / n, j / n)``.

    Returns:
        ``(u, v)``, each shaped like ``w``.

    Shapes:
        - w: :math:`(*, n, n)`.
        - u, v: :math:`(*, n, n)`.
    """
    n = w.shape[-1]
    kx, ky, _ = _torus_wavenumbers(n)
    psi_hat = torch.fft.rfft2(w.to(torch.float64)) * _inverse_laplacian(kx, ky)
    u = torch.fft.irfft2(2j * math.pi * ky * psi_hat, s=(n, n))
    v = torch.fft.irfft2(-2j * math.pi * kx * psi_hat, s=(n, n))
    return u, v


def solve_navier_stokes(
    w0: Tensor,
    nu: float,
    times: Tensor,
    dt: float,
    forcing: Tensor | None = None,
    max_cfl: float = 0.5,
) -> Tensor:
    """2-D incompressible Navier-Stokes in vorticity form on the unit torus.

    Solves ``w_t + u . grad w = nu Delta w + f`` with ``u = (d psi/dy, -d psi/dx)``,
    ``-Delta psi = w``: pseudo-spectral with the 2/3 rule (modes ``|kx|, |ky| < n/3``
    kept), Crank-Nicolson for diffusion and Heun's predictor-corrector for advection
    and forcing. Substeps divide each interval between output times evenly and are at
    most ``dt``. The Courant number ``(max|u| + max|v|) dt n`` is checked at every
    output time and a warning is raised once it exceeds ``max_cfl``.

    Args:
        w0: Initial vorticity (projected onto the kept modes), zero mean.
        nu: Viscosity, ``>= 0``.
        times: Output times, increasing, ``times[0]`` the time of ``w0``.
        dt: Largest substep.
        forcing: Time-independent forcing ``f`` on the grid; ``None`` for none.
        max_cfl: Courant number above which to warn.

    Returns:
        The vorticity at ``times`` (float64).

    Shapes:
        - w0: :math:`(N, n, n)`; forcing: :math:`(n, n)`; times: :math:`(T,)`.
        - output: :math:`(N, T, n, n)`.
    """
    num, n = w0.shape[0], w0.shape[-1]
    kx, ky, mask = _torus_wavenumbers(n)
    dx_op, dy_op = 2j * math.pi * kx, 2j * math.pi * ky
    diffusion = -nu * 4 * math.pi**2 * (kx**2 + ky**2)
    f_hat = 0.0 if forcing is None else torch.fft.rfft2(forcing.to(torch.float64)) * mask
    w_hat = torch.fft.rfft2(w0.to(torch.float64)) * mask
    inverse_laplacian = _inverse_laplacian(kx, ky)

    def tendency(v_hat: Tensor) -> Tensor:
        psi_hat = v_hat * inverse_laplacian
        u = torch.fft.irfft2(dy_op * psi_hat, s=(n, n))
        v = torch.fft.irfft2(-dx_op * psi_hat, s=(n, n))
        wx = torch.fft.irfft2(dx_op * v_hat, s=(n, n))
        wy = torch.fft.irfft2(dy_op * v_hat, s=(n, n))
        return -torch.fft.rfft2(u * wx + v * wy) * mask + f_hat

    out = torch.empty(num, len(times), n, n, dtype=torch.float64)
    out[:, 0] = torch.fft.irfft2(w_hat, s=(n, n))
    intervals = torch.diff(times.to(torch.float64)).tolist()
    step_counts = [max(1, math.ceil(interval / dt - 1e-9)) for interval in intervals]
    warned = False
    with _progress(sum(step_counts), "NavierStokes2D", "step") as bar:
        for index, (interval, steps) in enumerate(
            zip(intervals, step_counts, strict=True), start=1
        ):
            h = interval / steps
            explicit = 1 + h / 2 * diffusion
            implicit = 1 / (1 - h / 2 * diffusion)
            for _ in range(steps):
                n0 = tendency(w_hat)
                predicted = (explicit * w_hat + h * n0) * implicit
                w_hat = (explicit * w_hat + h / 2 * (n0 + tendency(predicted))) * implicit
            w = torch.fft.irfft2(w_hat, s=(n, n))
            if not torch.isfinite(w).all():
                raise ValueError(
                    f"NavierStokes2D: the solution blew up by t={float(times[index]):.4g} "
                    f"with substeps of {h:.3g}; lower dt"
                )
            u, v = navier_stokes_velocity(w)
            courant = (float(u.abs().max()) + float(v.abs().max())) * h * n
            if courant > max_cfl and not warned:
                warnings.warn(
                    f"NavierStokes2D: Courant number {courant:.2f} > {max_cfl} at "
                    f"t={float(times[index]):.4g} with substeps of {h:.3g}; the explicit "
                    "advection may be inaccurate or unstable, lower dt",
                    stacklevel=2,
                )
                warned = True
            out[:, index] = w
            bar.update(steps)
    return out


def navier_stokes_forcing(resolution: int, amplitude: float = 0.1) -> Tensor:
    """FNO's forcing ``amplitude (sin 2 pi (x + y) + cos 2 pi (x + y))`` on the grid.

    Shapes:
        - output: :math:`(n, n)`, ``x`` along the first axis.
    """
    x = torch.arange(resolution, dtype=torch.float64) / resolution
    phase = 2 * math.pi * (x[:, None] + x[None, :])
    return amplitude * (torch.sin(phase) + torch.cos(phase))


class NavierStokes2D(SimulatedTrajectories):
    """Vorticity of 2-D incompressible Navier-Stokes on the unit torus, FNO's set-up.

    Follows "Fourier Neural Operator for Parametric Partial Differential Equations" (Li
    et al., 2021): ``w_t + u . grad w = nu Delta w + f`` with
    ``f = 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))`` and
    ``w0 ~ N(0, 7^(3/2) (-Delta + 49 I)^(-2.5))`` (the formula read literally, zero
    mean), solved by :func:`solve_navier_stokes` (pseudo-spectral, 2/3 de-aliasing,
    Crank-Nicolson diffusion, Heun advection), batched over samples. Snapshots are
    stored at ``linspace(0, t_max, num_snapshots)``, ``t = 0`` included. FNO solves on
    256^2 with ``dt = 1e-4`` and keeps 64^2, 50 unit steps; the defaults here are
    CPU-sized, and ``dt`` may be larger on coarse grids as long as the Courant number
    stays small (a warning says when it does not).

    Args:
        num_samples: Number of initial vorticities.
        resolution: Grid points per side.
        nu: Viscosity.
        dt: Largest time substep.
        t_max: Final time.
        num_snapshots: Stored time stamps, ``t = 0`` included.
        forcing_amplitude: Amplitude of the forcing; 0 for decaying turbulence.
        grf_scale: Factor in front of the covariance of the initial vorticity.
        grf_tau: ``tau`` of the covariance ``(-Delta + tau^2 I)^(-alpha)``.
        grf_alpha: ``alpha`` of that covariance.
        max_cfl: Courant number above which generation warns.
        **kwargs: Arguments of :class:`SimulatedTrajectories` and
            :class:`TrajectoryDataModule`.

    Shapes:
        - y: :math:`(T, H, W)`, ``w[i, j] = w(i / H, j / W)``.
        - t: :math:`(T,)`.
    """

    def __init__(
        self,
        num_samples: int = 32,
        resolution: int = 32,
        nu: float = 1e-3,
        dt: float = 1e-2,
        t_max: float = 10.0,
        num_snapshots: int = 11,
        forcing_amplitude: float = 0.1,
        grf_scale: float = 7.0**1.5,
        grf_tau: float = 7.0,
        grf_alpha: float = 2.5,
        max_cfl: float = 0.5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_positive("num_samples", num_samples, integer=True)
        _check_resolution(resolution)
        _check_positive("nu", nu)
        _check_positive("dt", dt)
        _check_positive("t_max", t_max)
        _check_snapshots(num_snapshots)
        if not math.isfinite(forcing_amplitude):
            raise ValueError(f"forcing_amplitude must be finite, got {forcing_amplitude}")
        _check_positive("grf_scale", grf_scale)
        _check_positive("grf_tau", grf_tau)
        _check_positive("grf_alpha", grf_alpha)
        _check_positive("max_cfl", max_cfl)

    def generator_parameters(self) -> dict[str, Any]:
        keys = ("num_samples", "resolution", "nu", "dt", "t_max", "num_snapshots")
        keys += ("forcing_amplitude", "grf_scale", "grf_tau", "grf_alpha")
        return {k: self.hparams[k] for k in keys}

    def _raw_num_times(self) -> int:
        return self.hparams.num_snapshots

    def _raw_state_shape(self) -> tuple[int, ...]:
        return (self.hparams.resolution, self.hparams.resolution)

    def simulate(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        hp = self.hparams
        rng = np.random.default_rng(self.data_seed)
        w0 = gaussian_random_field(
            hp.num_samples, hp.resolution, 2, hp.grf_scale, hp.grf_tau, hp.grf_alpha, rng, True
        )
        t = _time_grid(hp.t_max, hp.num_snapshots)
        forcing = navier_stokes_forcing(hp.resolution, hp.forcing_amplitude)
        w = solve_navier_stokes(
            torch.from_numpy(w0), hp.nu, torch.from_numpy(t), hp.dt, forcing, hp.max_cfl
        )
        return w.numpy(), t, {}


def read_fno_mat(
    path: str | Path,
    keys: dict[str, str] | None = None,
    spatial_dims: int | None = None,
    num_samples: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Read an FNO-format ``.mat`` file into trajectories, time first.

    FNO's files hold ``u``, the solutions with time last ((N, X) for a single Burgers
    snapshot, (N, X, T) or (N, H, W, T)), and optionally ``a``, the initial conditions
    (N, X) or (N, H, W), and ``t``. ``a`` is prepended to ``u`` as the first stamp.
    MATLAB v5 files are read with ``scipy.io.loadmat``, v7.3 (HDF5) files with ``h5py``
    (whose axes MATLAB stores reversed).

    Args:
        path: The ``.mat`` file.
        keys: Variable names per role, overriding ``{"a": "a", "u": "u", "t": "t"}``; a
            role named here must exist in the file.
        spatial_dims: 1 or 2; ``None`` infers it from ``a``, or from ``u`` when ``u`` is
            (N, X) or (N, H, W, T).
        num_samples: Read only the first ``num_samples`` samples.

    Returns:
        ``(y, t, info)``: the trajectories, the file's time stamps of ``u`` (or
        ``None``) and a description of what was read.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        ValueError: If variables are missing (the message lists those found) or have
            shapes that do not fit together.

    Shapes:
        - y: :math:`(N, T, X)` or :math:`(N, T, H, W)`.
        - t: :math:`(T_u,)`.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"FNO .mat file not found: path={str(path)!r}")
    unknown = sorted(set(keys or {}) - set(FNO_KEYS))
    if unknown:
        raise ValueError(f"keys has unknown roles {unknown}; accepted roles are 'a', 'u', 't'")
    if spatial_dims not in (None, 1, 2):
        raise ValueError(f"spatial_dims must be 1, 2 or null, got {spatial_dims!r}")
    if num_samples is not None:
        _check_positive("num_samples", num_samples, integer=True)
    roles = {**FNO_KEYS, **(keys or {})}
    required = {"u"} | set(keys or {})
    arrays, found, file_format = _read_mat_variables(path, roles, num_samples)
    missing = sorted(role for role in required if role not in arrays)
    if missing:
        raise ValueError(
            f"{path}: no variable {', '.join(repr(roles[r]) for r in missing)} (role "
            f"{', '.join(missing)}); the file holds {found}. FNO files hold 'u' (solutions, "
            "time last) and optionally 'a' (initial conditions) and 't'; name others with "
            "keys={'u': ..., 'a': ..., 't': ...}"
        )

    for role, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"{path}: {roles[role]!r} holds {array.dtype} values; real numbers are accepted"
            )
    u, a = arrays["u"], arrays.get("a")
    if spatial_dims is None:
        if a is not None:
            spatial_dims = a.ndim - 1
        elif u.ndim in (2, 4):
            spatial_dims = u.ndim // 2
        else:
            raise ValueError(
                f"{path}: cannot tell whether {roles['u']!r} of shape {u.shape} is (N, X, T) "
                "or (N, H, W); pass spatial_dims=1 or 2"
            )
    if spatial_dims not in (1, 2):
        raise ValueError(
            f"{path}: {roles['a']!r} of shape {a.shape} is neither (N, X) nor (N, H, W)"
        )
    if u.ndim == spatial_dims + 1:
        u = u[:, None]
    elif u.ndim == spatial_dims + 2:
        u = np.moveaxis(u, -1, 1)
    else:
        raise ValueError(
            f"{path}: {roles['u']!r} has shape {u.shape}; with {spatial_dims} spatial "
            f"dimension(s) it must have {spatial_dims + 1} or {spatial_dims + 2} axes"
        )
    if a is not None:
        if a.shape != (u.shape[0], *u.shape[2:]):
            raise ValueError(
                f"{path}: {roles['a']!r} of shape {a.shape} does not match {roles['u']!r} "
                f"(N={u.shape[0]}, space {u.shape[2:]})"
            )
        u = np.concatenate([a[:, None], u], axis=1)
    t = arrays.get("t")
    info = {
        "path": str(path.resolve()),
        "format": file_format,
        "keys": {role: roles[role] for role in arrays},
        "spatial_dims": spatial_dims,
        "prepended_a": a is not None,
        "shape": list(u.shape),
    }
    return u, None if t is None else np.asarray(t, dtype=np.float64).reshape(-1), info


def _read_mat_variables(
    path: Path, roles: dict[str, str], num_samples: int | None
) -> tuple[dict[str, np.ndarray], list[str], str]:
    """The variables of ``roles`` present in the file, the names found, the format."""
    import h5py

    arrays: dict[str, np.ndarray] = {}
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            found = sorted(k for k in f if not k.startswith("#"))
            for role, key in roles.items():
                if key not in f:
                    continue
                dataset = f[key]
                if not isinstance(dataset, h5py.Dataset):
                    raise ValueError(f"{path}: {key!r} is a group, not an array")
                if role != "t" and num_samples is not None:
                    data = dataset[..., :num_samples]  # MATLAB's first axis is stored last
                else:
                    data = dataset[()]
                arrays[role] = np.asarray(data).transpose()
        return arrays, found, "hdf5 (MATLAB v7.3)"

    from scipy.io import loadmat, whosmat

    try:
        found = sorted(name for name, _, _ in whosmat(path))
    except Exception as err:  # scipy raises several types for a file that is not a .mat
        raise ValueError(f"{path} is neither a MATLAB .mat file nor HDF5: {err}") from err
    wanted = {role: key for role, key in roles.items() if key in found}
    content = loadmat(path, variable_names=list(wanted.values()))
    for role, key in wanted.items():
        data = np.asarray(content[key])
        if role != "t" and num_samples is not None:
            data = data[:num_samples]
        arrays[role] = data
    return arrays, found, "MATLAB v5"


class FNOMatFile(TrajectoryDataModule):
    """Trajectories from an FNO-format ``.mat`` file (Burgers or Navier-Stokes).

    Reads the file with :func:`read_fno_mat` (``a`` prepended to ``u`` as the first
    stamp) and serves ``(N, T, X)`` or ``(N, T, H, W)`` trajectories. Time stamps come
    from ``t`` if given, else from ``dt`` (``0, dt, 2 dt, ...``), else from the file's
    ``t`` variable (with 0 prepended for ``a``), else they count steps ``0, 1, ...``.
    Nothing is cached: the file is the source.

    Args:
        path: The ``.mat`` file.
        keys: Variable names per role ("a", "u", "t") overriding FNO's names.
        spatial_dims: 1 or 2; ``None`` infers it from the arrays.
        dt: Time between stamps.
        t: All time stamps, ``a``'s included.
        num_samples: Read only the first ``num_samples`` samples.
        **kwargs: Arguments of :class:`TrajectoryDataModule` (``cache_dir`` is unused).

    Shapes:
        - y: :math:`(T, X)` or :math:`(T, H, W)`.
        - t: :math:`(T,)`.
    """

    def __init__(
        self,
        path: str,
        keys: dict[str, str] | None = None,
        spatial_dims: int | None = None,
        dt: float | None = None,
        t: list[float] | None = None,
        num_samples: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if spatial_dims not in (None, 1, 2):
            raise ValueError(f"spatial_dims must be 1, 2 or null, got {spatial_dims!r}")
        if dt is not None:
            _check_positive("dt", dt)
        if dt is not None and t is not None:
            raise ValueError(f"pass either dt or t, not both (got dt={dt} and t={t})")
        if num_samples is not None:
            _check_positive("num_samples", num_samples, integer=True)
        unknown = sorted(set(keys or {}) - set(FNO_KEYS))
        if unknown:
            raise ValueError(f"keys has unknown roles {unknown}; accepted roles are 'a', 'u', 't'")

    def source_name(self) -> str:
        return str(self.hparams.path)

    def load(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        hp = self.hparams
        y, file_t, info = read_fno_mat(hp.path, hp["keys"], hp.spatial_dims, hp.num_samples)
        steps = y.shape[1]
        if hp.t is not None:
            t = np.asarray(hp.t, dtype=np.float64)
            if t.shape != (steps,):
                raise ValueError(
                    f"t has {t.size} stamps but {hp.path} holds {steps} per trajectory "
                    f"({'a at t=0 included' if info['prepended_a'] else 'no a'})"
                )
            origin = "argument t"
        elif hp.dt is not None:
            t, origin = hp.dt * np.arange(steps, dtype=np.float64), "argument dt"
        elif file_t is not None:
            t = np.concatenate([[0.0], file_t]) if info["prepended_a"] else file_t
            if t.shape != (steps,):
                raise ValueError(
                    f"{hp.path}: its variable {info['keys']['t']!r} has {file_t.size} stamps "
                    f"but the trajectories have {steps}; pass t or dt instead"
                )
            origin = "file"
        else:
            t, origin = np.arange(steps, dtype=np.float64), "steps"
            log.info("FNOMatFile: %s has no time stamps; using steps 0..%d", hp.path, steps - 1)
        return y, t, {**info, "time_stamps": origin}
