"""Layer-by-layer layout of a subnet (:class:`BlockSpec` list) and its analytical cost.

Pure math: no torch. ``block_specs(space, cfg)`` is the single source of truth for the shapes of
every layer; the supernet's forward, ``export_active()``, latency tables and ``count()`` all follow it.

Cost conventions: params are the exported module's ``nn.Parameter`` elements (BatchNorm weight and
bias included, running statistics excluded). MACs count multiply-accumulates of convolutions,
SE and linear layers (BatchNorm, activations, pooling and additions are not counted).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from compress.supernet.specs import BlockSpec, Cost, conv_out, make_divisible

if TYPE_CHECKING:  # the space's methods call into this module; it only needs the types
    from compress.supernet.space import SearchSpace, SubnetConfig


def _mid(space: SearchSpace, ch: int, e: float) -> int:
    return make_divisible(round(ch * e), space.channel_divisor)


def _se_mid(space: SearchSpace, mid: int) -> int:
    return make_divisible(mid // 4, space.channel_divisor)


def block_specs(space: SearchSpace, cfg: SubnetConfig) -> list[BlockSpec]:
    """The subnet's layers in execution order (``cfg`` must already be validated)."""
    specs: list[BlockSpec] = []
    w = cfg.width
    hw = cfg.resolution
    st = space.stem
    ch = space.stem_width(w)
    out_hw = conv_out(hw, st.kernel, st.stride)
    specs.append(
        BlockSpec(
            "stem",
            "conv",
            hw,
            space.in_channels,
            out_hw,
            ch,
            kernel=st.kernel,
            stride=st.stride,
            act=st.act,
            norm=st.norm,
            bias=st.bias,
        )
    )
    hw = out_hw
    if st.maxpool:
        out_hw = conv_out(hw, 3, 2)
        specs.append(BlockSpec("stem_pool", "maxpool", hw, ch, out_hw, ch, kernel=3, stride=2))
        hw = out_hw
    if space.first_block is not None:
        fb = space.first_block
        out = space.first_block_width(w)
        out_hw = conv_out(hw, fb.kernel, fb.stride)
        specs.append(
            BlockSpec(
                "first_block",
                "mbconv",
                hw,
                ch,
                out_hw,
                out,
                kernel=fb.kernel,
                mid=ch,
                stride=fb.stride,
                se=fb.se,
                se_mid=_se_mid(space, ch) if fb.se else 0,
                act=fb.act,
                residual=(ch == out and fb.stride == 1),
                norm=True,
                has_expand=False,
            )
        )
        ch, hw = out, out_hw
    slot0 = 0
    for i, (stage, d) in enumerate(zip(space.stages, cfg.depths)):
        width = space.stage_width(i, w)
        if space.block == "convnext" and has_downsample(space, i):
            out_hw = conv_out(hw, space.downsample_kernel, stage.stride, padding=0)
            specs.append(
                BlockSpec(
                    f"downs.{i}",
                    "downsample",
                    hw,
                    ch,
                    out_hw,
                    width,
                    kernel=space.downsample_kernel,
                    stride=stage.stride,
                    norm=True,
                    bias=True,
                    stage=i,
                )
            )
            hw, ch = out_hw, width
        for j in range(d):
            k, e = cfg.kernels[i][j], cfg.expands[i][j]
            slot = slot0 + j
            name = f"blocks.{slot}"
            if space.block == "mbconv":
                s = stage.stride if j == 0 else 1
                mid = _mid(space, ch, e)
                out_hw = conv_out(hw, k, s)
                specs.append(
                    BlockSpec(
                        name,
                        "mbconv",
                        hw,
                        ch,
                        out_hw,
                        width,
                        kernel=k,
                        mid=mid,
                        stride=s,
                        se=stage.se,
                        se_mid=_se_mid(space, mid) if stage.se else 0,
                        act=stage.act,
                        residual=(s == 1 and ch == width),
                        norm=True,
                        stage=i,
                        slot=slot,
                    )
                )
            elif space.block == "convnext":
                mid = _mid(space, ch, e)
                specs.append(
                    BlockSpec(
                        name,
                        "convnext",
                        hw,
                        ch,
                        hw,
                        ch,
                        kernel=k,
                        mid=mid,
                        act="gelu",
                        residual=True,
                        norm=True,
                        bias=True,
                        layer_scale=True,
                        stage=i,
                        slot=slot,
                    )
                )
                out_hw = hw
            else:  # bottleneck
                s = stage.stride if j == 0 else 1
                mid = _mid(space, width, e)
                out_hw = conv_out(hw, k, s)
                specs.append(
                    BlockSpec(
                        name,
                        "bottleneck",
                        hw,
                        ch,
                        out_hw,
                        width,
                        kernel=k,
                        mid=mid,
                        stride=s,
                        act="relu",
                        residual=True,
                        norm=True,
                        stage=i,
                        slot=slot,
                    )
                )
            hw, ch = out_hw, (ch if space.block == "convnext" else width)
        slot0 += stage.depths[-1]
    h = space.head
    if h.final_expand:
        specs.append(BlockSpec("head.final_expand", "conv", hw, ch, hw, h.final_expand, kernel=1, act=h.act, norm=True))
        ch = h.final_expand
    if h.norm:
        specs.append(BlockSpec("head.norm", "norm", hw, ch, hw, ch, norm=True))
    specs.append(BlockSpec("head.pool", "pool", hw, ch, 1, ch))
    if h.feature_mix:
        specs.append(BlockSpec("head.feature_mix", "conv", 1, ch, 1, h.feature_mix, kernel=1, act=h.act))
        ch = h.feature_mix
    specs.append(BlockSpec("head.classifier", "linear", 1, ch, 1, space.num_classes, bias=True))
    return specs


