"""Small ResNet-, MobileNetV1/V2- and VGG-style CNNs for 28-32 px inputs (Fashion-MNIST, digits).

They are built from plain Conv2d/BatchNorm2d/ReLU modules so that FTWT's surgery (and any exporter)
sees ordinary layers. Referenced as ``small:NAME`` or ``small:NAME@WIDTH`` (a channel multiplier;
see :mod:`compress.prune.ftwt.source`).

Two families:
- ``resnet``, ``mobilenetv2``, ``mobilenetv1``, ``vgg``: 16-128 channels, shallow (fast tests);
- ``resnet56``, ``vgg16``, ``mobilenetv1-cifar``: the layer plans of the released FTWT code's CIFAR
  models (ResNet-56: 3 stages x 9 basic blocks at 16/32/64; VGG16-BN up to 512 channels;
  MobileNetV1 CIFAR plan up to 1024 channels), scaled by ``width``. FTWT's per-input savings come
  from filters that do not fire for a given input, which wide ReLU layers have and 16-64 channel
  layers mostly do not; ``width`` reaches that regime (``@1`` is the paper's width).
  The ResNet-56 shortcut is a 1x1 conv + BN when the shape changes (the released code zero-pads).

>>> m = build_small("resnet", num_classes=10, in_chans=1)  # doctest: +SKIP
>>> m = build_small("mobilenetv1-cifar", width=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn

from compress.core.errors import UsageError, unknown


def conv_bn_act(
    cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True, relu6: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6(inplace=False) if relu6 else nn.ReLU(inplace=False))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (same attribute names as timm's, so the same gating rule applies)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act2 = nn.ReLU()
        self.shortcut = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


class MBConv(nn.Module):
    """MobileNetV2 inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (no activation)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, expand: int = 4, k: int = 3) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = conv_bn_act(cin, mid, 1, relu6=True) if expand != 1 else nn.Identity()
        self.dw = conv_bn_act(mid, mid, k, stride, groups=mid, relu6=True)
        self.project = conv_bn_act(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.dw(self.expand(x)))
        return x + y if self.residual else y


class Classifier(nn.Module):
    def __init__(self, features: nn.Module, width: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def _w(c: int, width: float) -> int:
    """Channels ``c`` scaled by ``width``, at least 4."""
    return max(4, int(round(c * width)))


def resnet(
    num_classes: int = 10, in_chans: int = 1, widths: tuple[int, ...] = (16, 32, 64), depth: int = 1
) -> nn.Module:
    """ResNet-(6*depth+2) for small inputs: stem conv, then ``depth`` basic blocks per stage."""
    layers: list[nn.Module] = [conv_bn_act(in_chans, widths[0])]
    cin = widths[0]
    for i, w in enumerate(widths):
        for d in range(depth):
            layers.append(BasicBlock(cin, w, 2 if (i > 0 and d == 0) else 1))
            cin = w
    return Classifier(nn.Sequential(*layers), cin, num_classes)


def mobilenetv2(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    """MobileNetV2-style: stem conv, inverted residual blocks (expand 4), 1x1 head conv."""
    cfg = [(16, 1, 1), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4), (48, 1, 4)]  # (out, stride, expand)
    layers: list[nn.Module] = [conv_bn_act(in_chans, 16, relu6=True)]
    cin = 16
    for cout, s, e in cfg:
        layers.append(MBConv(cin, cout, s, e))
        cin = cout
    layers.append(conv_bn_act(cin, 128, 1, relu6=True))
    return Classifier(nn.Sequential(*layers), 128, num_classes)


def mobilenetv1(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    """MobileNetV1-style: stem conv, then depthwise 3x3 + pointwise 1x1 pairs."""
    cfg = [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1)]
    layers: list[nn.Module] = [conv_bn_act(in_chans, 16)]
    cin = 16
    for cout, s in cfg:
        layers += [conv_bn_act(cin, cin, 3, s, groups=cin), conv_bn_act(cin, cout, 1)]
        cin = cout
    return Classifier(nn.Sequential(*layers), cin, num_classes)


def vgg(num_classes: int = 10, in_chans: int = 1) -> nn.Module:
    """VGG-style plain stack of Conv-BN-ReLU with max pooling."""
    cfg: list[int | str] = [16, 16, "M", 32, 32, "M", 64, 64]
    layers: list[nn.Module] = []
    cin = in_chans
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers.append(conv_bn_act(cin, int(v)))
            cin = int(v)
    return Classifier(nn.Sequential(*layers), cin, num_classes)


def resnet56(num_classes: int = 10, in_chans: int = 1, width: float = 1.0) -> nn.Module:
    """ResNet-56 layer plan (the released code's CIFAR ResNet): 3 stages x 9 basic blocks."""
    return resnet(num_classes, in_chans, widths=tuple(_w(c, width) for c in (16, 32, 64)), depth=9)


VGG16_PLAN: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]


