import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo.classifiers import ImageClassifier
from zoo.fourier import MaskedFourierClassifier
from zoo.nn import MLP, SmallCNN, TimmBackbone
from zoo.registry import BACKBONES

BACKBONE_CONFIGS = {
    "small_cnn": {"in_channels": 1, "hidden_dim": 4, "num_layers": 2, "kernel_size": 5},
    "mlp": {"in_features": 784, "hidden_dim": 16, "num_layers": 2},
    "timm": {"model_name": "resnet10t", "in_channels": 1},
    "local_conv": {"hidden_dim": 4, "kernel_size": 5, "activation": "linear"},
    "circular_conv": {"hidden_dim": 4, "num_layers": 2},
    "locally_connected": {"hidden_dim": 2, "kernel_size": 3, "init_scale": 0.5},
}


def test_every_backbone_is_covered():
    assert set(BACKBONES.list()) == set(BACKBONE_CONFIGS)


@pytest.mark.parametrize("name", sorted(BACKBONE_CONFIGS))
def test_backbone_shapes_and_gradients(name):
    torch.manual_seed(0)
    model = ImageClassifier(backbone=BACKBONES.create(name, **BACKBONE_CONFIGS[name]))
    logits = model(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 10) and torch.isfinite(logits).all()
    logits.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing}"


def test_kernel_size_is_used():
    convs = [m for m in SmallCNN(kernel_size=7).modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.kernel_size == (7, 7) for c in convs)
    with pytest.raises(ValueError, match="odd"):
        SmallCNN(kernel_size=4)


def test_wrong_input_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="expected images"):
        ImageClassifier(backbone=SmallCNN())(torch.rand(2, 3, 28, 28))
    with pytest.raises(ValueError, match="in_features"):
        MLP(in_features=100)(torch.rand(2, 1, 28, 28))
    with pytest.raises(ValueError, match="unknown timm model"):
        TimmBackbone("no_such_model_xyz")
    with pytest.raises(FileNotFoundError, match="checkpoint_path"):
        TimmBackbone("resnet10t", checkpoint_path="/nonexistent/weights.pth")


def _fit_one_epoch(model, tmp_path):
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer = L.Trainer(
        max_epochs=1,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, loader, loader)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path, x


@pytest.mark.parametrize(
    "make",
    [
        lambda: ImageClassifier(backbone=SmallCNN(hidden_dim=4), mean=[0.5], std=[0.25]),
        lambda: ImageClassifier(
            backbone={"class_path": "zoo.nn.MLP", "init_args": {"hidden_dim": 8}}
        ),
        lambda: MaskedFourierClassifier(lr=0.05),
    ],
    ids=["image_classifier_cnn", "image_classifier_mlp", "masked_fourier"],
)
def test_checkpoint_round_trip_weights_only(make, tmp_path):
    torch.manual_seed(0)
    model = make()
    path, x = _fit_one_epoch(model, tmp_path)
    checkpoint = torch.load(path, weights_only=True)  # plain values only
    assert checkpoint["hyper_parameters"]
    loaded = type(model).load_from_checkpoint(path, weights_only=True)
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_small_vit_through_timm():
    vit = TimmBackbone(
        "vit_tiny_patch16_224",
        in_channels=1,
        img_size=28,
        model_kwargs={"patch_size": 4, "depth": 2, "embed_dim": 32, "num_heads": 2},
    )
    model = ImageClassifier(backbone=vit)
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_linear_networks_are_linear_and_init_scale_scales():
    from zoo.nn import LocalConvNet

    net = LocalConvNet(hidden_dim=3, activation="linear")
    a, b = torch.rand(2, 1, 1, 28, 28)
    with torch.no_grad():
        zero = net(torch.zeros(1, 1, 28, 28))
        assert torch.allclose(net(a + b) - zero, (net(a) - zero) + (net(b) - zero), atol=1e-5)
    torch.manual_seed(0)
    small = MLP(hidden_dim=8, init_scale=0.1)
    torch.manual_seed(0)
    plain = MLP(hidden_dim=8)
    assert torch.allclose(small.net[1].weight, 0.1 * plain.net[1].weight)
    with pytest.raises(ValueError, match="activation"):
        MLP(activation="tanh")
