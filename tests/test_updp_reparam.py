"""UPDP merge algebra and per-block-type merge exactness (random weights, random BN statistics,
odd sizes, stride 2 where supported, batch > 1), borders included."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from compress.prune.updp import reparam
from compress.prune.updp.candidates import chain_of, find_candidates, to_pruned
from compress.prune.updp.forms import forms_for, merge
from compress.prune.updp.linearize import ActStep, BNStep, ConvStep, PrunedChain

torch.set_num_threads(1)
TOL = 1e-5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max() / b.detach().abs().max())


def randomize_bn(m: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            n = mod.num_features
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                mod.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                if mod.weight is not None:
                    mod.weight.copy_(torch.randn(n, generator=g) * 0.3 + 1)
                    mod.bias.copy_(torch.randn(n, generator=g) * 0.3)


# ---- pure algebra ---------------------------------------------------------------------------


def test_fold_bn_post_and_pre_are_exact():
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, bias=True)
    bn = nn.BatchNorm2d(7).eval()
    randomize_bn(bn)
    x = torch.randn(3, 5, 11, 9)
    s, t = reparam.bn_affine(bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.eps)
    w, b = reparam.fold_bn_post(conv.weight, conv.bias, s, t)
    assert rel(F.conv2d(x, w, b), bn(conv(x))) < TOL
    bn_in = nn.BatchNorm2d(5).eval()
    randomize_bn(bn_in, 1)
    s, t = reparam.bn_affine(bn_in.weight, bn_in.bias, bn_in.running_mean, bn_in.running_var, bn_in.eps)
    w, b = reparam.fold_bn_pre(conv.weight, conv.bias, s, t)  # unpadded conv: exact everywhere
    assert rel(F.conv2d(x, w, b), conv(bn_in(x))) < TOL
    lin = nn.Linear(5, 4)
    w, b = reparam.fold_bn_pre(lin.weight, lin.bias, s, t)
    xl = torch.randn(6, 5)
    assert (
        rel(
            F.linear(xl, w, b),
            lin((xl - bn_in.running_mean) / torch.sqrt(bn_in.running_var + bn_in.eps) * bn_in.weight + bn_in.bias),
        )
        < TOL
    )


@pytest.mark.parametrize(
    "ka,kb,sa,ga",
    [
        (3, 1, 1, 1),
        (1, 3, 1, 1),
        (3, 3, 1, 1),
        (5, 3, 1, 1),
        (3, 1, 2, 1),
        (3, 1, 1, 6),
        (1, 5, 1, 1),
        (3, 3, 2, 1),
        (3, 5, 2, 6),
    ],
)
def test_compose_conv_matches_sequential_unpadded(ka, kb, sa, ga):
    """1x1 after k×k, k×k after 1x1, k×k∘k×k, strided first conv, depthwise first conv."""
    torch.manual_seed(ka * 100 + kb * 10 + sa + ga)
    a = nn.Conv2d(6, 6 if ga > 1 else 4, ka, stride=sa, groups=ga)
    b = nn.Conv2d(a.out_channels, 5, kb)
    x = torch.randn(2, 6, 17, 15)
    w, bias = reparam.compose_conv(a.weight, a.bias, sa, b.weight, b.bias, groups_a=ga)
    assert w.shape[-1] == ka + (kb - 1) * sa
    assert rel(F.conv2d(x, w, bias, stride=sa), b(a(x))) < TOL


def test_compose_depthwise_second_and_linear_and_identity_and_scale():
    torch.manual_seed(1)
    e = nn.Conv2d(3, 8, 1)
    d = nn.Conv2d(8, 8, 3, groups=8)
    x = torch.randn(2, 3, 9, 10)
    w, b = reparam.compose_conv(e.weight, e.bias, 1, d.weight, d.bias, groups_b=8)
    assert rel(F.conv2d(x, w, b), d(e(x))) < TOL
    l1, l2 = nn.Linear(6, 24), nn.Linear(24, 6)
    w, b = reparam.compose_linear(l1.weight, l1.bias, l2.weight, l2.bias)
    gamma = torch.randn(6)
    w, b = reparam.scale_rows(w, b, gamma)
    w = reparam.add_identity(w)
    xl = torch.randn(5, 6)
    assert rel(F.linear(xl, w, b), xl + gamma * l2(l1(xl))) < TOL
    c = nn.Conv2d(4, 4, 5, padding=2)
    xi = torch.randn(2, 4, 7, 7)
    assert rel(F.conv2d(xi, reparam.add_identity(c.weight), c.bias, padding=2), c(xi) + xi) < TOL
    with pytest.raises(ValueError):
        reparam.add_identity(torch.zeros(3, 4, 3, 3))


# ---- pruned chains: border handling -------------------------------------------------------


def _basic_chain(c: int, k: int = 3, stride: int = 1) -> PrunedChain:
    steps = [
        ConvStep(nn.Conv2d(c, c, k, padding=k // 2, bias=False)),
        BNStep(nn.BatchNorm2d(c)),
        ActStep(nn.ReLU()),
        ConvStep(nn.Conv2d(c, c, k, padding=k // 2, stride=stride, bias=False)),
        BNStep(nn.BatchNorm2d(c)),
    ]
    return PrunedChain(steps, kind="resnet_basic", name="b", residual=stride == 1, post_act=nn.ReLU())


def test_chain_at_lambda0_equals_zero_padded_original_and_merge_is_exact_at_borders():
    torch.manual_seed(3)
    ch = _basic_chain(5)
    randomize_bn(ch)
    ch.eval()
    x = torch.randn(3, 5, 9, 13)
    c1, bn1, _, c2, bn2 = [s for s in ch.steps]
    orig = F.relu(
        bn2.bn(F.conv2d(F.relu(bn1.bn(F.conv2d(x, c1.conv.weight, padding=1))), c2.conv.weight, padding=1)) + x
    )
    ch.lam = 0.0
    assert rel(ch(x), orig) < TOL  # λ = 0 is the baseline block, borders included
    ch.lam = 1.0
    y1 = ch(x)
    merged = merge(ch, "dense").eval()
    assert merged.conv.kernel_size == (5, 5)
    assert rel(merged(x), y1) < TOL  # every pixel, including the 2-pixel border
    border = torch.ones(9, 13, dtype=torch.bool)
    border[2:-2, 2:-2] = False
    assert float((merged(x) - y1).detach()[..., border].abs().max()) < 1e-4


# ---- every supported timm block type --------------------------------------------------------

CASES = [
    # model, input shape (odd sizes, batch > 1); images large enough to keep strided blocks
    ("resnet18", (2, 3, 37, 41)),
    ("resnet50", (2, 3, 33, 35)),
    ("mobilenetv2_100", (2, 3, 45, 39)),
    ("efficientnet_b0", (2, 3, 43, 45)),
    ("convnext_atto", (2, 3, 67, 61)),
    ("deit_tiny_patch16_224", (2, 3, 224, 224)),
]


@pytest.mark.parametrize("name,shape", CASES)
def test_every_block_merges_exactly(name, shape):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    cands, _ = find_candidates(model)
    assert cands
    kinds = {c.kind for c in cands}
    inputs: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(c.name).register_forward_pre_hook(
            lambda _m, a, n=c.name: inputs.__setitem__(n, a[0].detach())
        )
        for c in cands
    ]
    with torch.no_grad():
        model(torch.randn(shape))
    for h in hooks:
        h.remove()
    strided = 0
    for c in cands:
        p = to_pruned(copy.deepcopy(c.module), c.name)
        randomize_bn(p, seed=len(c.name))
        ch = chain_of(p)
        strided += ch.stride > 1
        ch.lam = 1.0
        p.eval()
        x = inputs[c.name] * 2 + 0.5
        with torch.no_grad():
            y = p(x)
            for f in forms_for(ch):
                assert rel(merge(p, f)(x), y) < TOL, (name, c.name, f)
    if name == "mobilenetv2_100":
        assert strided > 0 and kinds == {"mbconv"}


def test_pruned_block_at_lambda0_equals_original_block():
    import timm

    for name, shape in (("mobilenetv2_100", (2, 3, 33, 33)), ("resnet18", (2, 3, 33, 31))):
        model = timm.create_model(name, num_classes=10).eval()
        randomize_bn(model)
        cands, _ = find_candidates(model)
        x = torch.randn(shape)
        with torch.no_grad():
            y0 = model(x)
            from compress.prune.updp.surgery import insert_pruned

            m2 = copy.deepcopy(model)
            insert_pruned(m2, [c.name for c in cands], lam=0.0)
            assert rel(m2.eval()(x), y0) < TOL
