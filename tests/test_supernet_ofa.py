"""Once-for-All compatibility: import OFA-MBV3 state_dicts and match the reference package."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from compress.cli.main import app
from compress.core.errors import UsageError
from compress.supernet import load_checkpoint
from compress.supernet.ofa_import import import_ofa, map_ofa_key

torch.set_num_threads(1)
ofa_nets = pytest.importorskip(
    "ofa.imagenet_classification.elastic_nn.networks", reason="the reference `ofa` package is not installed"
)


def _reference(width_mult: float, seed: int = 0):
    """OFA's own OFAMobileNetV3 (no pretrained weights, nothing downloaded), with random BN statistics,
    perturbed kernel-transformation matrices and a scaled classifier so outputs are O(1-10)."""
    torch.manual_seed(seed)
    ref = ofa_nets.OFAMobileNetV3(
        n_classes=1000,
        dropout_rate=0.0,
        width_mult=width_mult,
        ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6],
        depth_list=[2, 3, 4],
    )
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if "matrix" in n:
                p.add_(0.05 * torch.randn_like(p))
            if n.startswith("classifier"):
                p.mul_(100.0)
        for n, b in ref.named_buffers():
            if n.endswith("running_mean"):
                b.copy_(0.1 * torch.randn_like(b))
            elif n.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
    return ref.eval()


def _compare(width_mult, n_configs, tmp_path, resolution=128):
    ref = _reference(width_mult)
    src = tmp_path / f"ofa_w{width_mult}.pth"
    torch.save(ref.state_dict(), src)
    out = tmp_path / f"ofa_w{width_mult}.safetensors"
    res = import_ofa(src, out=out)
    assert res["width_mult"] == width_mult and res["num_classes"] == 1000
    net = load_checkpoint(out)
    # same weights: every OFA tensor is in our supernet unchanged
    ours = net.state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(ours[map_ofa_key(k)], v), k
    rng = np.random.default_rng(0)
    worst, scale = 0.0, 0.0
    for i in range(n_configs):
        cfg = net.sample(rng)
        if i == 0:
            cfg = net.min_config()
        if i == 1:
            cfg = net.max_config()
        cfg = net.space.config(
            resolution=resolution, width=1.0, depths=cfg.depths, kernels=cfg.kernels, expands=cfg.expands
        )
        arch = net.space.to_ofa_dict(cfg)
        ref.set_active_subnet(ks=arch["ks"], e=arch["e"], d=arch["d"])
        net.set_active(cfg)
        # same arch config: OFA's own description of its active subnet matches our layer specs
        mb = [b for b in ref.get_active_net_config()["blocks"][1:]]
        specs = [s for s in net.active_specs() if s.slot >= 0]
        assert [(b["conv"]["kernel_size"], b["conv"]["mid_channels"], b["conv"]["out_channels"]) for b in mb] == [
            (s.kernel, s.mid, s.out_ch) for s in specs
        ]
        x = torch.randn(2, 3, resolution, resolution)
        with torch.no_grad():
            a, b, c = ref(x), net(x), net.export_active()(x)
        worst = max(worst, (a - b).abs().max().item(), (a - c).abs().max().item())
        scale = max(scale, a.abs().max().item())
    assert scale > 1.0  # outputs are not trivially small
    assert worst <= 1e-5, worst
    return out


def test_ofa_w10_matches_reference(tmp_path):
    _compare(1.0, 6, tmp_path)


def test_ofa_w12_matches_reference(tmp_path):
    _compare(1.2, 3, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("wm", [1.0, 1.2])
def test_ofa_matches_reference_50_configs(tmp_path, wm):
    _compare(wm, 50, tmp_path, resolution=160)


def test_import_cli_and_key_variants(tmp_path):
    ref = _reference(1.0)
    # OFA's released checkpoints spell blocks as "mobile_inverted_conv" and use a "state_dict" wrapper
    sd = {k.replace("blocks.3.conv.", "blocks.3.mobile_inverted_conv."): v for k, v in ref.state_dict().items()}
    src = tmp_path / "ofa.pth"
    torch.save({"state_dict": sd}, src)
    out = tmp_path / "ofa.safetensors"
    r = CliRunner().invoke(app, ["import-ofa", str(src), "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["family"] == "ofa-mbv3"
    info = CliRunner().invoke(app, ["info", str(out), "--json"])
    assert json.loads(info.stdout)["num_subnets"] > 10**19  # OFA's ">10^19 subnets"
    net = load_checkpoint(out)
    assert torch.equal(net.blocks[2].dw_conv.weight, ref.blocks[3].conv.depth_conv.conv.conv.weight)


def test_import_rejects_other_layouts(tmp_path):
    ref = _reference(1.0)
    sd = ref.state_dict()
    bad = dict(sd)
    bad["blocks.1.conv.point_linear.conv.conv.weight"] = torch.zeros(24, 10, 1, 1)
    p = tmp_path / "bad.pth"
    torch.save(bad, p)
    with pytest.raises(UsageError, match="has shape"):
        import_ofa(p, out=tmp_path / "x.safetensors")
    missing = {k: v for k, v in sd.items() if "blocks.5." not in k}
    torch.save(missing, p)
    with pytest.raises(UsageError, match="missing"):
        import_ofa(p, out=tmp_path / "x.safetensors")
    torch.save({"foo": torch.zeros(1)}, p)
    with pytest.raises(UsageError, match="not an OFA-MobileNetV3"):
        import_ofa(p, out=tmp_path / "x.safetensors")
    p.write_bytes(b"not a torch file")
    r = CliRunner().invoke(app, ["import-ofa", str(p), "--out", str(tmp_path / "y.safetensors")])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "error:" in r.output
    assert not (tmp_path / "x.safetensors").exists()
