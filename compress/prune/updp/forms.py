"""Merged forms per block kind, and the small plain modules they deploy as.

A pruned block at λ = 1 is affine; it can be deployed in more than one *form*, and which is
fastest depends on the device (the latency table decides, see :mod:`compress.prune.updp.select`):

=================  =========================================================================
form               deployed as (ONNX nodes inside the merged part)
=================  =========================================================================
``dense``          one k×k conv, identity folded into the centre tap (``Conv``), then the
                   block's post-residual activation if it has one (ResNet's ReLU)
``dw_pw``          depthwise conv with BN folded + one 1x1 conv + residual add
                   (``Conv, Conv, Add``; ConvNeXt's default, ALGORITHMS §1.3)
``linear``         ViT MLP sub-block as one C×C linear with the identity folded in
                   (``MatMul, Add`` or ``Gemm``); attention is kept
=================  =========================================================================

Plus ``keep``: the block is not pruned. Every module here holds plain ``nn.Conv2d``/``nn.Linear``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from compress.prune.updp import reparam
from compress.prune.updp.linearize import (
    ActStep,
    BNStep,
    ConvStep,
    NormSwapStep,
    PartialBNStep,
    PrunedChain,
    PrunedViTBlock,
    ScaleStep,
    SEStep,
)

KEEP = "keep"
FORMS: dict[str, tuple[str, ...]] = {
    "resnet_basic": ("dense",),
    "resnet_bottleneck": ("dense",),
    "mbconv": ("dense", "dw_pw"),
    "convnext": ("dw_pw", "dense"),
    "vit_mlp": ("linear",),
    "chain": ("dense", "dw_pw"),
}


class MergedConv(nn.Module):
    """One conv (residual folded in), optionally followed by the block's kept activation."""

    def __init__(self, conv: nn.Conv2d, act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv = conv
        self.act = act

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.conv(x)
        return self.act(y) if self.act is not None else y


class MergedDwPw(nn.Module):
    """Depthwise conv → 1x1 conv (→ + x when the block has its identity residual)."""

    def __init__(self, dw: nn.Conv2d, pw: nn.Conv2d, residual: bool, act: nn.Module | None = None) -> None:
        super().__init__()
        self.dw, self.pw, self.residual, self.act = dw, pw, residual, act

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        y = self.pw(self.dw(x))
        if self.residual:
            y = y + x
        return self.act(y) if self.act is not None else y


class MergedViTBlock(nn.Module):
    """ViT block with its MLP sub-block merged into one linear (identity folded in)."""

    def __init__(self, pruned: PrunedViTBlock, mlp: nn.Linear) -> None:
        super().__init__()
        self.norm1, self.attn, self.ls1, self.drop_path1 = pruned.norm1, pruned.attn, pruned.ls1, pruned.drop_path1
        self.mlp = mlp

    def forward(self, x: torch.Tensor, attn_mask: Any = None, is_causal: bool = False) -> torch.Tensor:
        kw = {} if attn_mask is None and not is_causal else {"attn_mask": attn_mask, "is_causal": is_causal}
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x), **kw)))
        return self.mlp(x)


