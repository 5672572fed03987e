"""Small backbones: feature sizes, heads, argument checks."""

import pytest
import torch

from damokit.nn.convnets import ConvNet, MLPEncoder, ResNetMini, convnet_small, resnet_mini


def test_feature_dims_and_heads():
    assert convnet_small().forward_features(torch.rand(2, 1, 28, 28)).shape == (2, 128)
    assert resnet_mini().forward_features(torch.rand(2, 3, 32, 32)).shape == (2, 128)
    assert ConvNet(channels=(4, 6), num_classes=5)(torch.rand(2, 1, 16, 16)).shape == (2, 5)
    assert MLPEncoder(in_dim=64)(torch.rand(3, 1, 8, 8)).shape == (3, 64)
    assert ResNetMini(widths=(4, 8), blocks_per_stage=2, num_classes=3)(torch.rand(2, 3, 16, 16)).shape == (2, 3)


def test_constructor_errors():
    with pytest.raises(ValueError, match="channels must be"):
        ConvNet(channels=())
    with pytest.raises(ValueError, match="widths must be"):
        ResNetMini(blocks_per_stage=0)
    with pytest.raises(ValueError, match="dims must be"):
        MLPEncoder(dims=(0,))
