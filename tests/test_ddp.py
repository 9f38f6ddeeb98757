"""Data-parallel runs: two CPU processes must learn and measure what one process does."""

import copy
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset

import zoo
from callbacks.adversarial import AdversarialRobustnessCallback
from datamodules import MNISTDigits
from zoo.fourier import MaskedFourierClassifier


class GlobalBatches(Sampler):
    """The union of the batches that ``world_size`` DDP ranks draw at each step.

    Lightning gives every rank a ``DistributedSampler``, shuffling for training and not for
    validation or testing (``shuffle=False``); one process that takes the union of the
    ranks' batches sees the same global batch at every step.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        world_size: int = 2,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.size, self.batch_size, self.world_size, self.seed = size, batch_size, world_size, seed
        self.shuffle = shuffle
        self.epoch = 0  # each pass over the sampler is one epoch

    def _per_rank(self) -> list[list[int]]:
        orders = []
        for rank in range(self.world_size):
            sampler = DistributedSampler(
                range(self.size), self.world_size, rank, shuffle=self.shuffle, seed=self.seed
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


class SavedRobustness(AdversarialRobustnessCallback):
    """The callback, with global rank 0 saving its results to ``path`` at the end of testing.

    Under ``ddp_spawn`` the callback runs on copies in the worker processes; the file is how
    its results reach the test.
    """

    def __init__(self, path: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.path = path

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_test_epoch_end(trainer, pl_module)
        if trainer.is_global_zero:
            torch.save(self.results, self.path)


@pytest.mark.slow
def test_ddp_spawn_robustness_matches_one_process(tmp_path, quiet_trainer):
    # float64, so that no gradient sign in PGD hangs on how the images are batched
    num_images, per_rank_batch = 64, 16  # 2 ranks x 2 batches each, no padded duplicates
    data = MNISTDigits(batch_size=per_rank_batch)
    data.setup("test")
    images, labels = (t[:num_images] for t in data.splits["test"].tensors)
    dataset = TensorDataset(images, labels)
    # fixed trained weights: a freshly seeded SmallCNN calls every digit the same class
    model = zoo.load_pretrained("small_cnn_mnist.digits")
    settings = {"precision": "64-true"}
    attack = {"eps": [0, 0.05, 0.1, 0.15], "steps": 3, "max_batches": None}

    single_path, ddp_path = tmp_path / "single.pt", tmp_path / "ddp.pt"
    loader = DataLoader(
        dataset, batch_sampler=GlobalBatches(num_images, per_rank_batch, shuffle=False)
    )
    callback = SavedRobustness(single_path, **attack)
    trainer = quiet_trainer(tmp_path / "single", devices=1, callbacks=[callback], **settings)
    trainer.test(copy.deepcopy(model), dataloaders=loader, verbose=False)

    loader = DataLoader(dataset, batch_size=per_rank_batch)  # Lightning adds the sampler
    callback = SavedRobustness(ddp_path, **attack)
    trainer = quiet_trainer(
        tmp_path / "ddp", devices=2, strategy="ddp_spawn", callbacks=[callback], **settings
    )
    trainer.test(copy.deepcopy(model), dataloaders=loader, verbose=False)

    single = torch.load(single_path, weights_only=True)
    distributed = torch.load(ddp_path, weights_only=True)
    assert single["images"] == distributed["images"] == num_images
    accuracy = list(single["robust_accuracy"].values())
    assert accuracy[0] > 0.9 and accuracy[-1] < accuracy[1] < accuracy[0]  # attacks bite
    assert distributed["robust_accuracy"] == single["robust_accuracy"]
    for kind in ("perturbation", "saliency"):
        one, two = single[kind], distributed[kind]
        assert set(one) == set(two) and {"profile", "hf_fraction"} <= set(one)
        for key, value in one.items():  # sums in another order: float32 rounding at most
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(two[key], value, rtol=1e-6, atol=0)
            else:
                assert two[key] == pytest.approx(value, rel=1e-9, abs=0), (kind, key)
