"""Pure tensor math for FTWT: self-supervised mask labels and per-sample conv MACs.

No module surgery and no IO here (ALGORITHMS.md §4.2 and the FLOPs rule of §4.3).

>>> import torch
>>> mass_labels(torch.tensor([[.3, .3, .2, .1, .1, .03, .01]]), 0.95).sum().item()
4.0
"""

from __future__ import annotations

import torch

DELTA = 1e-5  # the released code's tolerance for cumulative mass and for "fires nowhere"


def peak_scores(act: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-channel peak magnitude ``a_c = max_{h,w} |O_c(h, w)|``: (N, C, H, W) -> (N, C)."""
    if act.dim() == 2:
        return act.abs()
    return act.detach().abs().amax(dim=tuple(range(2, act.dim())))


def mass_labels(scores: torch.Tensor, mass: float) -> torch.Tensor:
    """Heatmap-mass ground truth (ALGORITHMS.md §4.2), as float 0/1 of the same shape (N, C).

    ``p_c = a_c / sum_c a_c`` per sample; sorted in descending order, a filter is kept (label 1)
    while the cumulative mass up to and including it is at most ``mass`` (+1e-5), so the kept mass
    never exceeds ``mass``. ``mass == 1`` keeps every filter with ``p_c > 1e-5`` (drops only those
    that fire nowhere). The paper's example: [.3, .3, .2, .1, .1, .03, .01] with mass 0.95 keeps the top 4.

    Checked against the released code (``get_fmap_criteria`` / ``get_gt_mask_ratio``): same peak
    score (global max of |output| of the unmasked layer output, taken after the activation, or after
    BN for a ResNet block's second conv and a MobileNetV2 project conv), same normalisation, the same
    1e-5 tolerance on both branches. Two edge cases differ on purpose: (1) the ``p_c > 0`` term also
    drops zero-mass filters when ``1 - mass < 1e-5`` (for any smaller mass the cumulative sum has
    already passed ``mass`` before them, so both give 0); (2) a sample whose channels are all zero
    gets all-zero labels here, while the released code divides 0 by 0 and its NaN comparisons keep
    every filter.
    """
    if not 0.0 < float(mass) <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    scores = scores.detach().float()
    total = scores.sum(dim=1, keepdim=True)
    p = torch.where(total > 0, scores / total.clamp_min(1e-30), torch.zeros_like(scores))
    if float(mass) == 1.0:
        return (p > DELTA).float()
    sorted_p, idx = torch.sort(p, dim=1, descending=True)
    keep_sorted = (torch.cumsum(sorted_p, dim=1) - float(mass) <= DELTA) & (sorted_p > 0)
    labels = torch.zeros_like(p)
    labels.scatter_(1, idx, keep_sorted.float())
    return labels


def conv_macs(
    active_in: torch.Tensor, active_out: torch.Tensor, *, out_hw: int, kernel: int, groups: int = 1
) -> torch.Tensor:
    """Per-sample MACs of a (grouped) conv whose active input/output channels are given.

    ``active_in`` (N, C_in) and ``active_out`` (N, C_out) are 0/1. For each group g the MACs are
    ``active_out_g * active_in_g * H*W * k^2``. With ``groups == 1`` this is exactly the paper's
    ``FLOPs_l = active_out * H*W * (active_in / groups) * k^2``; for grouped/depthwise convs it
    counts exactly the (input, output) pairs that are both active instead of the paper's
    ``active_in / groups`` average (for a depthwise conv: channels active on both sides).
    ``kernel`` is ``k_h * k_w``; a Linear layer is ``out_hw=1, kernel=1``.
    """
    n, cin = active_in.shape
    cout = active_out.shape[1]
    if cin % groups or cout % groups:
        raise ValueError(f"channels ({cin}, {cout}) are not divisible by groups={groups}")
    ai = active_in.float().reshape(n, groups, cin // groups).sum(-1)
    ao = active_out.float().reshape(n, groups, cout // groups).sum(-1)
    return (ai * ao).sum(-1) * float(out_hw * kernel)


def dense_conv_macs(cin: int, cout: int, *, out_hw: int, kernel: int, groups: int = 1) -> int:
    """MACs of the dense layer (what thop counts for a conv/linear, without bias)."""
    return int(cout * out_hw * (cin // groups) * kernel)


def reduction_stats(macs: torch.Tensor, dense: float) -> dict[str, float]:
    """Mean/p10/p50/p90 of the per-sample FLOPs reduction ``1 - macs/dense``."""
    red = 1.0 - macs.double() / float(dense)
    q = torch.quantile(red, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    return {
        "mean": float(red.mean()),
        "p10": float(q[0]),
        "p50": float(q[1]),
        "p90": float(q[2]),
        "min": float(red.min()),
        "max": float(red.max()),
    }
