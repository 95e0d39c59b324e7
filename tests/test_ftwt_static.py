"""The static L1-norm filter pruning baseline used by the FTWT benchmark."""

import torch

from compress.prune.ftwt.accounting import measure_flops
from compress.prune.ftwt.models import build_small
from compress.prune.ftwt.static_l1 import l1_keep_mask, match_flops, set_keep_ratio, static_masks
from compress.prune.ftwt.wrap import apply_sites, find_sites

torch.set_num_threads(1)


def test_l1_keep_mask_keeps_largest_filters():
    w = torch.zeros(4, 2, 3, 3)
    for i, v in enumerate([0.1, 3.0, -2.0, 0.5]):
        w[i] = v
    assert l1_keep_mask(w, 0.5).tolist() == [0, 1, 1, 0]
    assert l1_keep_mask(w, 0.0).tolist() == [0, 1, 0, 0]  # at least one filter survives
    assert l1_keep_mask(w, 1.0).tolist() == [1, 1, 1, 1]


def test_depthwise_inherits_the_expand_mask_and_flops_match_target():
    m = build_small("mobilenetv2")
    apply_sites(m, find_sites(m), kind="static")
    set_keep_ratio(m, 0.5)
    masks = static_masks(m)
    for prev, cur in zip(masks, masks[1:]):
        c = cur.conv
        if c.groups > 1 and c.groups == c.in_channels:
            assert torch.equal(cur.mask, prev.mask)
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    best = match_flops(m, x, 0.5)
    assert abs(best["reduction"] - 0.5) < 0.03
    assert abs(measure_flops(m, x)["flops_reduction_mean"] - best["reduction"]) < 1e-9
