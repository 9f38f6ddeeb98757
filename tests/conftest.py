"""Shared fixtures: every test runs offline, in its own folder, with its own caches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder with W&B offline and an empty zoo cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path / "zoo_home"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    return tmp_path


@pytest.fixture
def tiny_mask_config(tmp_path: Path) -> Path:
    """A mask fit of a few steps on the bundled digits."""
    path = tmp_path / "tiny_mask.yaml"
    path.write_text(
        """
seed_everything: 0
model:
  class_path: MaskedFourierClassifier
  init_args:
    classifier: small_cnn_mnist.digits
    lr: 0.05
data:
  class_path: MNISTDigits
  init_args:
    batch_size: 32
    train_subset: 64
trainer:
  max_epochs: 2
  limit_val_batches: 2
  limit_test_batches: 2
  accelerator: cpu
  enable_progress_bar: false
  enable_model_summary: false
  callbacks:
    - class_path: FrequencySpectrumCallback
      init_args:
        every_n_epochs: 1
        num_images: 4
"""
    )
    return path


@pytest.fixture
def quiet_trainer(tmp_path: Path):
    """A factory of CPU trainers without logger, checkpoints, progress bars or validation."""
    import lightning as L

    def make(root: Path | None = None, **kwargs) -> L.Trainer:
        defaults = {
            "accelerator": "cpu",
            "logger": False,
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "limit_val_batches": 0,
            "default_root_dir": root or tmp_path,
        }
        return L.Trainer(**{**defaults, **kwargs})

    return make


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
