"""Supernet contract: export_active == active forward, counts, ONNX, masks, permutations, BN recal."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from compress.core.errors import UsageError
from compress.supernet import build_static, build_supernet, get_space
from compress.supernet.base import front_permutation, resize_input
from compress.supernet.static import ConvNeXtBlock, MBConv, StaticNet, build_block_module

torch.set_num_threads(1)

SMALL = ["mbv3-small-input", "convnext-small-input"]


def _space(fam):
    # the large families keep their exact layout; only the resolution list is reduced for speed
    if fam == "ofa-resnet":
        return get_space("ofa-resnet", resolutions=[64])
    return get_space(fam)


def _randomise(net, seed=0):
    """Random BN statistics and non-trivial kernel transforms, so equality tests mean something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, b in net.named_buffers():
            if n.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif n.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
        for n, p in net.named_parameters():
            if "transform_" in n or n.endswith("bn.weight") or n.endswith("bn.bias") or n.endswith("gamma"):
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net


def _check_configs(fam, n, res=None, seed=0):
    sp = _space(fam)
    net = _randomise(build_supernet(sp, seed=seed)).eval()
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        cfg = net.sample(rng)
        if res is not None:
            cfg = sp.config(
                resolution=res, width=cfg.width, depths=cfg.depths, kernels=cfg.kernels, expands=cfg.expands
            )
        net.set_active(cfg)
        static = net.export_active()
        assert isinstance(static, StaticNet) and not static.training
        x = torch.randn(2, sp.in_channels, cfg.resolution, cfg.resolution)
        with torch.no_grad():
            a, b = net(x), static(x)
        worst = max(worst, (a - b).abs().max().item())
        assert sum(p.numel() for p in static.parameters()) == net.count(cfg).params
        # static classes only: no elastic module left in the export
        assert not any(type(m).__module__.endswith(("elastic", "ops")) for m in static.modules())
    assert worst <= 1e-5, worst


@pytest.mark.parametrize("fam", SMALL)
def test_export_equals_supernet_50_configs(fam):
    _check_configs(fam, 50)


def test_export_equals_supernet_ofa_mbv3_fast():
    _check_configs("ofa-mbv3", 6, res=128)


def test_export_equals_supernet_ofa_resnet_fast():
    _check_configs("ofa-resnet", 3)


@pytest.mark.slow
@pytest.mark.parametrize("fam", ["ofa-mbv3", "ofa-resnet"])
def test_export_equals_supernet_50_configs_large(fam):
    _check_configs(fam, 50, res=128 if fam == "ofa-mbv3" else None)


def _onnx_check(fam, n, res=None):
    import onnx
    import onnxruntime as ort

    sp = _space(fam)
    net = _randomise(build_supernet(sp)).eval()
    rng = np.random.default_rng(1)
    for _ in range(n):
        cfg = net.sample(rng)
        if res is not None:
            cfg = sp.config(
                resolution=res, width=cfg.width, depths=cfg.depths, kernels=cfg.kernels, expands=cfg.expands
            )
        net.set_active(cfg)
        static = net.export_active()
        x = torch.randn(1, sp.in_channels, cfg.resolution, cfg.resolution)
        buf = io.BytesIO()
        torch.onnx.export(static, x, buf, input_names=["x"], output_names=["y"], dynamo=False, opset_version=17)
        model = onnx.load_from_string(buf.getvalue())
        onnx.checker.check_model(model)
        ops = {node.op_type for node in model.graph.node}
        assert not ops & {"Loop", "If", "Slice"}, ops  # plain static graph
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        (y,) = sess.run(None, {"x": x.numpy()})
        with torch.no_grad():
            ref = net(x).numpy()
        assert np.abs(y - ref).max() <= 1e-4 * max(1.0, np.abs(ref).max())


@pytest.mark.parametrize("fam", SMALL)
def test_onnx_export_checker_and_ort(fam):
    _onnx_check(fam, 8)


@pytest.mark.slow
@pytest.mark.parametrize("fam", [*SMALL, "ofa-mbv3", "ofa-resnet"])
def test_onnx_export_50_configs(fam):
    _onnx_check(fam, 50, res=128 if fam == "ofa-mbv3" else None)


@pytest.mark.parametrize("fam", SMALL)
def test_dynamo_onnx_export(fam, tmp_path):
    import onnxruntime as ort

    net = build_supernet(fam).eval()
    net.set_active(net.sample(np.random.default_rng(3)))
    static = net.export_active()
    r = net.active.resolution
    x = torch.randn(1, 1, r, r)
    p = tmp_path / "m.onnx"
    torch.onnx.export(static, (x,), str(p), dynamo=True, external_data=False)
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert np.abs(y - static(x).numpy()).max() <= 1e-4


def test_onnx_ofa_mbv3_one_config():
    _onnx_check("ofa-mbv3", 1, res=128)


