"""``convnext-small-input``: ConvNeXt-style blocks for 28-32 px inputs.

Stem 3x3 stride 2 (24 ch, BN), 3 stages (24/48/96; BN + 2x2/2 conv downsample before stages 2
and 3) of ConvNeXt blocks (depthwise kxk, BatchNorm, 1x1 expand, GELU, 1x1 project, layer scale,
residual) with D {1,2,3}, K {3,5,7}, MLP ratio {2,3,4}, width multiplier {0.75, 1.0},
resolution {28, 32}; head BN, pool, classifier. BatchNorm (not LayerNorm) so that subnets get
BN recalibration and depth pruning can fold the norm exactly.
"""

from __future__ import annotations

from compress.supernet.families.registry import register_family
from compress.supernet.space import HeadSpec, SearchSpace, StageSpec, StemSpec


@register_family("convnext-small-input", "ConvNeXt-style supernet (BatchNorm) for 28-32 px inputs")
def convnext_small_space(num_classes: int = 10, in_channels: int = 1, layer_scale_init: float = 0.1) -> SearchSpace:
    return SearchSpace(
        family="convnext-small-input",
        block="convnext",
        in_channels=in_channels,
        num_classes=num_classes,
        resolutions=[28, 32],
        width_mults=[0.75, 1.0],
        channel_divisor=8,
        stem=StemSpec(channels=24, kernel=3, stride=2, act="none"),
        stages=[
            StageSpec(width=w, depths=[1, 2, 3], kernels=[3, 5, 7], expands=[2, 3, 4], stride=s, act="gelu")
            for w, s in ((24, 1), (48, 2), (96, 2))
        ],
        head=HeadSpec(norm=True, act="none"),
        downsample_kernel=2,
        layer_scale_init=layer_scale_init,
    )
