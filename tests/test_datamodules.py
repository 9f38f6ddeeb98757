import gzip
import struct

import numpy as np
import pytest
import torch

from datamodules import images
from datamodules.images import FashionMNIST, MNISTDigits, read_idx


def test_digits_split_is_deterministic_and_disjoint():
    dm = MNISTDigits(val_fraction=0.1, test_fraction=0.1, seed=3)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 4000, "val": 500, "test": 500}
    x, y = dm.splits["train"][0]
    assert x.shape == (1, 28, 28) and x.min() >= 0 and x.max() <= 1 and y.dtype == torch.long
    again = MNISTDigits(seed=3)
    again.setup()
    assert torch.equal(dm.splits["val"].tensors[0], again.splits["val"].tensors[0])
    flat = {k: v.tensors[0].flatten(1) for k, v in dm.splits.items()}
    train_rows = {tuple(r.tolist()) for r in flat["train"][:, ::7]}
    assert not any(tuple(r.tolist()) in train_rows for r in flat["test"][:, ::7])
    labels = dm.splits["train"].tensors[1]
    assert torch.bincount(labels).min() > 350  # classes stay roughly balanced


def test_return_index_and_subset():
    dm = MNISTDigits(train_subset=10, return_index=True, batch_size=4)
    x, y, index = next(iter(dm.train_dataloader()))
    assert len(dm.splits["train"]) == 10 and index.max() < 10 and x.shape == (4, 1, 28, 28)


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
        struct.pack(">I", n) for n in array.shape
    )
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(folder, n_train=20, n_test=10):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,)))


def test_fashion_mnist_reads_idx_files(tmp_path):
    _fake_fashion(tmp_path / "fmnist")
    dm = FashionMNIST(root=str(tmp_path / "fmnist"), val_fraction=0.25)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 15, "val": 5, "test": 10}


def test_fashion_mnist_missing_offline_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST", tmp_path / "not_installed")
    dm = FashionMNIST(root=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup()
    message = str(err.value)
    assert str(tmp_path / "nothing") in message and "not_installed" in message
    assert "apt-get install dataset-fashion-mnist" in message and "download: true" in message


def test_corrupt_idx_file(tmp_path):
    _write_idx(tmp_path / "x.gz", np.zeros((4, 28, 28)))
    with gzip.open(tmp_path / "x.gz") as f:
        data = f.read()
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(data[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_idx(tmp_path / "short.gz")
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad")


def test_nan_images_are_rejected(monkeypatch):
    class NaNDigits(MNISTDigits):
        def load(self):
            x = torch.full((10, 1, 28, 28), float("nan"))
            return (x, torch.zeros(10, dtype=torch.long)), None

    with pytest.raises(ValueError, match="NaN"):
        NaNDigits().setup()


def test_bad_arguments():
    with pytest.raises(ValueError, match="val_fraction"):
        MNISTDigits(val_fraction=1.5)
    with pytest.raises(ValueError, match="batch_size"):
        MNISTDigits(batch_size=0)
