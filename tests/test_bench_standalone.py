"""benchmarks/bench_standalone.py's pieces: the budget replay, resumable stand-alone training, the
latency match and the report (real sklearn digits data, real ONNX Runtime; seconds)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_standalone", ROOT / "benchmarks" / "bench_standalone.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_standalone"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_budget_replay_matches_the_embedded_supernets_recorded_run(bench) -> None:
    """Steps and subnet passes replayed from the checkpoint header equal what its training run recorded."""
    from compress.supernet import default_checkpoint_path
    from compress.supernet.checkpoint import read_checkpoint_header

    ckpt = default_checkpoint_path()
    header = read_checkpoint_header(ckpt)
    sidecar = json.loads((ckpt.parent / "supernet.json").read_text())
    got = bench.supernet_budget(header, int(header["data"]["sizes"]["train"]))
    assert got["steps"] == header["recipe"]["steps"] == sidecar["steps"]
    assert got["passes"] == sidecar["subnet_passes"]
    assert got["steps"] < got["passes"] <= 4 * got["steps"]  # full-model steps, then 4 subnets a step


def _digits_split():
    from compress.data import load_dataset

    return load_dataset("digits", image_size=8, seed=0)


def _tiny_space():
    from compress.supernet import get_space

    space = get_space("mbv3-small-input")
    assert (space.in_channels, space.num_classes) == (1, 10)  # digits: 1 channel, 10 classes
    return space


def _small_cnn() -> torch.nn.Module:
    """A small CNN with BN and dropout (dropout checks that resumed runs reuse the per-step seeds)."""
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Dropout(0.1),
        nn.Linear(256, 10),
    )


def test_train_static_learns_and_resumes_exactly(bench, tmp_path) -> None:
    data = _digits_split()
    kw = dict(train=data.train, resolution=8, seed=0)

    a = _small_cnn()
    before = bench.top1(a, data.test, 8)
    rec = bench.train_static(a, steps=40, recipe=bench.Recipe(batch_size=64, base_lr=0.1, augment=False), **kw)
    after = bench.top1(a, data.test, 8)
    assert rec["steps"] == 40 and rec["resumed_from"] is None
    assert after > max(0.7, before + 0.3), (before, after)  # learned something real on real digits

    # with augmentation and dropout: killed after the checkpoint at step 10, the resumed job ends with
    # the same weights as an uninterrupted one (batch order, flips/shifts and dropout are per-step seeded)
    aug = bench.Recipe(batch_size=64, base_lr=0.1, augment=True)
    straight = _small_cnn()
    bench.train_static(straight, steps=20, recipe=aug, **kw)
    ck = tmp_path / "job.pt"
    with pytest.raises(KeyboardInterrupt):
        bench.train_static(
            _small_cnn(), steps=20, recipe=aug, **kw, ckpt=ck, checkpoint_every=10, on_step=_interrupt_at(13)
        )
    assert torch.load(ck, weights_only=True)["step"] == 10
    c = _small_cnn()
    rec = bench.train_static(c, steps=20, recipe=aug, **kw, ckpt=ck, checkpoint_every=10)
    assert rec["resumed_from"] == 10 and rec["steps"] == 20
    for (n, p), q in zip(straight.state_dict().items(), c.state_dict().values()):
        assert torch.equal(p, q), n


def _interrupt_at(step: int):
    def hook(done: int) -> None:
        if done >= step:
            raise KeyboardInterrupt

    return hook


def test_closest_is_a_ratio_and_latency_is_measured_for_subnets_and_timm(bench) -> None:
    assert bench.closest(1.0, {"a": 0.5, "b": 1.9, "c": 3.0}, ["a", "b", "c"]) == "b"  # log(1.9) < log(2)
    space = _tiny_space()
    subs = bench.subnet_archs(space, [("min", space.min_config().to_dict())], 0)
    cands = bench.timm_archs(["mobilenetv3_small_050"], [28], in_chans=1, num_classes=10, seed=0)
    assert cands[0].build()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    ms, drift = bench.measure_ms(subs + cands, in_chans=1, threads=1, iterations=5)
    assert set(ms) == {"min", "mobilenetv3_small_050@28"} and all(math.isfinite(v) and v > 0 for v in ms.values())
    assert drift["passes"] == 2 and drift["threads"] == 1 and drift["status"]


def test_report_labels_a_quick_run_as_a_smoke_run(bench, tmp_path) -> None:
    row = {"name": "min", "kind": "subnet", "params": 10, "ms": 0.1, "supernet": 0.9, "share": 0.89, "full": 0.9}
    row["supernet_minus_share"] = 0.01
    timm = {"name": "resnet10t@28", "kind": "timm", "params": 20, "ms": 0.2, "share": 0.8, "full": 0.85}
    res = {
        "quick": True,
        "supernet": {"path": "x.safetensors", "family": "mbv3-small-input"},
        "data": {"name": "fashion-mnist", "sizes": {"train": 2048, "test": 10000}},
        "recipe": {"batch_size": 128},
        "budget": {"steps": 500, "passes": 1436, "scale": 0.08},
        "latency": {"drift": {"threads": 1, "passes": 2, "status": "stable"}},
        "device": "cpu",
        "seed": 0,
        "rows": [row, timm],
        "verdict": {"within_half_point": True, "searched_beats_timm": True},
        "timm": {"picked": "resnet10t@28", "ms_ratio": 1.1},
        "mid": {"how": "from x.json"},
    }
    md = bench.render_md(res)
    assert "SMOKE RUN" in md.splitlines()[0] and "| min | 10 | 0.100 | 90.00 | 89.00 | 90.00 | +1.00 |" in md
    bench.plot(res, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 1000
