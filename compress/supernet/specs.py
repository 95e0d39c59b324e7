"""Layer-level types of a subnet: :class:`BlockSpec`, :class:`Cost` and the shape helpers.

The lowest module of ``compress.supernet``: :mod:`.space` (the search space) and :mod:`.layout`
(a subnet's layers and their cost) both build on it, so neither has to import the other at
run time. ``compress.supernet.space`` re-exports these names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor`` (never more than 10% down), as OFA / TF do."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


@dataclass(frozen=True)
class BlockSpec:
    """One layer of a subnet, with everything needed to rebuild it alone (static.build_block_module).

    kind: 'conv' (conv kxk [+BN] [+act]), 'mbconv', 'convnext', 'bottleneck', 'downsample'
    (BN then kxk/stride conv with bias), 'maxpool' (3x3/2), 'norm' (BatchNorm2d), 'pool' (global
    average), 'linear'. ``residual`` means the block adds a shortcut (identity when stride 1 and
    in_ch == out_ch; for 'bottleneck' a 1x1 projection otherwise). ``mid`` is the expanded/hidden
    channel count (MBConv expand, ConvNeXt MLP hidden, bottleneck middle).
    """

    name: str  # module path of the elastic layer in the supernet (e.g. "blocks.3")
    kind: str
    in_hw: int
    in_ch: int
    out_hw: int
    out_ch: int
    kernel: int = 1
    mid: int = 0
    stride: int = 1
    se: bool = False
    se_mid: int = 0
    act: str = "none"
    residual: bool = False
    norm: bool = False
    bias: bool = False
    has_expand: bool = True  # MBConv: False for OFA's E=1 first block (no 1x1 expand conv)
    layer_scale: bool = False
    stage: int = -1  # elastic stage index, -1 for stem/first block/head
    slot: int = -1  # block slot index (stage-major) for elastic blocks, else -1

    def key(self) -> str:
        """A stable signature string of the layer's shape (the same for equal layers anywhere)."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("name", "stage", "slot")}
        return json.dumps(d, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int
    per_block: list[tuple[str, int, int]] = field(default_factory=list, compare=False)


def conv_out(hw: int, kernel: int, stride: int, padding: int | None = None) -> int:
    p = kernel // 2 if padding is None else padding
    return (hw + 2 * p - kernel) // stride + 1
