"""Whole-model merge exactness (random and real photos) and the ONNX graph of merged blocks."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn

from compress.prune.updp.candidates import chain_of, find_candidates, to_pruned
from compress.prune.updp.forms import forms_for, merge
from compress.prune.updp.surgery import insert_pruned, merge_model, pruned_blocks

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def photos(size: int) -> torch.Tensor:
    """The real photos scikit-learn and scikit-image ship, resized, ImageNet-normalised."""
    import skimage.data
    import torch.nn.functional as F
    from sklearn.datasets import load_sample_images

    imgs = list(load_sample_images().images) + [skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()]
    t = torch.stack(
        [
            F.interpolate(
                torch.from_numpy(np.asarray(i, dtype=np.float32)).permute(2, 0, 1)[None] / 255,
                size=(size, size),
                mode="bilinear",
                antialias=True,
            )[0]
            for i in imgs
        ]
    )
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (t - mean) / std


def _randomize(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)


MODELS = [
    ("resnet18", 64),
    ("mobilenetv2_100", 64),
    ("convnext_atto", 64),
    pytest.param("deit_tiny_patch16_224", 224, marks=pytest.mark.slow),
    pytest.param("efficientnet_b0", 64, marks=pytest.mark.slow),
    pytest.param("resnet50", 64, marks=pytest.mark.slow),
]


@pytest.mark.parametrize("name,size", MODELS)
def test_whole_model_merge_exact(name, size):
    import timm

    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10).eval()
    cands, _ = find_candidates(model)
    insert_pruned(model, [c.name for c in cands], lam=1.0)
    _randomize(model)
    model.eval()
    for form_pick in (0, -1):  # first and last applicable form of every block
        forms = {n: forms_for(chain_of(p))[form_pick] for n, p in pruned_blocks(model).items()}
        merged = merge_model(copy.deepcopy(model), forms)
        assert not pruned_blocks(merged)
        for x in (photos(size), torch.randn(2, 3, size, size)):
            with torch.no_grad():
                y, ym = model(x), merged(x)
            assert float((ym - y).abs().max() / y.abs().max()) <= 1e-5, (name, forms)


def _onnx_ops(module: nn.Module, shape) -> list[str]:
    import tempfile
    from pathlib import Path

    import onnx

    from compress.prune.updp.latency import export_onnx

    with tempfile.TemporaryDirectory() as d:
        g = onnx.load(str(export_onnx(module, tuple(shape), Path(d) / "b.onnx"))).graph
    consts = {i.name for i in g.initializer}
    # the exporter aliases identical initialisers with Identity nodes: constants, not compute
    return [n.op_type for n in g.node if not (n.op_type == "Identity" and set(n.input) <= consts)]


@pytest.mark.parametrize(
    "name,shape,block,form,expected",
    [
        ("convnext_atto", (1, 80, 15, 15), "stages.1.blocks.0", "dw_pw", ["Conv", "Conv", "Add"]),
        ("convnext_atto", (1, 80, 15, 15), "stages.1.blocks.0", "dense", ["Conv"]),
        ("mobilenetv2_100", (1, 24, 15, 15), "blocks.1.1", "dense", ["Conv"]),
        ("resnet18", (1, 64, 15, 15), "layer1.0", "dense", ["Conv", "Relu"]),  # the ReLU after the add is kept
    ],
)
def test_merged_block_onnx_nodes(name, shape, block, form, expected):
    import timm

    model = timm.create_model(name, num_classes=10).eval()
    p = to_pruned(model.get_submodule(block), block)
    chain_of(p).lam = 1.0
    ops = _onnx_ops(merge(p.eval(), form), shape)
    assert ops == expected
    original = _onnx_ops(model.get_submodule(block), shape)
    assert len(original) > len(ops)


def test_merged_vit_block_onnx_has_no_mlp_left():
    import timm

    model = timm.create_model("deit_tiny_patch16_224", num_classes=10).eval()
    p = to_pruned(model.blocks[3], "blocks.3")
    chain_of(p).lam = 1.0
    merged = merge(p.eval(), "linear")
    ops = _onnx_ops(merged, (1, 197, 192))
    orig = _onnx_ops(model.blocks[3], (1, 197, 192))
    assert "Gelu" not in ops and "Erf" not in ops and "BatchNormalization" not in ops
    assert ops.count("LayerNormalization") == 1 and orig.count("LayerNormalization") == 2
    # the merged MLP part is exactly one MatMul (+ bias Add) after the attention residual Add
    last_add = max(i for i, o in enumerate(ops[:-1]) if o == "Add" and ops[i + 1] == "MatMul")
    assert ops[last_add + 1 :] == ["MatMul", "Add"]


def _supernet_available() -> bool:
    try:
        import compress.supernet.static  # noqa: F401
        from compress.supernet import build_supernet  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _supernet_available(), reason="compress.supernet is not installed")
@pytest.mark.parametrize("family,kind", [("convnext-small-input", "convnext"), ("mbv3-small-input", "mbconv")])
def test_supernet_subnet_merge_exact(family, kind):
    from compress.supernet import build_supernet

    net = build_supernet(family, seed=0)
    cfg = net.space.sample(np.random.default_rng(1))
    net.set_active(cfg)
    static = net.export_active().eval()
    cands, _ = find_candidates(static)
    assert cands and {c.kind for c in cands} == {kind}
    insert_pruned(static, [c.name for c in cands], lam=1.0)
    _randomize(static)
    static.eval()
    cin = static.stem[0].conv.in_channels
    x = torch.randn(3, cin, cfg.resolution, cfg.resolution)
    for pick in (0, -1):
        forms = {n: forms_for(chain_of(p))[pick] for n, p in pruned_blocks(static).items()}
        merged = merge_model(copy.deepcopy(static), forms)
        with torch.no_grad():
            y, ym = static(x), merged(x)
        assert float((ym - y).abs().max() / y.abs().max()) <= 1e-5


def test_efficientnet_lite0_real_weights_merge_exact():
    pytest.importorskip("efficientnet_lite_pytorch")
    from compress.models import load_model

    lm = load_model("efficientnet-lite0")
    model = lm.module.eval()
    cands, skipped = find_candidates(model)
    # the 9 identity-skip blocks plus stride-1 channel-changing ones; strided blocks with TF 'same'
    # (asymmetric) padding are listed as unsupported
    assert sum(chain_of(to_pruned(c.module, c.name)).residual for c in cands) == 9
    assert all("asymmetric" in s.reason for s in skipped)
    x = photos(224)
    with torch.no_grad():
        insert_pruned(model, [c.name for c in cands], lam=1.0)
        model.eval()
        y = model(x)
        merged = merge_model(
            copy.deepcopy(model), {n: forms_for(chain_of(p))[0] for n, p in pruned_blocks(model).items()}
        )
        assert float((merged(x) - y).abs().max() / y.abs().max()) <= 1e-5