def has_downsample(space: SearchSpace, stage: int) -> bool:
    """ConvNeXt: a downsample layer (BN + conv) precedes the stage when it changes stride or width."""
    prev = space.stem.channels if stage == 0 else space.stages[stage - 1].width
    return space.stages[stage].stride != 1 or prev != space.stages[stage].width


def spec_cost(s: BlockSpec) -> tuple[int, int]:
    """(params, MACs) of one layer; see the module docstring for the conventions."""
    hw_in, hw_out = s.in_hw * s.in_hw, s.out_hw * s.out_hw
    if s.kind == "conv":
        p = s.out_ch * s.in_ch * s.kernel**2 + (s.out_ch if s.bias else 0) + (2 * s.out_ch if s.norm else 0)
        return p, hw_out * s.out_ch * s.in_ch * s.kernel**2
    if s.kind == "mbconv":
        p = m = 0
        if s.has_expand:
            p += s.in_ch * s.mid + 2 * s.mid
            m += hw_in * s.in_ch * s.mid
        p += s.mid * s.kernel**2 + 2 * s.mid
        m += hw_out * s.mid * s.kernel**2
        if s.se:
            p += 2 * s.mid * s.se_mid + s.se_mid + s.mid
            m += 2 * s.mid * s.se_mid
        p += s.mid * s.out_ch + 2 * s.out_ch
        m += hw_out * s.mid * s.out_ch
        return p, m
    if s.kind == "convnext":
        c = s.in_ch
        p = c * s.kernel**2 + c + 2 * c + c * s.mid + s.mid + s.mid * c + c + c
        return p, hw_in * (c * s.kernel**2 + 2 * c * s.mid)
    if s.kind == "bottleneck":
        p = s.in_ch * s.mid + 2 * s.mid + s.mid * s.mid * s.kernel**2 + 2 * s.mid + s.mid * s.out_ch + 2 * s.out_ch
        m = hw_in * s.in_ch * s.mid + hw_out * (s.mid * s.mid * s.kernel**2 + s.mid * s.out_ch)
        if bottleneck_projects(s):
            p += s.in_ch * s.out_ch + 2 * s.out_ch
            m += hw_out * s.in_ch * s.out_ch
        return p, m
    if s.kind == "downsample":
        return 2 * s.in_ch + s.in_ch * s.out_ch * s.kernel**2 + s.out_ch, hw_out * s.in_ch * s.out_ch * s.kernel**2
    if s.kind == "norm":
        return 2 * s.in_ch, 0
    if s.kind in ("pool", "maxpool"):
        return 0, 0
    if s.kind == "linear":
        return s.in_ch * s.out_ch + (s.out_ch if s.bias else 0), s.in_ch * s.out_ch
    raise ValueError(f"unknown block kind '{s.kind}'")


def bottleneck_projects(s: BlockSpec) -> bool:
    return s.stride != 1 or s.in_ch != s.out_ch


def count_specs(specs: list[BlockSpec]) -> Cost:
    per = [(s.name, *spec_cost(s)) for s in specs]
    return Cost(params=sum(p for _, p, _ in per), macs=sum(m for _, _, m in per), per_block=per)
