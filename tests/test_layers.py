import itertools

import pytest
import torch
import torch.nn.functional as F

from zoo.nn.layers import CircularConv2d, LocallyConnected2d


def test_circular_conv_equals_explicit_circular_convolution():
    torch.manual_seed(0)
    layer = CircularConv2d(2, 3, (5, 4)).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64)
    expected = torch.zeros(2, 3, 5, 4, dtype=torch.float64)
    w = layer.weight
    for o, n0, n1 in itertools.product(range(3), range(5), range(4)):
        total = layer.bias[o].expand(2).clone()
        for c, m0, m1 in itertools.product(range(2), range(5), range(4)):
            total += w[o, c, m0, m1] * x[:, c, (n0 - m0) % 5, (n1 - m1) % 4]
        expected[:, o, n0, n1] = total
    assert torch.allclose(layer(x), expected, atol=1e-10)
    # and equals nn.functional.conv2d on a circularly padded input with the flipped kernel
    padded = F.pad(x, (3, 0, 4, 0), mode="circular")
    reference = F.conv2d(padded, torch.flip(w, dims=(-2, -1)), layer.bias)
    assert torch.allclose(layer(x), reference, atol=1e-10)


def test_locally_connected_equals_direct_loop():
    torch.manual_seed(0)
    layer = LocallyConnected2d(2, 3, (4, 5), kernel_size=3).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 2, 4, 5, dtype=torch.float64)
    padded = F.pad(x, (1, 1, 1, 1))
    expected = torch.zeros(2, 3, 4, 5, dtype=torch.float64)
    for i, j in itertools.product(range(4), range(5)):
        patch = padded[:, :, i : i + 3, j : j + 3].reshape(2, -1)  # (B, C k k), unfold's order
        p = i * 5 + j
        expected[:, :, i, j] = patch @ layer.weight[p].T + layer.bias[:, p]
    assert torch.allclose(layer(x), expected, atol=1e-10)


def test_shape_errors_and_repr():
    with pytest.raises(ValueError, match="expects"):
        CircularConv2d(1, 2, (8, 8))(torch.randn(1, 1, 7, 8))
    with pytest.raises(ValueError, match="expects"):
        LocallyConnected2d(1, 2, (8, 8))(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="odd"):
        LocallyConnected2d(1, 2, (8, 8), kernel_size=2)
    assert "image_size=(8, 8)" in repr(CircularConv2d(1, 2, (8, 8)))
