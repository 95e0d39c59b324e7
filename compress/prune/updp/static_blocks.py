"""UPDP adapters for the supernet's static blocks (``compress.supernet.static``).

``MBConv`` (expand → DW → SE → project, identity residual when ``use_residual``), ``ConvNeXtBlock``
(DW → BN → pw1 → GELU → pw2 → γ, + x; its norm is already BatchNorm, so no LN swap) and
``Bottleneck`` (identity shortcut only; ReLU after the add kept).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from compress.prune.updp.linearize import ActStep, BNStep, ConvStep, PrunedChain, ScaleStep, SEStep, Unsupported


def _mbconv(m: nn.Module, name: str) -> PrunedChain:
    steps: list[nn.Module] = []
    if m.expand_conv is not None:
        steps += [ConvStep(m.expand_conv), BNStep(m.expand_bn), ActStep(m.expand_act)]
    steps += [ConvStep(m.dw_conv), BNStep(m.dw_bn), ActStep(m.dw_act)]
    if m.se is not None:
        steps.append(SEStep(m.se, "static"))
    steps += [ConvStep(m.project_conv), BNStep(m.project_bn)]
    return PrunedChain(steps, kind="mbconv", name=name, residual=bool(m.use_residual))


def _convnext(m: nn.Module, name: str) -> PrunedChain:
    steps = [ConvStep(m.dw_conv), BNStep(m.norm), ConvStep(m.pw1), ActStep(m.act), ConvStep(m.pw2), ScaleStep(m.gamma)]
    return PrunedChain(steps, kind="convnext", name=name, residual=True)


def _bottleneck(m: nn.Module, name: str) -> PrunedChain:
    if m.downsample is not None:
        raise Unsupported("downsample shortcut (not an identity)")
    steps = [ConvStep(m.conv1), BNStep(m.bn1), ActStep(m.act), ConvStep(m.conv2), BNStep(m.bn2), ActStep(m.act),
             ConvStep(m.conv3), BNStep(m.bn3)]
    return PrunedChain(steps, kind="resnet_bottleneck", name=name, residual=True, post_act=m.act)


def adapters() -> list[tuple[str, Callable[[nn.Module, str], nn.Module]]]:
    return [("compress.supernet.static.MBConv", _mbconv),
            ("compress.supernet.static.ConvNeXtBlock", _convnext),
            ("compress.supernet.static.Bottleneck", _bottleneck)]
