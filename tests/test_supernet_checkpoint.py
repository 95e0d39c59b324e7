"""Checkpoints, `compress info`, model references (resolver + 'subnet' base kind)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from compress.cli.main import app
from compress.core.errors import UsageError
from compress.supernet import build_supernet, load_checkpoint, save_checkpoint
from compress.supernet.checkpoint import checkpoint_info, default_checkpoint_path, read_checkpoint_header

torch.set_num_threads(1)


@pytest.fixture()
def ckpt(tmp_path):
    net = build_supernet("mbv3-small-input", seed=3)
    with torch.no_grad():
        for n, b in net.named_buffers():
            if n.endswith("running_var"):
                b.uniform_(0.5, 1.5)
    p = tmp_path / "net.safetensors"
    save_checkpoint(
        p, net, recipe={"name": "deps", "epochs": 1}, data={"dataset": "fashion-mnist"}, metrics={"top1_max": 0.5}
    )
    return p, net


def test_round_trip_exact(ckpt):
    p, net = ckpt
    back = load_checkpoint(p)
    assert back.space == net.space
    sd, sd2 = net.state_dict(), back.state_dict()
    assert set(sd) == set(sd2) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert back.checkpoint["metrics"] == {"top1_max": 0.5} and back.checkpoint["recipe"]["name"] == "deps"
    cfg = back.sample(np.random.default_rng(0))
    net.eval().set_active(cfg)
    back.set_active(cfg)
    x = torch.randn(2, 1, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        assert torch.equal(net(x), back(x))


def test_fp16_storage(tmp_path):
    net = build_supernet("convnext-small-input")
    p16, p32 = tmp_path / "a16.safetensors", tmp_path / "a32.safetensors"
    save_checkpoint(p16, net, fp16=True)
    save_checkpoint(p32, net)
    assert p16.stat().st_size < 0.6 * p32.stat().st_size
    back = load_checkpoint(p16)
    assert read_checkpoint_header(p16)["dtype"] == "float16"
    for k, v in net.state_dict().items():
        w = back.state_dict()[k]
        assert w.dtype == v.dtype and torch.allclose(w.float(), v.float(), rtol=1e-3, atol=1e-4)


def test_truncated_and_corrupted(ckpt, tmp_path):
    p, _ = ckpt
    data = p.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="truncated"):
        load_checkpoint(cut)
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(data[:5])
    with pytest.raises(UsageError, match="truncated"):
        load_checkpoint(tiny)
    (n,) = struct.unpack("<Q", data[:8])
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[:8] + b"\xff" * n + data[8 + n :])
    with pytest.raises(UsageError, match="corrupted"):
        load_checkpoint(bad)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"hello world, not a checkpoint at all" * 10)
    with pytest.raises(UsageError, match="corrupted|truncated"):
        load_checkpoint(junk)
    with pytest.raises(UsageError, match="not found"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_shape_mismatch_with_declared_space(ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    p, _ = ckpt
    hdr = read_checkpoint_header(p)
    hdr.pop("_tensors")
    hdr["space"]["stages"][0]["width"] = 24  # declare another space than the weights hold
    out = tmp_path / "lie.safetensors"
    save_file(load_file(str(p)), str(out), metadata={"compress": json.dumps(hdr)})
    with pytest.raises(UsageError, match="do not match the declared 'mbv3-small-input' search space"):
        load_checkpoint(out)
    plain = tmp_path / "plain.safetensors"
    save_file({"first_conv.conv.weight": torch.zeros(16, 3, 3, 3)}, str(plain))
    with pytest.raises(UsageError, match="import-ofa"):
        load_checkpoint(plain)
    hdr["space"]["stages"][0]["kernels"] = [4]
    out2 = tmp_path / "badspace.safetensors"
    save_file(load_file(str(p)), str(out2), metadata={"compress": json.dumps(hdr)})
    with pytest.raises(UsageError, match="kernel choices must be odd"):
        load_checkpoint(out2)


def test_info_function_and_cli(ckpt):
    p, net = ckpt
    info = checkpoint_info(p)
    sp = net.space
    assert info["family"] == "mbv3-small-input" and info["num_subnets"] == sp.num_subnets()
    assert info["params_min"] == sp.count(sp.min_config()).params
    assert info["macs_max"] == sp.count(sp.max_config()).macs
    res = CliRunner().invoke(app, ["info", str(p), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    for key in ("family", "num_subnets", "params_min", "params_max", "macs_min", "macs_max", "metrics"):
        assert key in data
    assert data["metrics"] == {"top1_max": 0.5}
    res = CliRunner().invoke(app, ["info", str(p)])
    assert res.exit_code == 0 and "mbv3-small-input" in res.output
    res = CliRunner().invoke(app, ["info", str(p.parent / "missing.safetensors")])
    assert res.exit_code == 2 and "error: checkpoint not found" in res.output


def test_embedded_default_is_small_or_absent():
    from compress.supernet.checkpoint import DEFAULT_DIR, DEFAULT_NAME

    p = DEFAULT_DIR / DEFAULT_NAME
    if p.is_file():
        assert default_checkpoint_path() == p and p.stat().st_size < 10 * 2**20
    else:
        with pytest.raises(UsageError, match="no default supernet checkpoint"):
            default_checkpoint_path()
    # an fp16 checkpoint of each small family fits the 10 MB budget
    for fam in ("mbv3-small-input", "convnext-small-input"):
        n = sum(v.numel() for v in build_supernet(fam).state_dict().values())
        assert 2 * n < 10 * 2**20


def test_load_model_resolver_and_model_dir(ckpt, tmp_path):
    from compress.models import load_model, save_model_dir

    p, net = ckpt
    lm = load_model(p, subnet="min")
    sp = net.space
    assert lm.source["kind"] == "subnet" and lm.source["config"] == sp.min_config().to_dict()
    assert lm.input_shape == (1, 28, 28) and lm.num_classes == 10 and lm.dataset == "fashion-mnist"
    cfg = sp.sample(np.random.default_rng(7))
    lm2 = load_model(p, subnet=cfg.key())
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({"config": cfg.to_dict(), "predicted": {}}))
    lm3 = load_model(str(p), subnet=str(cfg_file))
    x = torch.randn(1, 1, cfg.resolution, cfg.resolution)
    with torch.no_grad():
        assert torch.equal(lm2.module(x), lm3.module(x))
    assert load_model(p).source["config"] == sp.max_config().to_dict()
    with pytest.raises(UsageError, match="neither"):
        load_model(p, subnet="medium")
    with pytest.raises(UsageError, match="allowed"):
        load_model(p, subnet=json.dumps({**cfg.to_dict(), "resolution": 99}))
    # model dir with base kind 'subnet' rebuilds the architecture without the checkpoint
    d = save_model_dir(tmp_path / "m", lm2)
    p.unlink()
    back = load_model(d)
    with torch.no_grad():
        assert torch.equal(back.module(x), lm2.module(x))
    # a damaged checkpoint is reported as damaged by load_model, not as an unknown model
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10" + b"\x00" * 7 + b"{}")
    with pytest.raises(UsageError, match="truncated|corrupted"):
        load_model(bad)
