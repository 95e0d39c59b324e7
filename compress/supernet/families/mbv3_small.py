"""``mbv3-small-input``: the OFA-MBV3 block design scaled for 28-32 px inputs.

Stem 3x3 stride 1 (16 ch, h-swish), a fixed E=1 first block with stride 2 (so that no expanded
tensor is computed at full input resolution), 4 elastic stages (16/24/40/64, strides 2/2/1/1, SE
on stages 2 and 4) with K {3,5,7}, E {3,4,6}, D {1,2,3},
width multiplier {0.75, 1.0}, resolution {28, 32}; head 1x1 192 (BN, h-swish), pool, 1x1 384
(h-swish), classifier. Sized so that Fashion-MNIST supernet training fits a 2-core CPU.
"""

from __future__ import annotations

from compress.supernet.families.registry import register_family
from compress.supernet.space import FirstBlockSpec, HeadSpec, SearchSpace, StageSpec, StemSpec


@register_family("mbv3-small-input", "MobileNetV3-style supernet for 28-32 px inputs (Fashion-MNIST scale)")
def mbv3_small_space(num_classes: int = 10, in_channels: int = 1, dropout: float = 0.1) -> SearchSpace:
    widths, strides = [16, 24, 40, 64], [2, 2, 1, 1]
    acts, se = ["relu", "relu", "hswish", "hswish"], [False, True, False, True]
    return SearchSpace(
        family="mbv3-small-input",
        block="mbconv",
        in_channels=in_channels,
        num_classes=num_classes,
        resolutions=[28, 32],
        width_mults=[0.75, 1.0],
        channel_divisor=8,
        stem=StemSpec(channels=16, kernel=3, stride=1, act="hswish"),
        first_block=FirstBlockSpec(channels=16, kernel=3, stride=2, act="relu"),
        stages=[
            StageSpec(
                width=widths[i],
                depths=[1, 2, 3],
                kernels=[3, 5, 7],
                expands=[3, 4, 6],
                stride=strides[i],
                act=acts[i],
                se=se[i],
            )
            for i in range(4)
        ],
        head=HeadSpec(final_expand=192, feature_mix=384, act="hswish", dropout=dropout),
        kernel_transform=True,
    )
