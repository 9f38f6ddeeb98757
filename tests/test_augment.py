import torch

from zoo.classifiers import ImageClassifier
from zoo.classifiers.augment import random_affine
from zoo.nn import SmallCNN


def test_identity_when_no_transform():
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(random_affine(x), x, atol=1e-6)


def test_rotation_keeps_a_centred_disk():
    h = torch.arange(16.0) - 7.5
    disk = ((h[:, None] ** 2 + h[None, :] ** 2) < 16).float()[None, None].repeat(4, 1, 1, 1)
    rotated = random_affine(disk, degrees=180, generator=torch.Generator().manual_seed(0))
    assert (rotated - disk).abs().mean() < 0.05  # a disk is rotation invariant
    square = torch.zeros(4, 1, 16, 16)
    square[..., 2:14, 2:14] = 1
    turned = random_affine(square, degrees=180, generator=torch.Generator().manual_seed(0))
    assert (turned - square).abs().mean() > 0.02  # a square is not


def test_translation_moves_mass_and_scale_shrinks():
    x = torch.zeros(1, 1, 16, 16)
    x[..., 6:10, 6:10] = 1
    shifted = random_affine(x, translate=(0.25, 0.0), generator=torch.Generator().manual_seed(1))
    cols = torch.arange(16.0)
    centre = lambda im: (im.sum(-2).flatten() * cols).sum() / im.sum()  # noqa: E731
    assert abs(centre(shifted) - centre(x)) > 0.5
    small = random_affine(x, scale=(0.5, 0.5))
    assert small.sum() < 0.5 * x.sum()


def test_adversarial_training_step_sees_attacked_images():
    torch.manual_seed(0)
    model = ImageClassifier(
        backbone=SmallCNN(hidden_dim=4), adversarial_eps=0.1, adversarial_steps=3
    )
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    model.train()
    adv = model.training_inputs(x, y)
    assert model.training and (adv - x).abs().max() <= 0.1 + 1e-6 and (adv != x).any()
    loss = torch.nn.functional.cross_entropy
    assert loss(model(adv), y) > loss(model(x), y)
