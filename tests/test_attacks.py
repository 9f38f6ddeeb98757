import pytest
import torch
import torchattacks
from torch import nn

import zoo
from zoo.attacks import fgsm, pgd


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return zoo.load_pretrained("small_cnn_mnist.digits")


@pytest.fixture(scope="module")
def batch():
    from datamodules import MNISTDigits

    data = MNISTDigits()
    data.setup()
    x, y = data.splits["test"].tensors
    return x[:16], y[:16]


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_matches_torchattacks(model, batch, norm):
    x, y = batch
    eps, alpha, steps = (0.1, 0.02, 7) if norm == "linf" else (1.5, 0.3, 7)
    peer_cls = torchattacks.PGD if norm == "linf" else torchattacks.PGDL2
    peer = peer_cls(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    ours = pgd(model, x, y, eps=eps, step_size=alpha, steps=steps, norm=norm, random_start=False)
    assert (ours - peer).abs().max() < 1e-5


def test_fgsm_matches_torchattacks(model, batch):
    x, y = batch
    peer = torchattacks.FGSM(model, eps=0.1)(x, y)
    assert (fgsm(model, x, y, eps=0.1) - peer).abs().max() < 1e-6


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [True, False])
def test_stays_in_ball_and_pixel_range(model, batch, norm, random_start):
    x, y = batch
    eps = 0.05 if norm == "linf" else 1.0
    adv = pgd(model, x, y, eps=eps, steps=5, norm=norm, random_start=random_start)
    delta = (adv - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert adv.min() >= 0 and adv.max() <= 1
    clean_acc = (model(x).argmax(1) == y).float().mean()
    assert (model(adv).argmax(1) == y).float().mean() < clean_acc


def test_pixel_units_with_a_model_that_needs_normalised_inputs(model, batch):
    x, y = batch
    mean, std = model.mean.flatten().tolist(), model.std.flatten().tolist()

    class RawNetwork(nn.Module):  # expects normalised inputs, like many torchvision models
        def forward(self, z):
            return model.head(model.backbone(z))

    ours = pgd(
        RawNetwork(), x, y, eps=0.1, step_size=0.02, steps=5, random_start=False, mean=mean, std=std
    )
    reference = pgd(model, x, y, eps=0.1, step_size=0.02, steps=5, random_start=False)
    assert torch.allclose(ours, reference, atol=1e-5)
    assert (ours - x).abs().max() <= 0.1 + 1e-6


def test_model_mode_is_restored(model, batch):
    x, y = batch
    model.train()
    pgd(model, x, y, eps=0.05, steps=2)
    assert model.training and model.backbone.training
    model.eval()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps": -0.1}, "non-negative"),
        ({"eps": 5.0}, "exceeds"),
        ({"eps": 0.1, "norm": "l1"}, "unknown norm"),
        ({"eps": 0.1, "steps": 0}, "steps"),
        ({"eps": 0.1, "step_size": -1.0}, "step_size"),
    ],
)
def test_bad_arguments(model, batch, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pgd(model, *batch, **kwargs)


def test_outputs_that_are_not_logits_of_the_classes(batch):
    x, y = batch
    with pytest.raises(ValueError, match="not logits of the data's classes"):
        pgd(nn.Sequential(nn.Flatten(), nn.Linear(784, 3)), x, y, eps=0.1)
    with pytest.raises(ValueError, match=r"logits \(B, num_classes\)"):
        fgsm(nn.Identity(), x, y, eps=0.1)
