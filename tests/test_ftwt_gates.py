"""FTWT gates: surgery sites, FLOPs accounting, decoupled vs joint gradients, mask-loss cooldown."""

import pytest
import torch
import torch.nn as nn

from compress.core.errors import UsageError
from compress.prune.ftwt.accounting import measure_flops
from compress.prune.ftwt.gates import ChannelGate, GatedConv
from compress.prune.ftwt.models import build_small
from compress.prune.ftwt.train import FtwtTrainConfig, mask_loss, mask_weight, train
from compress.prune.ftwt.wrap import (
    backbone_parameters,
    configure,
    find_sites,
    gates_off,
    insert_gates,
    iter_gates,
    predictor_parameters,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits16():
    from compress.data import load_dataset

    return load_dataset("digits", image_size=16, seed=0)


def _x(n=4, size=16, seed=0):
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,expected", [("resnet", 7), ("mobilenetv2", 19), ("mobilenetv1", 11), ("vgg", 6)])
def test_sites_of_small_models(name, expected):
    m = build_small(name)
    sites = find_sites(m)
    assert len(sites) == expected
    assert not any("shortcut" in s["parent"] for s in sites)
    insert_gates(m, example=_x(), sites=sites)  # raises if gates-off output differs
    assert sum(isinstance(g, GatedConv) for g in m.modules()) == expected


def test_mobilenetv2_project_conv_has_no_activation_and_resnet_conv2_gates_before_add():
    m = build_small("mobilenetv2")
    sites = find_sites(m)
    proj = [s for s in sites if s["parent"].endswith(".project")]
    assert proj and all(s["act"] is None for s in proj)
    r = build_small("resnet")
    conv2 = [s for s in find_sites(r) if s["conv"] == "conv2"]
    assert conv2 and all(s["act"] is None for s in conv2)


@pytest.mark.parametrize("name,expected", [("resnet18", 17), ("mobilenetv2_100", 52)])
def test_timm_blocks_are_gated(name, expected):
    timm = pytest.importorskip("timm")
    m = timm.create_model(name, num_classes=10, in_chans=1).eval()
    m, sites = insert_gates(m, example=torch.randn(2, 1, 32, 32))
    assert len(sites) == expected
    assert not any("downsample" in s["parent"] for s in sites)


def test_no_sites_is_a_clear_error():
    with pytest.raises(UsageError, match="no Conv2d"):
        insert_gates(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


def test_gate_mask_is_hard_and_threshold_at_zero_logit():
    g = ChannelGate(3, 4)
    with torch.no_grad():
        g.fc.weight.zero_()
        g.fc.bias.copy_(torch.tensor([1.0, -1.0, 0.5, -0.5]))
    y = torch.ones(2, 4, 3, 3)
    out = g(torch.randn(2, 3, 3, 3), y)
    assert out[:, :, 0, 0].tolist() == [[1, 0, 1, 0], [1, 0, 1, 0]]


def _force_half(model):
    """Every gate keeps exactly its first half of channels, whatever the input."""
    for _, g in iter_gates(model):
        with torch.no_grad():
            g.fc.weight.zero_()
            c = g.out_channels
            g.fc.bias.copy_(torch.tensor([10.0] * (c // 2) + [-10.0] * (c - c // 2)))


def test_accounting_of_a_plain_stack_matches_hand_count():
    m = build_small("vgg")
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):  # positive everywhere: no channel is zero by chance
            nn.init.constant_(bn.weight, 0.0)
            nn.init.constant_(bn.bias, 1.0)
    insert_gates(m, example=_x())
    x = _x(8, 16)
    dense = measure_flops(m, x)
    with gates_off(m):
        off = measure_flops(m, x)
    assert off["dense_macs"] == dense["dense_macs"]
    _force_half(m)
    half = measure_flops(m, x)
    # vgg on 16x16: convs 1->16, 16->16 @16x16, 16->32, 32->32 @8x8, 32->64, 64->64 @4x4, fc 64->10
    full = [(1, 16, 256), (16, 16, 256), (16, 32, 64), (32, 32, 64), (32, 64, 16), (64, 64, 16)]
    assert half["dense_macs"] == sum(ci * co * hw * 9 for ci, co, hw in full) + 64 * 10
    # with every gate keeping half its outputs, each conv's input is halved too (except the image)
    expect = sum((ci if i == 0 else ci // 2) * (co // 2) * hw * 9 for i, (ci, co, hw) in enumerate(full)) + 32 * 10
    assert half["macs_mean"] == pytest.approx(expect)
    assert half["flops_reduction_mean"] > 0.7 and off["flops_reduction_mean"] == 0.0
    assert half["flops_reduction_p10"] == pytest.approx(half["flops_reduction_p90"])  # input-independent masks
    g = [layer for layer in half["layers"] if layer["gated"]]
    assert all(abs(layer["active_out_frac"] - 0.5) < 1e-6 for layer in g)
    assert half["predictor_macs"] > 0
    assert half["flops_reduction_mean_with_predictors"] < half["flops_reduction_mean"]


def _mask_loss_grads(mode):
    m = build_small("resnet")
    insert_gates(m, mode=mode)
    m.train()
    configure(m, collect=True, mass=0.9)
    m(_x(8))
    loss = mask_loss(m)
    loss.backward()
    bb = [p.grad for p in backbone_parameters(m)]
    pr = [p.grad for p in predictor_parameters(m)]
    return bb, pr


def test_decoupled_mask_loss_leaves_backbone_gradients_untouched():
    bb, pr = _mask_loss_grads("decoupled")
    assert all(g is None or float(g.abs().max()) == 0.0 for g in bb)
    assert any(g is not None and float(g.abs().max()) > 0 for g in pr)


def test_joint_mask_loss_reaches_the_backbone():
    bb, pr = _mask_loss_grads("joint")
    assert any(g is not None and float(g.abs().max()) > 0 for g in bb)
    assert any(g is not None and float(g.abs().max()) > 0 for g in pr)


def test_task_loss_never_reaches_the_predictor():
    m = build_small("resnet")
    insert_gates(m)
    m.train()
    nn.functional.cross_entropy(m(_x(8)), torch.arange(8) % 10).backward()
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0 for p in predictor_parameters(m))


def test_mask_weight_schedule():
    cfg = FtwtTrainConfig(epochs=4, cooldown=0.5)
    assert [mask_weight(e, cfg) for e in range(4)] == [1.0, 1.0, 0.0, 0.0]
    cfg = FtwtTrainConfig(epochs=3, cooldown=0.5, w_mask=2.0)  # released: epoch >= int(0.5 * 3) = 1 is off
    assert [mask_weight(e, cfg) for e in range(3)] == [2.0, 0.0, 0.0]
    # deviation: the released code would never train the predictors in a 1-epoch run
    assert [mask_weight(e, FtwtTrainConfig(epochs=1, cooldown=0.5)) for e in range(1)] == [1.0]
    assert [mask_weight(e, FtwtTrainConfig(epochs=2, cooldown=0.0)) for e in range(2)] == [0.0, 0.0]


def test_backbone_lr_schedules():
    from compress.prune.ftwt.train import backbone_lr

    cfg = FtwtTrainConfig(epochs=200, lr=0.01, schedule="step")  # the released job script: x0.1 at epochs 81, 122, 151
    lrs = {e: backbone_lr(cfg, e, 0, 1) for e in (0, 80, 81, 121, 122, 150, 151, 199)}
    assert lrs[0] == lrs[80] == 0.01 and lrs[81] == pytest.approx(1e-3) and lrs[121] == pytest.approx(1e-3)
    assert lrs[122] == pytest.approx(1e-4) and lrs[151] == pytest.approx(1e-5) and lrs[199] == pytest.approx(1e-5)
    short = FtwtTrainConfig(epochs=3, lr=1.0, schedule="step")  # no milestone before epoch 1
    assert [backbone_lr(short, e, 0, 1) for e in range(3)] == pytest.approx([1.0, 0.01, 0.001])
    cos = FtwtTrainConfig(epochs=2, lr=0.1, schedule="cosine")
    assert backbone_lr(cos, 0, 0, 100) == pytest.approx(0.1) and backbone_lr(cos, 1, 50, 100) == pytest.approx(0.05)


def test_mask_loss_off_and_predictors_frozen_after_half_the_epochs(digits16):
    m = build_small("resnet")
    insert_gates(m)
    snaps = []

    def log(_msg):
        snaps.append([p.detach().clone() for p in predictor_parameters(m)])

    hist = train(
        m, digits16.train.subset(256), cfg=FtwtTrainConfig(epochs=4, mass=0.9, batch_size=64), progress=False, log=log
    )
    assert [h["w_mask"] for h in hist] == [1.0, 1.0, 0.0, 0.0]
    assert hist[0]["mask_loss"] > 0 and hist[2]["mask_loss"] == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(snaps[0], snaps[1]))  # trained in epoch 2
    assert all(torch.equal(a, b) for a, b in zip(snaps[1], snaps[3]))  # frozen afterwards


def test_interrupted_training_resumes_to_the_same_weights(digits16, tmp_path):
    cfg = FtwtTrainConfig(epochs=2, mass=0.9, batch_size=64)
    split = digits16.train.subset(192)

    def gated():
        m = build_small("vgg")
        insert_gates(m)
        return m

    full = gated()
    train(full, split, cfg=cfg, progress=False, log=lambda s: None)

    class Stop(Exception):
        pass

    def stop_in_epoch_2(msg):
        if "epoch 2/2" in msg:
            raise Stop

    part = gated()
    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(Stop):
        train(part, split, cfg=cfg, checkpoint=ckpt, progress=False, log=stop_in_epoch_2)
    resumed = gated()
    hist = train(resumed, split, cfg=cfg, checkpoint=ckpt, progress=False, log=lambda s: None)
    assert [h["epoch"] for h in hist] == [1, 2]
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(UsageError, match="different settings"):
        train(
            gated(),
            split,
            cfg=FtwtTrainConfig(epochs=3, mass=0.9, batch_size=64),
            checkpoint=ckpt,
            progress=False,
            log=lambda s: None,
        )


def test_supernet_subnet_mbconv_blocks_are_gated():
    sn = pytest.importorskip("compress.supernet")
    import numpy as np

    net = sn.build_supernet("mbv3-small-input", seed=0)
    cfg = net.sample(np.random.default_rng(0))
    net.set_active(cfg)
    static = net.export_active().eval()
    sites = find_sites(static)
    blocks = {s["parent"] for s in sites if s["parent"].startswith("blocks.")}
    assert blocks and all(any(s["parent"] == b and s["conv"] == "dw_conv" for s in sites) for b in blocks)
    assert all(s["act"] is None for s in sites if s["conv"] == "project_conv")
    insert_gates(static, example=torch.randn(2, 1, cfg.resolution, cfg.resolution), sites=sites)


def test_stop_after_caps_the_schedule_and_a_later_call_resumes(digits16, tmp_path):
    """``stop_after`` ends early on the same schedule; resuming without it equals one straight run."""
    split = digits16.train.subset(256)
    cfg = FtwtTrainConfig(epochs=2, lr=0.05, batch_size=64, seed=0)
    a, b = build_small("vgg"), build_small("vgg")
    ck = tmp_path / "ck.pt"
    assert len(train(a, split, cfg=cfg, checkpoint=ck, progress=False, log=lambda s: None, stop_after=1)) == 1
    hist = train(a, split, cfg=cfg, checkpoint=ck, progress=False, log=lambda s: None)
    straight = train(b, split, cfg=cfg, progress=False, log=lambda s: None)
    assert [h["ce"] for h in hist] == pytest.approx([h["ce"] for h in straight])
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
