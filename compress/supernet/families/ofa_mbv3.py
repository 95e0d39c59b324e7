"""``ofa-mbv3``: the exact Once-for-All MobileNetV3 layout (ALGORITHMS.md §5.1).

Stem 3->16 (3x3/2, h-swish), a fixed first block 16->16 (E=1, K=3, ReLU), 5 elastic stages
(24/40/80/112/160, strides 2/2/2/1/2, ReLU/ReLU/h-swish x3, SE on stages 2, 4, 5) with
K {3,5,7}, E {3,4,6}, D {2,3,4}, then 1x1 960 (BN, h-swish), pool, 1x1 1280 (no BN, h-swish),
classifier. ``width_mult`` 1.2 scales every width with OFA's make_divisible (24/32/48/96/136/192,
1152, 1536). Resolution 128-224 in steps of 4; OFA's learned kernel transformations.
"""

from __future__ import annotations

from compress.core.errors import UsageError
from compress.supernet.families.registry import register_family
from compress.supernet.space import FirstBlockSpec, HeadSpec, SearchSpace, StageSpec, StemSpec, make_divisible

BASE = [16, 16, 24, 40, 80, 112, 160, 960, 1280]
STRIDES = [2, 2, 2, 1, 2]
ACTS = ["relu", "relu", "hswish", "hswish", "hswish"]
SE = [False, True, False, True, True]


@register_family("ofa-mbv3", "Once-for-All MobileNetV3 (w1.0 / w1.2), ImageNet-size inputs, 128-224 px")
def ofa_mbv3_space(
    width_mult: float = 1.0, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.1
) -> SearchSpace:
    if width_mult not in (1.0, 1.2):
        raise UsageError(f"ofa-mbv3 width_mult must be 1.0 or 1.2, got {width_mult}")
    w = [BASE[i] if width_mult == 1.0 else make_divisible(BASE[i] * width_mult, 8) for i in range(len(BASE))]
    return SearchSpace(
        family="ofa-mbv3",
        block="mbconv",
        in_channels=in_channels,
        num_classes=num_classes,
        resolutions=list(range(128, 225, 4)),
        width_mults=[1.0],
        channel_divisor=8,
        stem=StemSpec(channels=w[0], kernel=3, stride=2, act="hswish"),
        first_block=FirstBlockSpec(channels=w[1], kernel=3, act="relu", se=False),
        stages=[
            StageSpec(
                width=w[2 + i],
                depths=[2, 3, 4],
                kernels=[3, 5, 7],
                expands=[3, 4, 6],
                stride=STRIDES[i],
                act=ACTS[i],
                se=SE[i],
            )
            for i in range(5)
        ],
        head=HeadSpec(final_expand=w[7], feature_mix=w[8], act="hswish", dropout=dropout),
        kernel_transform=True,
        res_bins=[112, 16, 8],
    )
