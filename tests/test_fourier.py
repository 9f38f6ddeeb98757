import pytest
import torch
import torch.nn.functional as F

from zoo.fourier import FourierMask, MaskedFourierClassifier
from zoo.hub import load_model


def test_mask_identity_and_clamp():
    mask = FourierMask((28, 28))
    x = torch.rand(5, 1, 28, 28)
    assert torch.allclose(mask(x), x, atol=1e-6)
    with torch.no_grad():
        mask.weight.add_(torch.randn_like(mask.weight))
    mask.clamp_()
    assert mask.weight.min() >= 0 and mask.weight.max() <= 1
    assert "image_size=(28, 28)" in repr(mask)


def test_mask_size_mismatch_is_a_clear_error():
    mask = FourierMask((28, 28))
    with pytest.raises(ValueError, match=r"cannot filter images of shape \(2, 1, 32, 32\)"):
        mask(torch.rand(2, 1, 32, 32))


def test_loss_at_initialisation_is_one_plus_lambda():
    model = MaskedFourierClassifier(lam=0.2)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    model.log = lambda *args, **kwargs: None
    loss = model._step((x, y), "train")
    assert loss.item() == pytest.approx(1.2, abs=1e-5)


def test_loss_matches_hand_computation():
    torch.manual_seed(0)
    model = MaskedFourierClassifier(lam=0.5)
    with torch.no_grad():
        model.mask.weight.sub_(0.1 * torch.rand_like(model.mask.weight))
    model.log = lambda *args, **kwargs: None
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    loss = model._step((x, y), "train")
    f = model.classifier
    masked_x = torch.fft.ifft2(model.mask.weight[0] * torch.fft.fft2(x)).real
    dce = F.cross_entropy(f(masked_x), y, reduction="none") - F.cross_entropy(
        f(x), y, reduction="none"
    )
    expected = torch.exp(dce**2).mean() + 0.5 * model.mask.weight.abs().sum() / 784
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_classifier_is_frozen_and_only_the_mask_trains():
    model = MaskedFourierClassifier()
    model.train()
    assert not model.classifier.training
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["mask.weight"]
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))
    model.log = lambda *args, **kwargs: None
    model._step((x, y), "train").backward()
    assert model.mask.weight.grad is not None and torch.isfinite(model.mask.weight.grad).all()


def test_per_image_masks_are_independent():
    torch.manual_seed(0)
    model = MaskedFourierClassifier(per_image=True, num_images=4, target="prediction")
    model.log = lambda *args, **kwargs: None
    with torch.no_grad():
        model.mask.weight.mul_(0.7)
    x, y, index = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,)), torch.arange(4)
    model._step((x, y, index), "train").backward()
    together = model.mask.weight.grad.clone()
    for i in range(4):
        model.mask.weight.grad = None
        model._step((x[i : i + 1], y[i : i + 1], index[i : i + 1]), "train").backward()
        assert torch.allclose(model.mask.weight.grad[i], together[i], atol=1e-6)


def test_per_image_needs_indices():
    model = MaskedFourierClassifier(per_image=True, num_images=4)
    with pytest.raises(ValueError, match="return_index"):
        model(torch.rand(2, 1, 28, 28))


def test_load_model_errors():
    with pytest.raises(ValueError, match="did you mean 'small_cnn_mnist.digits'"):
        load_model("small_cnn_mnist.digit")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model("missing/model.ckpt")
    model = load_model({"class_path": "zoo.nn.MLP", "init_args": {"hidden_dim": 8}})
    assert model.num_features == 8


def test_per_image_fit_with_stopping_rule(quiet_trainer):
    from callbacks import MaskStoppingRule
    from datamodules import MNISTDigits

    torch.manual_seed(0)
    model = MaskedFourierClassifier(
        per_image=True, num_images=8, target="prediction", lam=0.07, lr=0.05, schedule="constant"
    )
    data = MNISTDigits(batch_size=8, train_subset=8, return_index=True)
    rule = MaskStoppingRule(stage="train", accuracy_ratio=1.0, tolerance=1.0, patience=2)
    trainer = quiet_trainer(max_epochs=30, callbacks=[rule])
    trainer.fit(model, data)
    assert rule.stopped_epoch is not None and rule.stopped_epoch < 29
    l1 = model.mask.weight.abs().flatten(1).mean(1)
    assert (l1 < 1).all() and l1.shape == (8,)
    assert (
        trainer.callback_metrics["train/masked_acc"] >= trainer.callback_metrics["train/clean_acc"]
    )


def test_per_image_refuses_partial_batches(quiet_trainer):
    from datamodules import MNISTDigits

    model = MaskedFourierClassifier(per_image=True, num_images=8)
    data = MNISTDigits(batch_size=4, train_subset=8, return_index=True)
    with pytest.raises(ValueError, match="every training image in one batch"):
        quiet_trainer(max_epochs=1).fit(model, data)
