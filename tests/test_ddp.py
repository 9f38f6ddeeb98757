"""Data-parallel mask fits: two CPU processes must learn what one process learns."""

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from datamodules import MNISTDigits
from zoo.fourier import MaskedFourierClassifier


class GlobalBatches(Sampler):
    """The union of the batches that ``world_size`` DDP ranks draw at each step.

    Lightning gives every rank a shuffling ``DistributedSampler``; one process that takes
    the union of the ranks' batches sees the same global batch at every step.
    """

    def __init__(self, size: int, batch_size: int, world_size: int = 2, seed: int = 0) -> None:
        self.size, self.batch_size, self.world_size, self.seed = size, batch_size, world_size, seed
        self.epoch = 0  # each pass over the sampler is one epoch

    def _per_rank(self) -> list[list[int]]:
        orders = []
        for rank in range(self.world_size):
            sampler = DistributedSampler(
                range(self.size), self.world_size, rank, shuffle=True, seed=self.seed
            )
            sampler.set_epoch(self.epoch)
            orders.append(list(sampler))
        return orders

    def __len__(self) -> int:
        return self.size // (self.batch_size * self.world_size)

    def __iter__(self):
        orders = self._per_rank()
        self.epoch += 1
        for k in range(len(self)):
            yield [
                i
                for order in orders
                for i in order[k * self.batch_size : (k + 1) * self.batch_size]
            ]


def test_ddp_spawn_matches_one_process(tmp_path, quiet_trainer):
    # float32 reduction-order noise would be amplified by Adam: compare in float64
    settings = {"max_epochs": 2, "precision": "64-true"}
    per_rank_batch = 16
    L.seed_everything(0)
    data = MNISTDigits(batch_size=per_rank_batch, train_subset=64)
    data.setup()
    single = MaskedFourierClassifier(lr=0.05)
    loader = DataLoader(data.splits["train"], batch_sampler=GlobalBatches(64, per_rank_batch))
    trainer = quiet_trainer(tmp_path / "single", devices=1, **settings)
    trainer.fit(single, train_dataloaders=loader)

    L.seed_everything(0)
    distributed = MaskedFourierClassifier(lr=0.05)
    trainer = quiet_trainer(tmp_path / "ddp", devices=2, strategy="ddp_spawn", **settings)
    trainer.fit(distributed, data)

    a = single.mask.weight.detach().double()
    b = distributed.mask.weight.detach().double()
    assert (a - 1).abs().max() > 0.05  # the mask did move
    assert torch.allclose(a, b, atol=1e-6), (a - b).abs().max()


@pytest.mark.slow
def test_ddp_spawn_writes_one_run_folder(isolated, tiny_mask_config):
    from zoo.cli import main

    main(
        [
            "fit",
            "-c",
            str(tiny_mask_config),
            "--trainer.devices",
            "2",
            "--trainer.strategy",
            "ddp_spawn",
        ]
    )
    runs = list((isolated / "runs" / "tiny_mask").iterdir())
    assert len(runs) == 1
    assert len(list((runs[0] / "wandb").glob("offline-run-*"))) == 1
    assert (runs[0] / "checkpoints" / "last.ckpt").is_file()
