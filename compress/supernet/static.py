"""Plain static classes that exported subnets are made of (no elastic code; ONNX-friendly).

Attribute names are stable and documented because later stages rely on them:

- :class:`ConvBNAct`: ``conv`` (Conv2d), ``bn`` (BatchNorm2d or Identity), ``act``.
- :class:`MBConv` (inverted residual): ``expand_conv``/``expand_bn``/``expand_act`` (absent, i.e.
  None, for expand ratio 1 blocks), ``dw_conv``/``dw_bn``/``dw_act`` (depthwise kxk), ``se``
  (:class:`SqueezeExcite` or None), ``project_conv``/``project_bn``; ``use_residual`` is True when
  stride 1 and in == out (identity shortcut).
- :class:`ConvNeXtBlock`: ``dw_conv`` (depthwise kxk, bias), ``norm`` (BatchNorm2d), ``pw1`` (1x1
  conv expand, bias), ``act`` (GELU), ``pw2`` (1x1 conv project, bias), ``gamma`` (layer scale,
  shape (C,1,1)); always an identity residual: ``x + gamma * pw2(act(pw1(norm(dw_conv(x)))))``.
- :class:`Bottleneck` (ResNet): ``conv1``/``bn1`` (1x1), ``conv2``/``bn2`` (kxk, stride),
  ``conv3``/``bn3`` (1x1), ``downsample`` (Sequential(conv 1x1/stride, BN) or None), ``act`` (ReLU,
  also after the addition).
- :class:`Downsample`: ``norm`` (BatchNorm2d) then ``conv`` (kxk, stride k, bias).
- :class:`Classifier`: flatten then ``linear``.
- :class:`StaticNet`: ``stem`` (Sequential), ``blocks`` (Sequential of the block modules above),
  ``head`` (Sequential); ``forward = head(blocks(stem(x)))``.

``build_block_module(spec)`` builds any layer of a :class:`~compress.supernet.space.BlockSpec`
alone (random init), e.g. for per-block latency tables; ``build_static(space, cfg)`` the whole net.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from compress.core.errors import InternalError
from compress.supernet.layout import bottleneck_projects
from compress.supernet.ops import act_fn
from compress.supernet.space import BlockSpec, SearchSpace, SubnetConfig


class ConvBNAct(nn.Module):
    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int = 1,
        stride: int = 1,
        *,
        groups: int = 1,
        bias: bool = False,
        norm: bool = True,
        act: str = "none",
        padding: int | None = None,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            cin, cout, kernel, stride, kernel // 2 if padding is None else padding, groups=groups, bias=bias
        )
        self.bn = nn.BatchNorm2d(cout) if norm else nn.Identity()
        self.act = act_fn(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(ch, mid, 1, bias=True)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(mid, ch, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(y))))


class MBConv(nn.Module):
    def __init__(
        self,
        cin: int,
        mid: int,
        cout: int,
        kernel: int,
        stride: int,
        *,
        act: str,
        se_mid: int = 0,
        has_expand: bool = True,
    ) -> None:
        super().__init__()
        if has_expand:
            self.expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self.expand_bn = nn.BatchNorm2d(mid)
            self.expand_act = act_fn(act)
        else:
            self.expand_conv = self.expand_bn = self.expand_act = None
        self.dw_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.dw_bn = nn.BatchNorm2d(mid)
        self.dw_act = act_fn(act)
        self.se = SqueezeExcite(mid, se_mid) if se_mid else None
        self.project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(cout)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand_conv is not None:
            y = self.expand_act(self.expand_bn(self.expand_conv(y)))
        y = self.dw_act(self.dw_bn(self.dw_conv(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project_conv(y))
        return x + y if self.use_residual else y


class ConvNeXtBlock(nn.Module):
    def __init__(self, ch: int, mid: int, kernel: int, *, layer_scale_init: float = 0.1) -> None:
        super().__init__()
        self.dw_conv = nn.Conv2d(ch, ch, kernel, 1, kernel // 2, groups=ch, bias=True)
        self.norm = nn.BatchNorm2d(ch)
        self.pw1 = nn.Conv2d(ch, mid, 1, bias=True)
        self.act = nn.GELU()
        self.pw2 = nn.Conv2d(mid, ch, 1, bias=True)
        self.gamma = nn.Parameter(torch.full((ch, 1, 1), float(layer_scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.pw2(self.act(self.pw1(self.norm(self.dw_conv(x)))))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()
        if stride != 1 or cin != cout:
            self.downsample: nn.Module | None = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, 0, bias=False), nn.BatchNorm2d(cout)
            )
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.act(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        sc = x if self.downsample is None else self.downsample(x)
        return self.act(y + sc)


class Downsample(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, kernel, stride, 0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(x))


class Classifier(nn.Module):
    def __init__(self, cin: int, cout: int, *, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(cin, cout, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.flatten(x, 1))


class StaticNet(nn.Module):
    """A plain exported subnet: ``head(blocks(stem(x)))``.

    ``subnet`` holds ``{"family", "space", "config"}`` (plain JSON data) for provenance.
    """

    def __init__(
        self, stem: nn.Sequential, blocks: nn.Sequential, head: nn.Sequential, subnet: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = blocks
        self.head = head
        self.subnet = dict(subnet or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def build_block_module(spec: BlockSpec, *, layer_scale_init: float = 0.1) -> nn.Module:
    """A fresh static module for one layer spec (random init); input (N, in_ch, in_hw, in_hw)."""
    k = spec.kind
    if k == "conv":
        return ConvBNAct(
            spec.in_ch, spec.out_ch, spec.kernel, spec.stride, bias=spec.bias, norm=spec.norm, act=spec.act
        )
    if k == "mbconv":
        return MBConv(
            spec.in_ch,
            spec.mid,
            spec.out_ch,
            spec.kernel,
            spec.stride,
            act=spec.act,
            se_mid=spec.se_mid if spec.se else 0,
            has_expand=spec.has_expand,
        )
    if k == "convnext":
        return ConvNeXtBlock(spec.in_ch, spec.mid, spec.kernel, layer_scale_init=layer_scale_init)
    if k == "bottleneck":
        m = Bottleneck(spec.in_ch, spec.mid, spec.out_ch, spec.kernel, spec.stride)
        if (m.downsample is not None) != bottleneck_projects(spec):
            raise InternalError(f"Bottleneck projection disagrees with bottleneck_projects() for {spec}")
        return m
    if k == "downsample":
        return Downsample(spec.in_ch, spec.out_ch, spec.kernel, spec.stride)
    if k == "maxpool":
        return nn.MaxPool2d(3, 2, 1)
    if k == "norm":
        return nn.BatchNorm2d(spec.in_ch)
    if k == "pool":
        return nn.AdaptiveAvgPool2d(1)
    if k == "linear":
        return Classifier(spec.in_ch, spec.out_ch, bias=spec.bias)
    raise ValueError(f"unknown block kind '{k}'")


def assemble(specs: list[BlockSpec], modules: list[nn.Module], subnet: dict[str, Any] | None = None) -> StaticNet:
    """Group per-spec modules into ``StaticNet(stem, blocks, head)`` by spec name."""
    stem, blocks, head = [], [], []
    for s, m in zip(specs, modules):
        (stem if s.name.startswith("stem") else head if s.name.startswith("head.") else blocks).append(m)
    return StaticNet(nn.Sequential(*stem), nn.Sequential(*blocks), nn.Sequential(*head), subnet)


def build_static(space: SearchSpace, cfg: SubnetConfig) -> StaticNet:
    """The static architecture of ``cfg`` with fresh weights (load a state_dict into it)."""
    specs = space.block_specs(cfg)
    mods = [build_block_module(s, layer_scale_init=space.layer_scale_init) for s in specs]
    return assemble(specs, mods, {"family": space.family, "space": space.to_dict(), "config": cfg.to_dict()})
