import math

import pytest
import torch

import zoo
from callbacks.adversarial import AdversarialRobustnessCallback, spectral_sums
from datamodules import MNISTDigits


def test_spectral_sums_of_a_known_spectrum():
    n = 16
    grid = torch.arange(n, dtype=torch.float64)
    high = torch.cos(2 * math.pi * 6 * grid / n)[None, :].expand(n, n)  # radius 0.75
    low = torch.cos(2 * math.pi * 1 * grid / n)[:, None].expand(n, n)  # radius 0.125
    delta = torch.stack([high, low])[:, None]  # two images, one channel
    sums = spectral_sums(delta, radius=0.5, num_bins=8)
    assert sums["count"] == 2
    assert sums["hf_fraction"].item() == pytest.approx(1.0)  # 1 for the high tone, 0 for low
    power = sums["profile"]
    # the tones sit in rings floor(0.125 / (sqrt(2) / 8)) = 0 and floor(0.75 / (sqrt(2) / 8)) = 4
    assert power.shape == (8,)
    assert ((power > 1e-9 * power.max()).nonzero().flatten() == torch.tensor([0, 4])).all()
    centre = n // 2
    peaks = sums["log_magnitude"]
    assert peaks[centre, centre + 6] > peaks[centre + 3, centre + 3]


def test_callback_on_a_trained_classifier(quiet_trainer):
    model = zoo.load_pretrained("small_cnn_mnist.digits")
    callback = AdversarialRobustnessCallback(eps=[0, 0.05, 0.15], steps=5, max_batches=2)
    data = MNISTDigits(batch_size=32)
    quiet_trainer(callbacks=[callback]).test(model, data, verbose=False)
    results = callback.results
    accuracy = list(results["robust_accuracy"].values())
    assert results["images"] == 64
    assert accuracy[0] > 0.9 and accuracy[0] >= accuracy[1] >= accuracy[2]
    for kind in ("perturbation", "saliency"):
        assert 0 <= results[kind]["hf_fraction"] <= 1
        assert results[kind]["log_magnitude"].shape == (28, 28)


def test_bad_arguments():
    with pytest.raises(ValueError, match="eps"):
        AdversarialRobustnessCallback(eps=[-0.1])
    with pytest.raises(ValueError, match="stage"):
        AdversarialRobustnessCallback(stage="train")
