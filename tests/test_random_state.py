"""A fit resumed with RandomStateCheckpoint ends where the uninterrupted one does."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from callbacks import RandomStateCheckpoint


class NoisyRegression(L.LightningModule):
    """Every step draws from torch's and NumPy's global generators, as noisy training does."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        noise = torch.randn_like(x) * 0.5 + float(np.random.normal()) * 0.1
        return (self.layer(x + noise) - y).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)


def fit(root, epochs: int, callbacks: list, ckpt_path=None) -> NoisyRegression:
    L.seed_everything(0, verbose=False)
    model = NoisyRegression()
    trainer = L.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=str(root), save_last=True)]
        + callbacks,
    )
    trainer.fit(model, loader(), ckpt_path=ckpt_path)
    return model


def resumed(tmp_path, callbacks_of) -> torch.Tensor:
    fit(tmp_path / "a", 2, callbacks_of())
    torch.manual_seed(123)  # a new process: the generators are somewhere else
    np.random.seed(123)
    model = fit(tmp_path / "a", 4, callbacks_of(), ckpt_path=str(tmp_path / "a" / "last.ckpt"))
    return model.layer.weight.detach().clone()


def test_a_resumed_fit_matches_the_uninterrupted_one(tmp_path):
    straight = fit(tmp_path / "b", 4, [RandomStateCheckpoint()]).layer.weight.detach()
    assert torch.equal(resumed(tmp_path, lambda: [RandomStateCheckpoint()]), straight)


def test_without_it_the_resumed_fit_differs(tmp_path):
    straight = fit(tmp_path / "b", 4, []).layer.weight.detach()
    assert not torch.allclose(resumed(tmp_path, list), straight)
