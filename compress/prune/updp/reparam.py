"""UPDP merge algebra: pure tensor functions, no modules, no surgery (ALGORITHMS.md §1.4).

Every function takes and returns plain tensors. A conv is ``(W[o, i/groups, kh, kw], b[o])``
in cross-correlation convention (``torch.nn.functional.conv2d``); a linear is a 1x1 conv.
All of it is exact in eval mode (BatchNorm is an affine per-channel map with running stats).

Composition rule used throughout: :func:`compose_conv` composes two convolutions *with no
padding between them*. UPDP's pruned blocks are built so that this holds at λ = 1 (the input
is padded once by the total padding of the chain; see :mod:`compress.prune.updp.linearize`),
which makes the merged conv equal the λ = 1 block on every pixel, borders included.

>>> import torch
>>> w, b = torch.randn(4, 3, 3, 3), torch.randn(4)
>>> s, t = bn_affine(torch.rand(4) + .5, torch.randn(4), torch.randn(4), torch.rand(4) + .5, 1e-5)
>>> w2, b2 = fold_bn_post(w, b, s, t)
>>> w2.shape
torch.Size([4, 3, 3, 3])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def bn_affine(
    weight: Tensor | None, bias: Tensor | None, mean: Tensor, var: Tensor, eps: float
) -> tuple[Tensor, Tensor]:
    """Eval-mode BatchNorm as ``y = s*x + t``: ``s = γ/√(σ²+ε)``, ``t = β − s·μ``."""
    g = torch.ones_like(mean) if weight is None else weight
    be = torch.zeros_like(mean) if bias is None else bias
    s = g / torch.sqrt(var + eps)
    return s, be - s * mean


def fold_bn_post(w: Tensor, b: Tensor | None, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """BN after a conv/linear: ``W'[o] = s[o]·W[o]``, ``b' = s⊙b + t`` (works for grouped convs)."""
    b = torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b
    shape = (-1,) + (1,) * (w.dim() - 1)
    return w * s.reshape(shape), s * b + t


def fold_bn_pre(w: Tensor, b: Tensor | None, s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """BN before a *dense, unpadded* conv or a linear: ``W'[o,i] = W[o,i]·s[i]``, ``b' = b + Σ W·t``.

    Exact for linears, 1x1 convs and k×k convs without padding (with zero padding it is exact only
    in the interior, so UPDP never uses it there: pad once at the chain input instead).
    """
    b = torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b
    shape = (1, -1) + (1,) * (w.dim() - 2)
    w2 = w * s.reshape(shape)
    b2 = b + (w.sum(dim=tuple(range(2, w.dim()))) if w.dim() > 2 else w) @ t
    return w2, b2


def grouped_to_dense(w: Tensor, groups: int) -> Tensor:
    """Expand a grouped conv weight (``O, I/g, k, k``) to the equivalent dense (block-diagonal) one."""
    if groups == 1:
        return w
    o, ig = w.shape[:2]
    og = o // groups
    dense = w.new_zeros((o, ig * groups, *w.shape[2:]))
    for g in range(groups):
        dense[g * og : (g + 1) * og, g * ig : (g + 1) * ig] = w[g * og : (g + 1) * og]
    return dense


def compose_conv(
    wa: Tensor, ba: Tensor | None, stride_a: int, wb: Tensor, bb: Tensor | None, *, groups_a: int = 1, groups_b: int = 1
) -> tuple[Tensor, Tensor]:
    """Compose conv A (applied first) and conv B, with no padding between them: ``B(A(x)) = C(x)``.

    ``C[o,i,q] = Σ_c Σ_{s_a·r + t = q} B[o,c,r]·A[c,i,t]`` (kernel ``k_a + (k_b−1)·s_a``, stride
    ``s_a·s_b``), computed as a transposed convolution of B's kernel by A's. Covers 1x1 after k×k,
    k×k after 1x1, depthwise either side (expanded to dense) and k×k after k×k.
    Bias: ``b' = Σ_{c,r} B[o,c,r]·b_a[c] + b_b``.
    """
    wa = grouped_to_dense(wa, groups_a)
    wb = grouped_to_dense(wb, groups_b)
    if wb.shape[1] != wa.shape[0]:
        raise ValueError(f"cannot compose: B takes {wb.shape[1]} channels, A gives {wa.shape[0]}")
    w = F.conv_transpose2d(wb, wa, stride=stride_a)
    ba = torch.zeros(wa.shape[0], dtype=wa.dtype) if ba is None else ba
    bb = torch.zeros(wb.shape[0], dtype=wb.dtype) if bb is None else bb
    return w, wb.sum(dim=(2, 3)) @ ba + bb


def compose_linear(w1: Tensor, b1: Tensor | None, w2: Tensor, b2: Tensor | None) -> tuple[Tensor, Tensor]:
    """Two linears / 1x1 convs: ``W' = W2·W1``, ``b' = W2·b1 + b2``."""
    b1 = torch.zeros(w1.shape[0], dtype=w1.dtype) if b1 is None else b1
    b2 = torch.zeros(w2.shape[0], dtype=w2.dtype) if b2 is None else b2
    return w2 @ w1, w2 @ b1 + b2


def scale_rows(w: Tensor, b: Tensor | None, gamma: Tensor) -> tuple[Tensor, Tensor]:
    """Layer scale after a conv/linear: ``W'[o] = γ[o]·W[o]``, ``b' = γ⊙b``."""
    b = torch.zeros(w.shape[0], dtype=w.dtype) if b is None else b
    return w * gamma.reshape((-1,) + (1,) * (w.dim() - 1)), gamma * b


def add_identity(w: Tensor) -> Tensor:
    """Fold a residual identity into a dense conv (odd kernel, stride 1, O == I) or a linear."""
    o, i = w.shape[:2]
    if o != i:
        raise ValueError(f"identity needs as many outputs as inputs, got {o} and {i}")
    w = w.clone()
    idx = torch.arange(o)
    if w.dim() == 2:
        w[idx, idx] += 1
        return w
    kh, kw = w.shape[2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"identity needs an odd kernel, got {kh}x{kw}")
    w[idx, idx, kh // 2, kw // 2] += 1
    return w


def identity_conv(channels: int, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """The 1x1 identity conv, the neutral start of a composition."""
    return torch.eye(channels, dtype=dtype).reshape(channels, channels, 1, 1), torch.zeros(channels, dtype=dtype)


def compose_chain(
    ops: list[tuple], in_channels: int, *, residual: bool = False, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor, int, int]:
    """Compose affine ops, applied in order, into one conv ``(W, b, stride, groups)``.

    ``ops`` items: ``("conv", W, b, stride, groups)`` (unpadded) or ``("affine", s, t)`` (per-channel
    ``s⊙x + t``: BatchNorm, layer scale). Per-channel ops keep a grouped conv grouped, so a
    depthwise conv followed by BN stays depthwise. ``residual`` adds the identity (stride 1,
    square kernel, O == I). With no conv at all the result starts from the 1x1 identity.
    """
    w: Tensor | None = None
    b: Tensor | None = None
    stride, groups = 1, 1
    for op in ops:
        if op[0] == "affine":
            _, s, t = op
            if w is None:
                w, b = identity_conv(in_channels, dtype)
            w, b = fold_bn_post(w, b, s, t)
        elif op[0] == "conv":
            _, wc, bc, sc, gc = op
            if w is None:
                w, b, stride, groups = wc, bc, sc, gc
                if b is None:
                    b = torch.zeros(wc.shape[0], dtype=wc.dtype)
            else:
                w, b = compose_conv(w, b, stride, wc, bc, groups_a=groups, groups_b=gc)
                stride, groups = stride * sc, 1
        else:
            raise ValueError(f"unknown op {op[0]!r}")
    if w is None:
        w, b = identity_conv(in_channels, dtype)
    if residual:
        if stride != 1:
            raise ValueError("an identity residual needs stride 1")
        w, groups = add_identity(grouped_to_dense(w, groups)), 1
    return w, b, stride, groups


def conv_macs(w: Tensor, out_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of a conv (weight ``O, I/g, kh, kw``) producing ``out_hw`` pixels."""
    return int(w.shape[0] * w.shape[1] * w.shape[2] * w.shape[3] * out_hw[0] * out_hw[1])
