"""The shared training/evaluation primitives (issue #29): top-1, BN recalibration, cosine, model-for-dataset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from compress.core.errors import UsageError
from compress.nn.bn import recalibrate_bn
from compress.nn.evaluate import top1, top1_of_logits


class _Pick(nn.Module):
    """Logits = one-hot of the first input feature (as an int): predictions known exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(x[:, 0].long(), 4).float() + 0 * self.w


def test_top1_is_a_fraction_batch_independent_and_restores_mode():
    x = torch.tensor([[0.0], [1.0], [2.0], [3.0], [1.0]])
    y = torch.tensor([0, 1, 0, 3, 2])
    m = _Pick().train()
    for bs in (1, 2, 256):
        assert top1(m, x, y, batch_size=bs) == pytest.approx(3 / 5)
    assert m.training
    assert top1(m, x, y, transform=lambda t: t * 0) == pytest.approx(2 / 5)  # every prediction is class 0
    assert top1_of_logits(np.eye(4)[[0, 1, 2, 3, 1]], y.numpy()) == pytest.approx(3 / 5)
    assert top1(m, x[:0], y[:0]) == 0.0


class _Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 1, 1), nn.BatchNorm2d(3)

    def forward(self, x):
        return self.conv(x)


def _bn_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3), nn.Dropout(0.5), nn.Conv2d(3, 2, 1), nn.BatchNorm2d(2))


def test_recalibrate_bn_is_the_cumulative_average_and_restores_state():
    torch.manual_seed(1)
    net = _bn_net().eval()
    images = torch.randn(40, 1, 4, 4)
    recalibrate_bn(net, images, batch_size=40, mode="bn")
    first = net[0](images)
    assert torch.allclose(net[1].running_mean, first.mean((0, 2, 3)), atol=1e-6)
    assert not net.training and net[1].momentum == 0.1
    # batches of 10: the cumulative average of the per-batch means equals the mean over all images
    again = _bn_net().train()
    recalibrate_bn(again, images, batch_size=10, mode="bn")
    assert torch.allclose(again[1].running_mean, first.mean((0, 2, 3)), atol=1e-6)
    assert again.training and int(again[1].num_batches_tracked) == 4


def test_recalibrate_bn_scope_channels_and_empty_input():
    images = torch.randn(16, 1, 4, 4)
    net = _bn_net()
    before = net[4].running_mean.clone()
    recalibrate_bn(net, images, only=[net[1]])
    assert torch.equal(net[4].running_mean, before)  # outside `only`: untouched
    # `channels`: only the first c entries are reset (a supernet's active slice; its elastic BN
    # then updates only those); here the BN is not on the forward path, so only the reset shows
    holder = _Holder()
    holder.bn.running_mean.fill_(7.0)
    recalibrate_bn(holder, images, channels={id(holder.bn): 2})
    assert holder.bn.running_mean.tolist() == [0.0, 0.0, 7.0]
    with pytest.raises(UsageError, match="calibration images"):
        recalibrate_bn(net, images[:0])


def test_recalibrate_modes_differ_only_in_train_time_layers():
    images = torch.randn(32, 1, 4, 4)
    a, b = _bn_net(), _bn_net()
    torch.manual_seed(5)
    recalibrate_bn(a, images, mode="bn")  # dropout off: the second BN sees deterministic inputs
    torch.manual_seed(5)
    recalibrate_bn(b, images, mode="train")  # dropout on (OFA): the second BN's statistics differ
    assert torch.allclose(a[1].running_mean, b[1].running_mean)
    assert not torch.allclose(a[4].running_var, b[4].running_var)


def test_cosine_factor_matches_cosine_lr():
    from compress.train.schedule import cosine_factor, cosine_lr

    for t in (0, 3, 10, 15):
        assert cosine_factor(t, 10) * 0.2 == pytest.approx(cosine_lr(t, 10, 0.2))
    assert cosine_factor(5, 0) == pytest.approx(0.5 * (1 + math.cos(math.pi)))


def test_load_for_dataset_passes_only_the_options_a_source_builds_from():
    from compress.data import dataset_info
    from compress.models.dataset import dataset_options, default_image_size, load_for_dataset

    info = dataset_info("digits")
    assert dataset_options("timm:test_convnext") == ("in_chans", "image_size")
    assert dataset_options("efficientnet-lite0") == ("image_size",)
    assert default_image_size(info) == 32 and default_image_size(info, min_image_size=0) == info.native_size
    lm = load_for_dataset("timm:test_convnext", info)
    assert lm.input_shape == (info.channels, 32, 32) and lm.num_classes == info.num_classes
    assert load_for_dataset(lm, info) is lm