def _f64(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().double()


def chain_ops(steps: list[nn.Module]) -> list[tuple]:
    """The λ = 1 affine ops of a chain's steps (activations, SE gates and masks vanish).

    Tensors are float64 so that the composition adds no rounding of its own; the merged weights
    are rounded to the model's dtype once, at the end.
    """
    ops: list[tuple] = []
    for s in steps:
        if isinstance(s, ConvStep):
            w, b = s.weight_bias()
            ops.append(("conv", _f64(w), _f64(b), s.stride, s.groups))
        elif isinstance(s, PartialBNStep):  # identity on the first channels, the BN on the rest
            bs, bt = reparam.bn_affine(
                _f64(s.bn.weight), _f64(s.bn.bias), _f64(s.bn.running_mean), _f64(s.bn.running_var), s.bn.eps
            )
            one = torch.ones(s.start, dtype=torch.float64)
            ops.append(("affine", torch.cat([one, bs]), torch.cat([torch.zeros_like(one), bt])))
        elif isinstance(s, (BNStep, NormSwapStep)):
            bn = s.bn
            ops.append(
                (
                    "affine",
                    *reparam.bn_affine(
                        _f64(bn.weight), _f64(bn.bias), _f64(bn.running_mean), _f64(bn.running_var), bn.eps
                    ),
                )
            )
        elif isinstance(s, ScaleStep):
            g = _f64(s.gamma).reshape(-1)
            ops.append(("affine", g, torch.zeros_like(g)))
        elif isinstance(s, (ActStep, SEStep)):
            continue
        else:
            raise TypeError(f"unknown step {type(s).__name__}")
    return ops


def forms_for(chain: PrunedChain) -> tuple[str, ...]:
    """Merged forms that apply to this chain (a kind's forms filtered by the chain's shape)."""
    if getattr(chain, "shortcut", None) is not None:
        return ("dense",)  # the projection folds into the one merged kernel only
    out = []
    for f in FORMS.get(chain.kind, ("dense",)):
        if f == "dw_pw" and not _dw_pw_ok(chain):
            continue
        out.append(f)
    return tuple(out)


def _dw_pw_ok(chain: PrunedChain) -> bool:
    convs = chain.convs
    first = convs[0]
    dw = first.groups > 1 and first.groups == first.in_channels == first.out_channels
    return dw and all(c.k == 1 and c.stride == 1 for c in convs[1:]) and len(convs) > 1


def _conv(w: torch.Tensor, b: torch.Tensor, stride: int, pad: int, groups: int) -> nn.Conv2d:
    conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], w.shape[2], stride=stride, padding=pad, groups=groups, bias=True)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    return conv


def _fold_shortcut(chain: PrunedChain, w: torch.Tensor, b: torch.Tensor, stride: int, groups: int):
    """Add a projection shortcut's composed kernel into the main kernel, centred: the main chain
    pads its input by P and the shortcut by P_s <= P, so the shortcut's taps sit at offset P − P_s."""
    sc = list(chain.shortcut)
    ws, bs, ss, gs = reparam.compose_chain(chain_ops(sc), chain.convs[0].in_channels, dtype=torch.float64)
    if ss != stride:
        raise ValueError(f"shortcut stride {ss} != block stride {stride}")
    w = reparam.grouped_to_dense(w, groups).clone()
    ws = reparam.grouped_to_dense(ws, gs)
    off = chain.total_pad - next(s for s in sc if isinstance(s, ConvStep)).pad
    k = ws.shape[-1]
    w[:, :, off : off + k, off : off + k] += ws
    return w, b + bs


def merge(pruned: nn.Module, form: str) -> nn.Module:
    """Merge a pruned block (at λ = 1, eval statistics) into its deployed ``form``."""
    chain = pruned.chain if isinstance(pruned, PrunedViTBlock) else pruned
    if form not in forms_for(chain):
        raise ValueError(f"form {form!r} does not apply to a {chain.kind} block; choose from {forms_for(chain)}")
    cin = chain.convs[0].in_channels
    with torch.no_grad():
        if form in ("dense", "linear"):
            w, b, stride, groups = reparam.compose_chain(
                chain_ops(list(chain.steps)), cin, residual=chain.residual, dtype=torch.float64
            )
            if getattr(chain, "shortcut", None) is not None:
                w, b = _fold_shortcut(chain, w, b, stride, groups)
                groups = 1
            if form == "linear":
                lin = nn.Linear(w.shape[1], w.shape[0])
                lin.weight.copy_(w[:, :, 0, 0])
                lin.bias.copy_(b)
                return MergedViTBlock(pruned, lin)
            return MergedConv(_conv(w, b, stride, chain.total_pad, groups), chain.post_act)
        # dw_pw: the first conv and the per-channel ops right after it stay depthwise.
        steps = list(chain.steps)
        i = 1
        while i < len(steps) and not isinstance(steps[i], ConvStep):
            i += 1
        head = [op for op in chain_ops(steps[:i])]
        tail = chain_ops(steps[i:])
        wd, bd, sd, gd = reparam.compose_chain(head, cin, dtype=torch.float64)
        wp, bp, _, _ = reparam.compose_chain(tail, wd.shape[0], dtype=torch.float64)
        return MergedDwPw(
            _conv(wd, bd, sd, chain.convs[0].pad, gd), _conv(wp, bp, 1, 0, 1), chain.residual, chain.post_act
        )
