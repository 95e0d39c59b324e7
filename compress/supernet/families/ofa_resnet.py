"""``ofa-resnet``: OFA-ResNet50-style supernet (elastic depth, expand ratio, width multiplier).

Stem 3x3/2 (64 ch, ReLU) + 3x3/2 max pool, 4 stages of bottlenecks (256/512/1024/2048, strides
1/2/2/2) with D {2,3,4}/{2,3,4}/{4,5,6}/{2,3,4}, E {0.2, 0.25, 0.35} (middle = round(out * E)),
width multiplier {0.65, 0.8, 1.0}, resolution 128-224 in steps of 4; head pool + classifier.
Differences from OFA's ResNet50: a single-conv stem (OFA: 3-conv stem with elastic width per
conv), 1x1-stride conv projection shortcuts (OFA: avgpool + conv), one width multiplier for the
whole net (OFA: per stage). Its weights therefore do not load OFA-ResNet50 checkpoints.
"""

from __future__ import annotations

from compress.supernet.families.registry import register_family
from compress.supernet.space import HeadSpec, SearchSpace, StageSpec, StemSpec


@register_family("ofa-resnet", "OFA-ResNet50-style bottleneck supernet (depth, expand, width)")
def ofa_resnet_space(
    num_classes: int = 1000, in_channels: int = 3, resolutions: list[int] | None = None
) -> SearchSpace:
    depths = [[2, 3, 4], [2, 3, 4], [4, 5, 6], [2, 3, 4]]
    return SearchSpace(
        family="ofa-resnet",
        block="bottleneck",
        in_channels=in_channels,
        num_classes=num_classes,
        resolutions=resolutions or list(range(128, 225, 4)),
        width_mults=[0.65, 0.8, 1.0],
        channel_divisor=8,
        stem=StemSpec(channels=64, kernel=3, stride=2, act="relu", maxpool=True),
        stages=[
            StageSpec(width=w, depths=d, kernels=[3], expands=[0.2, 0.25, 0.35], stride=s, act="relu")
            for w, d, s in zip((256, 512, 1024, 2048), depths, (1, 2, 2, 2))
        ],
        head=HeadSpec(act="none"),
        res_bins=[112, 16, 8],
    )
