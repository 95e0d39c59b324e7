"""Elastic layers: one per :class:`BlockSpec` kind, built at the largest shape.

Each layer implements ``forward(x, spec)``, ``active_state(spec)`` (the static module's state_dict,
sliced/transformed from the shared weights), ``regions(spec)`` (which elements of each parameter
the active layer reads) and, for blocks with hidden channels, ``hidden_params`` (parameter/buffer
name -> dims that index the hidden channels), used by ``permute_hidden`` and re-organisation.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from compress.core.errors import InternalError
from compress.supernet.layout import bottleneck_projects
from compress.supernet.ops import DynBN, DynConv2d, DynLinear, DynSE, act_fn
from compress.supernet.space import BlockSpec

Regions = dict[str, tuple[slice, ...]]
BN_KEYS = ("weight", "bias", "running_mean", "running_var")


def _conv_state(p: str, conv: DynConv2d, out: int, cin: int, k: int) -> dict[str, torch.Tensor]:
    st = {f"{p}.weight": conv.active_weight(out, cin, k)}
    if conv.bias is not None:
        st[f"{p}.bias"] = conv.bias[:out]
    return st


def _conv_regions(p: str, conv: DynConv2d, out: int, cin: int, k: int) -> Regions:
    r: Regions = {f"{p}.weight": conv.weight_region(out, cin, k)}
    if conv.bias is not None:
        r[f"{p}.bias"] = (slice(0, out),)
    for name in conv.transform_names(k):
        r[f"{p}.{name}"] = (slice(None),)
    return r


def _bn_state(p: str, bn: DynBN, c: int) -> dict[str, torch.Tensor]:
    st = {f"{p}.{k}": getattr(bn, k)[:c] for k in BN_KEYS}
    st[f"{p}.num_batches_tracked"] = bn.num_batches_tracked
    return st


def _bn_regions(p: str, c: int) -> Regions:
    return {f"{p}.weight": (slice(0, c),), f"{p}.bias": (slice(0, c),)}


def _bn_hidden(p: str) -> dict[str, tuple[int, ...]]:
    return {f"{p}.{k}": (0,) for k in BN_KEYS}


class ElasticConv(nn.Module):
    """conv kxk [+ BN] [+ act] with elastic in/out channels (stem, head convs)."""

    def __init__(self, s: BlockSpec) -> None:
        super().__init__()
        self.conv = DynConv2d(s.in_ch, s.out_ch, s.kernel, stride=s.stride, bias=s.bias)
        self.bn = DynBN(s.out_ch) if s.norm else None
        self.act = act_fn(s.act)

    def forward(self, x: torch.Tensor, s: BlockSpec) -> torch.Tensor:
        x = self.conv(x, s.out_ch, s.kernel)
        if self.bn is not None:
            x = self.bn(x)
        return self.act(x)

    def active_state(self, s: BlockSpec) -> dict[str, torch.Tensor]:
        st = _conv_state("conv", self.conv, s.out_ch, s.in_ch, s.kernel)
        if self.bn is not None:
            st |= _bn_state("bn", self.bn, s.out_ch)
        return st

    def regions(self, s: BlockSpec) -> Regions:
        r = _conv_regions("conv", self.conv, s.out_ch, s.in_ch, s.kernel)
        return r | (_bn_regions("bn", s.out_ch) if self.bn is not None else {})


class ElasticMBConv(nn.Module):
    def __init__(self, s: BlockSpec, kernels: list[int], *, kernel_transform: bool) -> None:
        super().__init__()
        if s.has_expand:
            self.expand_conv = DynConv2d(s.in_ch, s.mid, 1)
            self.expand_bn = DynBN(s.mid)
            self.expand_act = act_fn(s.act)
        else:
            self.expand_conv = self.expand_bn = self.expand_act = None
        self.dw_conv = DynConv2d(
            s.mid, s.mid, list(kernels), stride=s.stride, depthwise=True, kernel_transform=kernel_transform
        )
        self.dw_bn = DynBN(s.mid)
        self.dw_act = act_fn(s.act)
        self.se = DynSE(s.mid, s.se_mid) if s.se else None
        self.project_conv = DynConv2d(s.mid, s.out_ch, 1)
        self.project_bn = DynBN(s.out_ch)

    def forward(self, x: torch.Tensor, s: BlockSpec) -> torch.Tensor:
        y = x
        if self.expand_conv is not None:
            y = self.expand_act(self.expand_bn(self.expand_conv(y, s.mid)))
        y = self.dw_act(self.dw_bn(self.dw_conv(y, s.mid, s.kernel)))
        if self.se is not None:
            y = self.se(y, s.se_mid)
        y = self.project_bn(self.project_conv(y, s.out_ch))
        return x + y if s.residual else y

    def active_state(self, s: BlockSpec) -> dict[str, torch.Tensor]:
        st: dict[str, torch.Tensor] = {}
        if self.expand_conv is not None:
            st |= _conv_state("expand_conv", self.expand_conv, s.mid, s.in_ch, 1) | _bn_state(
                "expand_bn", self.expand_bn, s.mid
            )
        st |= _conv_state("dw_conv", self.dw_conv, s.mid, s.mid, s.kernel) | _bn_state("dw_bn", self.dw_bn, s.mid)
        if self.se is not None:
            st |= _conv_state("se.reduce", self.se.reduce, s.se_mid, s.mid, 1)
            st |= _conv_state("se.expand", self.se.expand, s.mid, s.se_mid, 1)
        st |= _conv_state("project_conv", self.project_conv, s.out_ch, s.mid, 1)
        return st | _bn_state("project_bn", self.project_bn, s.out_ch)

    def regions(self, s: BlockSpec) -> Regions:
        r: Regions = {}
        if self.expand_conv is not None:
            r |= _conv_regions("expand_conv", self.expand_conv, s.mid, s.in_ch, 1) | _bn_regions("expand_bn", s.mid)
        r |= _conv_regions("dw_conv", self.dw_conv, s.mid, s.mid, s.kernel) | _bn_regions("dw_bn", s.mid)
        if self.se is not None:
            r |= _conv_regions("se.reduce", self.se.reduce, s.se_mid, s.mid, 1)
            r |= _conv_regions("se.expand", self.se.expand, s.mid, s.se_mid, 1)
        r |= _conv_regions("project_conv", self.project_conv, s.out_ch, s.mid, 1)
        return r | _bn_regions("project_bn", s.out_ch)

    @property
    def hidden_params(self) -> dict[str, tuple[int, ...]]:
        if self.expand_conv is None:
            return {}
        h = {
            "expand_conv.weight": (0,),
            **_bn_hidden("expand_bn"),
            "dw_conv.weight": (0,),
            **_bn_hidden("dw_bn"),
            "project_conv.weight": (1,),
        }
        if self.se is not None:
            h |= {"se.reduce.weight": (1,), "se.expand.weight": (0,), "se.expand.bias": (0,)}
        return h

    def importance(self) -> torch.Tensor:
        return self.project_conv.weight.detach().abs().sum((0, 2, 3))

    def reorganize_extra(self) -> None:
        """Sort the SE hidden channels by importance too (as OFA does)."""
        if self.se is None:
            return
        idx = torch.argsort(self.se.expand.weight.detach().abs().sum((0, 2, 3)), descending=True)
        with torch.no_grad():
            self.se.reduce.weight.copy_(self.se.reduce.weight[idx])
            self.se.reduce.bias.copy_(self.se.reduce.bias[idx])
            self.se.expand.weight.copy_(self.se.expand.weight[:, idx])


class ElasticConvNeXt(nn.Module):
    def __init__(self, s: BlockSpec, kernels: list[int], *, layer_scale_init: float) -> None:
        super().__init__()
        c = s.in_ch
        self.dw_conv = DynConv2d(c, c, list(kernels), depthwise=True, bias=True)
        self.norm = DynBN(c)
        self.pw1 = DynConv2d(c, s.mid, 1, bias=True)
        self.act = nn.GELU()
        self.pw2 = DynConv2d(s.mid, c, 1, bias=True)
        self.gamma = nn.Parameter(torch.full((c, 1, 1), float(layer_scale_init)))

    def forward(self, x: torch.Tensor, s: BlockSpec) -> torch.Tensor:
        c = s.in_ch
        y = self.pw2(self.act(self.pw1(self.norm(self.dw_conv(x, c, s.kernel)), s.mid)), c)
        return x + self.gamma[:c] * y

    def active_state(self, s: BlockSpec) -> dict[str, torch.Tensor]:
        c = s.in_ch
        return (
            _conv_state("dw_conv", self.dw_conv, c, c, s.kernel)
            | _bn_state("norm", self.norm, c)
            | _conv_state("pw1", self.pw1, s.mid, c, 1)
            | _conv_state("pw2", self.pw2, c, s.mid, 1)
            | {"gamma": self.gamma[:c]}
        )

    def regions(self, s: BlockSpec) -> Regions:
        c = s.in_ch
        return (
            _conv_regions("dw_conv", self.dw_conv, c, c, s.kernel)
            | _bn_regions("norm", c)
            | _conv_regions("pw1", self.pw1, s.mid, c, 1)
            | _conv_regions("pw2", self.pw2, c, s.mid, 1)
            | {"gamma": (slice(0, c),)}
        )

    hidden_params = {"pw1.weight": (0,), "pw1.bias": (0,), "pw2.weight": (1,)}

    def importance(self) -> torch.Tensor:
        return self.pw2.weight.detach().abs().sum((0, 2, 3))


class ElasticBottleneck(nn.Module):
    def __init__(self, s: BlockSpec, kernels: list[int], *, may_project: bool) -> None:
        super().__init__()
        self.conv1 = DynConv2d(s.in_ch, s.mid, 1)
        self.bn1 = DynBN(s.mid)
        self.conv2 = DynConv2d(s.mid, s.mid, list(kernels), stride=s.stride)
        self.bn2 = DynBN(s.mid)
        self.conv3 = DynConv2d(s.mid, s.out_ch, 1)
        self.bn3 = DynBN(s.out_ch)
        self.act = nn.ReLU()
        self.downsample = (
            nn.Sequential(DynConv2d(s.in_ch, s.out_ch, 1, stride=s.stride, padding=0), DynBN(s.out_ch))
            if may_project
            else None
        )

    def forward(self, x: torch.Tensor, s: BlockSpec) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x, s.mid)))
        y = self.act(self.bn2(self.conv2(y, s.mid, s.kernel)))
        y = self.bn3(self.conv3(y, s.out_ch))
        if bottleneck_projects(s):
            if self.downsample is None:
                raise InternalError("elastic bottleneck needs a projection for this spec but was built without one")
            x = self.downsample[1](self.downsample[0](x, s.out_ch))
        return self.act(y + x)

    def active_state(self, s: BlockSpec) -> dict[str, torch.Tensor]:
        st = (
            _conv_state("conv1", self.conv1, s.mid, s.in_ch, 1)
            | _bn_state("bn1", self.bn1, s.mid)
            | _conv_state("conv2", self.conv2, s.mid, s.mid, s.kernel)
            | _bn_state("bn2", self.bn2, s.mid)
            | _conv_state("conv3", self.conv3, s.out_ch, s.mid, 1)
            | _bn_state("bn3", self.bn3, s.out_ch)
        )
        if bottleneck_projects(s):
            st |= _conv_state("downsample.0", self.downsample[0], s.out_ch, s.in_ch, 1)
            st |= _bn_state("downsample.1", self.downsample[1], s.out_ch)
        return st

    def regions(self, s: BlockSpec) -> Regions:
        r = (
            _conv_regions("conv1", self.conv1, s.mid, s.in_ch, 1)
            | _bn_regions("bn1", s.mid)
            | _conv_regions("conv2", self.conv2, s.mid, s.mid, s.kernel)
            | _bn_regions("bn2", s.mid)
            | _conv_regions("conv3", self.conv3, s.out_ch, s.mid, 1)
            | _bn_regions("bn3", s.out_ch)
        )
        if bottleneck_projects(s):
            r |= _conv_regions("downsample.0", self.downsample[0], s.out_ch, s.in_ch, 1)
            r |= _bn_regions("downsample.1", s.out_ch)
        return r

    # both hidden spaces (conv1 out / conv2 in, conv2 out / conv3 in) take the same permutation
    hidden_params = {
        "conv1.weight": (0,),
        **_bn_hidden("bn1"),
        "conv2.weight": (0, 1),
        **_bn_hidden("bn2"),
        "conv3.weight": (1,),
    }

    def importance(self) -> torch.Tensor:
        return self.conv3.weight.detach().abs().sum((0, 2, 3))


class ElasticDownsample(nn.Module):
    def __init__(self, s: BlockSpec) -> None:
        super().__init__()
        self.norm = DynBN(s.in_ch)
        self.conv = DynConv2d(s.in_ch, s.out_ch, s.kernel, stride=s.stride, bias=True, padding=0)

    def forward(self, x: torch.Tensor, s: BlockSpec) -> torch.Tensor:
        return self.conv(self.norm(x), s.out_ch)

    def active_state(self, s: BlockSpec) -> dict[str, torch.Tensor]:
        return _bn_state("norm", self.norm, s.in_ch) | _conv_state("conv", self.conv, s.out_ch, s.in_ch, s.kernel)

    def regions(self, s: BlockSpec) -> Regions:
        return _bn_regions("norm", s.in_ch) | _conv_regions("conv", self.conv, s.out_ch, s.in_ch, s.kernel)


class ElasticNorm(DynBN):
    def forward(self, x: torch.Tensor, s: BlockSpec | None = None) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)

    def active_state(self, s: BlockSpec) -> dict[str, torch.Tensor]:
        return {k[1:]: v for k, v in _bn_state("", self, s.in_ch).items()}

    def regions(self, s: BlockSpec) -> Regions:
        return {k[1:]: v for k, v in _bn_regions("", s.in_ch).items()}


class ElasticPool(nn.Module):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor, s: BlockSpec) -> torch.Tensor:
        if self.kind == "maxpool":
            return F.max_pool2d(x, 3, 2, 1)
        return x.mean((2, 3), keepdim=True)

    def active_state(self, s: BlockSpec) -> dict[str, torch.Tensor]:
        return {}

    def regions(self, s: BlockSpec) -> Regions:
        return {}


class ElasticLinear(nn.Module):
    def __init__(self, s: BlockSpec, *, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear = DynLinear(s.in_ch, s.out_ch, bias=s.bias)

    def forward(self, x: torch.Tensor, s: BlockSpec) -> torch.Tensor:
        return self.linear(self.dropout(torch.flatten(x, 1)))

    def active_state(self, s: BlockSpec) -> dict[str, torch.Tensor]:
        st = {"linear.weight": self.linear.weight[:, : s.in_ch]}
        if self.linear.bias is not None:
            st["linear.bias"] = self.linear.bias
        return st

    def regions(self, s: BlockSpec) -> Regions:
        r: Regions = {"linear.weight": (slice(None), slice(0, s.in_ch))}
        if self.linear.bias is not None:
            r["linear.bias"] = (slice(None),)
        return r