@pytest.mark.parametrize("fam", SMALL + ["ofa-resnet"])
def test_build_block_module_params_match_specs(fam):
    from compress.supernet.layout import spec_cost

    sp = _space(fam)
    cfg = sp.sample(np.random.default_rng(2))
    for s in sp.block_specs(cfg):
        m = build_block_module(s).eval()
        assert sum(p.numel() for p in m.parameters()) == spec_cost(s)[0], s
        x = torch.randn(1, s.in_ch, s.in_hw, s.in_hw)
        if s.kind == "linear":
            x = torch.randn(1, s.in_ch, 1, 1)
        with torch.no_grad():
            y = m(x)
        assert y.shape[1] == s.out_ch and (s.kind == "linear" or y.shape[-1] == s.out_hw)
    static = build_static(sp, cfg)
    net = build_supernet(sp)
    net.set_active(cfg)
    assert set(static.state_dict()) == set(net.export_active().state_dict())


def test_static_block_classes_are_detectable():
    net = build_supernet("mbv3-small-input")
    assert any(isinstance(m, MBConv) and m.use_residual for m in net.export_active().blocks)
    net = build_supernet("convnext-small-input")
    assert any(isinstance(m, ConvNeXtBlock) for m in net.export_active().blocks)


@pytest.mark.parametrize("fam", SMALL + ["ofa-mbv3"])
def test_permute_hidden_preserves_function(fam):
    sp = _space(fam)
    net = _randomise(build_supernet(sp)).eval()
    cfg = (
        sp.max_config()
        if fam != "ofa-mbv3"
        else sp.config_from_dict({"ks": [5] * 20, "e": [6] * 20, "d": [2] * 5, "r": 128})
    )
    net.set_active(cfg)
    x = torch.randn(2, sp.in_channels, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        before = net(x)
        rng = np.random.default_rng(0)
        for i in range(len(net.blocks)):
            net.permute_hidden(i, rng.permutation(net.hidden_size(i)))
        after = net(x)
    assert (before - after).abs().max() <= 1e-5
    with torch.no_grad():
        net.reorganize_channels()
        again = net(x)
    assert (before - again).abs().max() <= 1e-5
    # importance is now non-increasing in every block
    for blk in net.blocks:
        imp = blk.importance()
        assert bool((imp[:-1] >= imp[1:] - 1e-6).all())
    with pytest.raises(UsageError, match="permutation"):
        net.permute_hidden(0, [0, 0, 1])
    with pytest.raises(UsageError, match="out of range"):
        net.permute_hidden(999, [0])


def test_front_permutation_for_ist():
    net = build_supernet("mbv3-small-input").eval()
    n = net.hidden_size(1)
    part = list(range(n // 2, n))
    p = front_permutation(n, part)
    assert sorted(p.tolist()) == list(range(n)) and p[: len(part)].tolist() == part
    old = net.blocks[1].expand_conv.weight[part].clone()
    net.permute_hidden(1, p)
    assert torch.equal(net.blocks[1].expand_conv.weight[: len(part)], old)


@pytest.mark.parametrize("fam", SMALL + ["ofa-mbv3"])
def test_active_param_masks_match_gradients(fam):
    sp = _space(fam)
    net = _randomise(build_supernet(sp)).train()
    rng = np.random.default_rng(4)
    for _ in range(3):
        cfg = net.sample(rng)
        if fam == "ofa-mbv3":
            cfg = sp.config(resolution=128, width=1.0, depths=cfg.depths, kernels=cfg.kernels, expands=cfg.expands)
        net.set_active(cfg)
        net.zero_grad(set_to_none=True)
        x = torch.randn(4, sp.in_channels, cfg.resolution, cfg.resolution)
        net(x).square().sum().backward()
        masks = net.active_param_masks()
        assert set(masks) == {n for n, _ in net.named_parameters()}
        for n, p in net.named_parameters():
            used = torch.zeros_like(masks[n]) if p.grad is None else p.grad != 0
            # every element with a gradient is marked; marked elements are exactly the used ones
            assert not bool((used & ~masks[n]).any()), n
        count = sum(int(m.sum()) for n, m in masks.items())
        exported = sum(p.numel() for p in net.export_active().parameters())
        if not sp.kernel_transform:  # plain slicing: the marked elements are the exported ones
            assert count == exported
        else:  # transforms read a larger kernel region plus the matrices
            assert count >= exported


def test_resize_and_bn_recalibration():
    from compress.supernet import recalibrate_bn

    net = build_supernet("convnext-small-input").eval()
    cfg = net.min_config()
    images = torch.randn(64, 1, 32, 32) * 2 + 1
    assert resize_input(images, 28).shape[-1] == 28
    static = net.export_active()
    net.set_active(cfg)
    static = recalibrate_bn(net.export_active(), cfg, images, batch_size=16)
    assert not static.training
    bn = static.stem[0].bn
    assert bool(torch.isfinite(bn.running_mean).all()) and bool(torch.isfinite(bn.running_var).all())
    stem_out = static.stem[0].conv(resize_input(images, 28))
    assert torch.allclose(bn.running_mean, stem_out.mean((0, 2, 3)), atol=1e-4)
    # recalibrating the supernet in place gives the same statistics on its active slices
    recalibrate_bn(net, cfg, images, batch_size=16)
    x = resize_input(images[:4], 28)
    with torch.no_grad():
        assert (net(x) - static(x)).abs().max() <= 1e-4
    with pytest.raises(UsageError, match="calibration images"):
        recalibrate_bn(net, cfg, torch.empty(0, 1, 32, 32))
