"""Reference models named by published latency rows, as block signatures the roofline can price.

Published figures (MLPerf's ResNet-50 v1.5 on Jetson Orin, hardware_profiles/published/) are for
whole networks, not for a search space; to hold the roofline against them the network is written
out here from its definition - never downloaded. ResNet-50 v1.5 is torchvision's ``resnet50``
(bottleneck stages of 3, 4, 6, 3 blocks, widths 64-512 x4, stride on the 3x3 conv: the "v1.5"
difference from the original paper); tests/test_jetson_calibration.py checks its multiply-adds
against torchvision's module definition built without weights.

>>> sigs = model_signatures("resnet50-v1.5")
>>> len(sigs), sigs[0].kind, sigs[-1].kind
(20, 'conv', 'linear')
"""

from __future__ import annotations

from collections.abc import Callable

from compress.core.errors import unknown
from compress.latency.signature import BlockSignature


def resnet50_v15(resolution: int = 224, num_classes: int = 1000) -> list[BlockSignature]:
    """Stem conv 7x7/2 -> maxpool 3x3/2 -> 16 bottlenecks -> global pool -> fc (BN/ReLU fused)."""
    sigs = [
        BlockSignature(
            kind="conv",
            in_hw=resolution,
            in_ch=3,
            out_hw=resolution // 2,
            out_ch=64,
            kernel=7,
            stride=2,
            act="relu",
            norm=True,
        )
    ]
    hw = resolution // 2
    sigs.append(BlockSignature(kind="maxpool", in_hw=hw, in_ch=64, out_hw=hw // 2, out_ch=64, kernel=3, stride=2))
    hw //= 2
    cin = 64
    for i, (blocks, width) in enumerate(((3, 64), (4, 128), (6, 256), (3, 512))):
        for b in range(blocks):
            stride = 2 if (b == 0 and i > 0) else 1
            out_hw = hw // stride
            sigs.append(
                BlockSignature(
                    kind="bottleneck",
                    in_hw=hw,
                    in_ch=cin,
                    out_hw=out_hw,
                    out_ch=width * 4,
                    kernel=3,
                    mid=width,
                    stride=stride,
                    act="relu",
                    residual=True,
                    norm=True,
                )
            )
            hw, cin = out_hw, width * 4
    sigs.append(BlockSignature(kind="pool", in_hw=hw, in_ch=cin, out_hw=1, out_ch=cin))
    sigs.append(BlockSignature(kind="linear", in_hw=1, in_ch=cin, out_hw=1, out_ch=num_classes, bias=True))
    return sigs


MODELS: dict[str, Callable[[int], list[BlockSignature]]] = {"resnet50-v1.5": resnet50_v15}


def model_signatures(name: str, resolution: int = 224) -> list[BlockSignature]:
    if name not in MODELS:
        raise unknown("reference model", name, MODELS)
    return MODELS[name](resolution)
