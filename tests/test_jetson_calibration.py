"""The Jetson roofline calibration: published rows, the fit, the shipped factors, DLA, and ordering
of estimates across devices and power modes (more clock and bandwidth: never slower)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from compress.core.errors import UsageError
from compress.hardware import get_profile
from compress.latency import published as P
from compress.latency.reference_models import model_signatures
from compress.latency.roofline import block_time_ms, roof_from_profile
from compress.latency.signature import BlockSignature


def _ms(device: str, precision: str = "int8", sigs=None, engine: str = "gpu") -> float:
    roof = roof_from_profile(get_profile(device), precision, engine=engine)
    return sum(block_time_ms(s, roof) for s in (sigs or model_signatures("resnet50-v1.5")))


def test_resnet50_definition_matches_torchvision():
    tv = pytest.importorskip("torchvision")
    import torch

    net = tv.models.resnet50(weights=None).eval()
    macs = []

    def hook(m, i, o):
        if isinstance(m, torch.nn.Conv2d):
            macs.append(o.numel() * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1])
        elif isinstance(m, torch.nn.Linear):
            macs.append(m.in_features * m.out_features)

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net(torch.zeros(1, 3, 224, 224))
    from compress.latency.roofline import block_ops

    ours = (
        sum(
            o.flops
            for s in model_signatures("resnet50-v1.5")
            for o in block_ops(s)
            if o.kind != "pool" and o.kind != "elementwise"
        )
        // 2
    )
    assert abs(ours - sum(macs)) / sum(macs) < 0.001  # 4.09 GMACs, the v1.5 strides included


def test_published_rows_carry_sources_and_match_profiles():
    rows = P.load_rows()
    assert len(rows) >= 6 and len({r.group for r in rows}) >= 3
    for r in rows:
        assert r.source and r.statistic == "mean" and r.engine == "gpu"
        prof = get_profile(r.device, power_mode=r.mode)  # every row names a profile and one of its modes
        assert abs(prof.spec.clock_ghz.value * 1000 - r.clocks["gpu_mhz"]) < 1.0


def test_shipped_calibration_is_the_fit_of_the_shipped_rows():
    rows = P.load_rows()
    cal = P.load_calibration("jetson-orin-gpu")
    fresh = P.calibrate(rows)
    assert sorted(cal.rows) == sorted(r.id for r in rows), "re-fit: compress latency calibrate-published"
    assert cal.efficiency_scale == pytest.approx(fresh.efficiency_scale, rel=1e-3)
    assert cal.layer_overhead_cycles == pytest.approx(fresh.layer_overhead_cycles, rel=1e-3)
    assert cal.fit_max_error_pct <= 20.0  # every published row within ±20% after calibration


def test_fit_recovers_known_factors():
    """Rows generated from known (scale, cycles) are fitted back: the fit is a fit, not a constant."""
    rows = P.load_rows()
    truth = (0.9, 5000.0)
    est = P.predict_rows(rows, *truth)
    synth = [r.model_copy(update={"ms": m}) for r, m in zip(rows, est)]
    s, c = P._fit([P._RowOps(r) for r in synth], np.asarray(est), P._weights(synth), prior=0.0)
    assert s == pytest.approx(truth[0], rel=0.01) and c == pytest.approx(truth[1], rel=0.02)


def test_calibration_is_applied_and_labelled():
    from compress.latency.roofline import estimate_note

    prof = get_profile("jetson-agx-orin")
    cal = P.load_calibration("jetson-orin-gpu")
    roof = roof_from_profile(prof, "int8")
    assert roof.efficiency["dense"] == cal.efficiency["dense"]
    assert roof.overhead_s == pytest.approx(cal.layer_overhead_cycles / 1.3005e9)
    note = estimate_note(prof)
    assert note.startswith("ESTIMATED") and f"calibrated to {len(cal.rows)} published figures" in note
    assert "leave-one-out error" in note and "power mode MAXN (default)" in note
    res = P.check_estimates()
    assert {"published_ms", "estimate_ms", "ratio", "loo_estimate_ms", "loo_ratio"} <= set(res["rows"][0])
    assert not res["stale"]


def test_dla_is_its_own_engine_and_flagged():
    from compress.latency.roofline import estimate_note

    gpu, dla = _ms("jetson-agx-orin"), _ms("jetson-agx-orin", engine="dla")
    assert dla > 0 and dla != gpu
    assert "DLA" in estimate_note(get_profile("jetson-agx-orin"), engine="dla")
    assert _ms("jetson-agx-orin@15W", engine="dla") > dla  # DLA clock/peak drops with the mode
    with pytest.raises(UsageError, match="has no DLA estimate"):
        roof_from_profile(get_profile("jetson"), "int8", engine="dla")


MBCONV = [
    BlockSignature(
        kind="mbconv",
        in_hw=56,
        in_ch=24,
        out_hw=56,
        out_ch=24,
        kernel=5,
        mid=144,
        stride=1,
        act="hswish",
        residual=True,
        se=True,
    ),
    BlockSignature(kind="mbconv", in_hw=28, in_ch=40, out_hw=14, out_ch=80, kernel=3, mid=240, stride=2),
]


@pytest.mark.parametrize("sigs", [None, MBCONV], ids=["resnet50", "mbconv"])
def test_estimates_ordered_as_the_hardware(sigs):
    """Across AGX Orin / Orin NX / Orin Nano (original and Super) and across modes: a device/mode with
    at least the GPU throughput (peak), clock and bandwidth of another is never estimated slower."""
    keys = [
        "jetson-agx-orin@MAXN",
        "jetson-agx-orin@50W",
        "jetson-agx-orin@30W",
        "jetson-agx-orin@15W",
        "jetson-agx-orin@MAXQ_MLPERF",
        "jetson-orin-nx@MAXN",
        "jetson-orin-nano@MAXN_SUPER",
        "jetson-orin-nano-original@15W",
        "jetson-orin-nano-4gb@10W",
    ]
    for prec in ("int8", "fp16"):
        est = {k: _ms(k, prec, sigs) for k in keys}
        fig = {}
        for k in keys:
            s = get_profile(k).spec
            fig[k] = (s.peak[prec].value, s.memory_bandwidth.value, s.clock_ghz.value)
        compared = 0
        for a, b in itertools.permutations(keys, 2):
            if all(x >= y for x, y in zip(fig[a], fig[b])):
                compared += 1
                assert est[a] <= est[b] * (1 + 1e-9), (
                    f"{a} ({est[a]:.3f} ms) slower than {b} ({est[b]:.3f} ms) at {prec}"
                )
        assert compared >= 20
    # the chains the docs state
    e = {k: _ms(k) for k in keys}
    assert e["jetson-agx-orin@MAXN"] < e["jetson-agx-orin@50W"] < e["jetson-agx-orin@30W"] < e["jetson-agx-orin@15W"]
    assert e["jetson-agx-orin@MAXN"] < e["jetson-orin-nx@MAXN"] < e["jetson-orin-nano-original@15W"]
    assert e["jetson-orin-nano@MAXN_SUPER"] < e["jetson-orin-nano-original@15W"] < e["jetson-orin-nano-4gb@10W"]
