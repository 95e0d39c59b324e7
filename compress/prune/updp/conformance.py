"""The exactness contract of UPDP, checked block by block on any model (tests and benchmarks).

For every candidate block: its pruned form at λ = 0 equals the original block (eval mode), and every
merged form equals the pruned form at λ = 1 to ``tol`` relative error, on random inputs, with every
BatchNorm's running statistics and affine parameters randomised (so folding is really exercised).
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn


def randomize_bn(module: nn.Module, *, seed: int) -> None:
    """Random running statistics and γ/β for every BatchNorm in ``module`` (seeded)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.2)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check_block(block: nn.Module, name: str, x: torch.Tensor, *, seed: int = 0) -> dict[str, Any]:
    """λ = 0 vs the original block, and every merged form vs λ = 1, as relative errors."""
    from compress.prune.updp.candidates import chain_of, to_pruned
    from compress.prune.updp.forms import forms_for, merge

    orig = copy.deepcopy(block).eval()
    randomize_bn(orig, seed=seed)
    pruned = to_pruned(copy.deepcopy(orig), name).eval()
    chain = chain_of(pruned)
    with torch.no_grad():
        y0 = orig(x)
        chain.lam = 0.0
        lam0 = _rel(pruned(x), y0)
        randomize_bn(pruned, seed=seed + 1)  # the swapped norms' new BatchNorms too
        chain.lam = 1.0
        y1 = pruned(x)
        forms = {f: _rel(merge(pruned, f).eval()(x), y1) for f in forms_for(chain)}
    return {
        "name": name,
        "kind": chain.kind,
        "lambda0_rel_error": lam0,
        "forms_rel_error": forms,
        "max_rel_error": max([lam0, *forms.values()]),
    }


def check_model(
    model: nn.Module, input_shape: tuple[int, ...], *, seed: int = 0, batch: int = 2, names: list[str] | None = None
) -> list[dict[str, Any]]:
    """:func:`check_block` for every candidate of ``model`` (or ``names``) at its real input shape."""
    try:
        from compress.prune.updp.latency import block_inputs
    except ImportError:  # before it moved there from api
        from compress.prune.updp.api import block_inputs
    from compress.prune.updp.candidates import find_candidates

    model = model.eval()
    cands = [c for c in find_candidates(model)[0] if names is None or c.name in names]
    shapes = block_inputs(model, [c.name for c in cands], input_shape)
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in cands:
        x = torch.randn(batch, *shapes[c.name], generator=g)
        out.append(check_block(c.module, c.name, x, seed=seed))
    return out


# timm families the conformance tests and benchmarks/bench_updp_families.py run over (one model
# each, the smallest of the family). ``fast``: in the fast test suite; ``min_candidates``: what the
# graph path finds today (the tests hold it there); ``reparam``: train-time branches to fold first.
FAMILIES: list[dict[str, Any]] = [
    {"family": "ResNet", "model": "resnet18", "fast": True, "min_candidates": 5, "check": 2},
    {"family": "ResNet (bottleneck)", "model": "resnet50", "min_candidates": 16, "check": 4},
    {"family": "RegNet", "model": "regnetx_002", "min_candidates": 13},
    {"family": "RegNetY (SE)", "model": "regnety_002", "min_candidates": 13},
    {"family": "MobileNetV2", "model": "mobilenetv2_050", "fast": True, "min_candidates": 17},
    {"family": "MobileNetV3", "model": "mobilenetv3_small_050", "min_candidates": 11},
    {"family": "MobileNetV4", "model": "mobilenetv4_conv_small", "min_candidates": 12},
    {"family": "MNASNet", "model": "mnasnet_small", "min_candidates": 15},
    {"family": "EfficientNet", "model": "efficientnet_b0", "min_candidates": 16},
    {"family": "GhostNet", "model": "ghostnet_050", "fast": True, "min_candidates": 7},
    {"family": "RepVGG", "model": "repvgg_a0", "min_candidates": 0, "reparam": True},
    {"family": "MobileOne", "model": "mobileone_s0", "min_candidates": 0, "reparam": True},
    {"family": "ConvNeXt", "model": "convnext_atto", "fast": True, "min_candidates": 12, "check": 2},
    {"family": "DeiT", "model": "deit_tiny_patch16_224", "min_candidates": 12, "size": 224},
]