def vgg16(num_classes: int = 10, in_chans: int = 1, width: float = 1.0) -> nn.Module:
    """VGG16-BN layer plan (13 Conv-BN-ReLU, 4 max pools: 28 px -> 1 px), global pool + linear."""
    layers: list[nn.Module] = []
    cin = in_chans
    for v in VGG16_PLAN:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers.append(conv_bn_act(cin, _w(int(v), width)))
            cin = _w(int(v), width)
    return Classifier(nn.Sequential(*layers), cin, num_classes)


MBV1_PLAN: list[tuple[int, int]] = [
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5, (1024, 2), (1024, 1)
]  # fmt: skip


def mobilenetv1_cifar(num_classes: int = 10, in_chans: int = 1, width: float = 1.0) -> nn.Module:
    """MobileNetV1 CIFAR plan (stem 32, 13 DW+PW pairs to 1024; 28 px -> 2 px), ReLU."""
    cin = _w(32, width)
    layers: list[nn.Module] = [conv_bn_act(in_chans, cin)]
    for cout, s in MBV1_PLAN:
        cout = _w(cout, width)
        layers += [conv_bn_act(cin, cin, 3, s, groups=cin), conv_bn_act(cin, cout, 1)]
        cin = cout
    return Classifier(nn.Sequential(*layers), cin, num_classes)


SMALL_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet": resnet,
    "mobilenetv2": mobilenetv2,
    "mobilenetv1": mobilenetv1,
    "vgg": vgg,
    "resnet56": resnet56,
    "vgg16": vgg16,
    "mobilenetv1-cifar": mobilenetv1_cifar,
}
WIDTH_MODELS = ("resnet56", "vgg16", "mobilenetv1-cifar")  # the ones that take ``width``


def build_small(
    name: str, *, num_classes: int = 10, in_chans: int = 1, seed: int = 0, width: float | None = None
) -> nn.Module:
    """Build a small model with a deterministic random init (``seed``); ``width`` scales the channels
    of the paper-plan models (:data:`WIDTH_MODELS`)."""
    if name not in SMALL_MODELS:
        raise unknown("small model", name, SMALL_MODELS)
    kw: dict[str, float] = {}
    if width is not None and name in WIDTH_MODELS:
        if not 0 < width <= 4:
            raise UsageError(f"small:{name}@{width}: the width multiplier must be in (0, 4]")
        kw["width"] = float(width)
    elif width is not None and width != 1.0:
        raise UsageError(f"small:{name} has a fixed width; width multipliers apply to {', '.join(WIDTH_MODELS)}")
    torch.manual_seed(seed)
    m = SMALL_MODELS[name](num_classes=num_classes, in_chans=in_chans, **kw)
    m.eval()
    return m


def parse_small_name(ref: str) -> tuple[str, float | None]:
    """``"mobilenetv1-cifar@0.5"`` -> ``("mobilenetv1-cifar", 0.5)``; no ``@`` -> width None."""
    name, _, w = ref.partition("@")
    if not w:
        return name, None
    try:
        return name, float(w)
    except ValueError:
        raise UsageError(f"small:{ref}: the part after @ must be a width multiplier such as 0.5") from None
