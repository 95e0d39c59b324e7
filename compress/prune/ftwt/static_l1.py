"""Static L1-norm filter pruning (Li et al. 2017 style), the baseline FTWT is compared against.

Every gate site of FTWT gets a fixed 0/1 output-channel mask that keeps the ``ceil(keep * C)``
filters with the largest L1 weight norm (one uniform keep ratio for all layers). A depthwise conv
inherits the mask of the conv feeding it (its channels are the same channels). The keep ratio is
found by bisection so that the accounted FLOPs reduction matches a target (e.g. FTWT's mean), and
the masked model is then fine-tuned like FTWT. Masks are kept as multiplications (no channels are
physically removed), so FLOPs are counted by the same accounting as FTWT.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn

from compress.core.errors import InternalError
from compress.prune.ftwt.accounting import measure_flops
from compress.prune.ftwt.gates import StaticMask


def l1_keep_mask(weight: torch.Tensor, keep: float) -> torch.Tensor:
    """0/1 mask over output filters keeping the ``ceil(keep * C)`` (at least 1) largest L1 norms."""
    c = weight.shape[0]
    k = max(1, min(c, math.ceil(keep * c - 1e-9)))
    norms = weight.detach().abs().reshape(c, -1).sum(1)
    idx = torch.argsort(norms, descending=True, stable=True)[:k]
    mask = torch.zeros(c)
    mask[idx] = 1.0
    return mask


def static_masks(model: nn.Module) -> list[StaticMask]:
    return [m for m in model.modules() if isinstance(m, StaticMask)]


def set_keep_ratio(model: nn.Module, keep: float) -> None:
    """Set every :class:`StaticMask` of ``model`` to its L1 top-``keep`` filters (depthwise convs
    copy the mask of the preceding masked conv with the same channel count)."""
    prev: torch.Tensor | None = None
    for m in static_masks(model):
        conv = m.conv
        dw = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if dw and prev is not None and prev.numel() == conv.out_channels:
            m.mask.copy_(prev)
        else:
            m.mask.copy_(l1_keep_mask(conv.weight, keep))
        prev = m.mask.clone()


def match_flops(model: nn.Module, images: torch.Tensor, target_reduction: float, *, iters: int = 14) -> dict[str, Any]:
    """Bisect the uniform keep ratio so the mean FLOPs reduction on ``images`` is closest to the target."""
    lo, hi = 0.0, 1.0
    best: dict[str, Any] | None = None
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        set_keep_ratio(model, mid)
        red = measure_flops(model, images)["flops_reduction_mean"]
        if best is None or abs(red - target_reduction) < abs(best["reduction"] - target_reduction):
            best = {"keep": mid, "reduction": red}
        if red > target_reduction:
            lo = mid
        else:
            hi = mid
    if best is None:  # only with iters < 1: a caller's bug, not the user's input
        raise InternalError(f"match_flops needs iters >= 1, got {iters}")
    set_keep_ratio(model, best["keep"])
    return best
