"""The loaders every data module of the zoo shares: one per split, seeded shuffling."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


class SplitDataModule(L.LightningDataModule):
    """A data module whose ``setup()`` fills ``self.splits`` with train / val / test sets.

    Its hyper-parameters must include ``batch_size``, ``num_workers`` and ``seed``. The
    training loader shuffles (unless :attr:`shuffle_train` says otherwise) with a generator
    seeded by ``seed``, or with the global generator when :attr:`seeded_shuffle` is off;
    prediction runs on the test split.
    """

    abstract = True  # a base: listed by `zoo list` only through its subclasses
    seeded_shuffle = True
    splits: dict[str, Dataset]

    @property
    def shuffle_train(self) -> bool:
        return True

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        if split not in self.splits:
            self.setup()
        generator = None
        if shuffle and self.seeded_shuffle:
            generator = torch.Generator().manual_seed(self.hparams.seed)
        return DataLoader(
            self.splits[split],
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.hparams.num_workers,
            persistent_workers=self.hparams.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=self.shuffle_train)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
