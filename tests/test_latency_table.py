"""Table file format: round trip, corrupted files, interpolation, roofline monotonicity."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from compress.core.errors import UsageError
from compress.hardware import get_profile
from compress.latency.interpolate import fill_missing, interpolate_one
from compress.latency.roofline import block_cost, block_time_ms, op_time_s, roof_from_profile
from compress.latency.signature import KINDS, BlockSignature
from compress.latency.table import Entry, LatencyTable

B = BlockSignature


def _table(tmp_path) -> LatencyTable:
    t = LatencyTable.new(
        device="local-cpu",
        runtime="onnxruntime",
        precision="fp32",
        batch=1,
        space="tiny",
        runtime_version="1.0",
        threads=2,
        host={"cpu_model": "x"},
    )
    for c in (16, 32, 64):
        t.add(
            B("mbconv", 8, c, 8, c, kernel=3, mid=3 * c, act="relu", residual=True),
            Entry(count=20, median_ms=c / 100, mean_ms=c / 90, std_ms=0.01, min_ms=c / 110, p10_ms=c / 105),
        )
    t.calibration = {
        "model": "affine",
        "features": ["sum", "1"],
        "coef": [1.1, 0.2],
        "loo_mape": 3.0,
        "fit_mape": 2.0,
        "samples": 20,
    }
    t.save(tables=tmp_path)
    return t


def test_round_trip(tmp_path) -> None:
    t = _table(tmp_path)
    assert t.path == tmp_path / "local-cpu" / "onnxruntime__fp32__b1__tiny.json"
    back = LatencyTable.load(
        device="local-cpu", runtime="onnxruntime", precision="fp32", batch=1, space="tiny", tables=tmp_path
    )
    assert back.entries == t.entries and back.calibration == t.calibration
    assert back.meta.host == {"cpu_model": "x"} and back.meta.updated
    sig = next(iter(t.entries))
    assert back.lookup(sig) == t.entries[sig].p10_ms  # the default estimator
    assert back.lookup(sig.replace(in_ch=17)) is None
    data = json.loads(t.path.read_text())
    assert data["format"] == "compress-latency-table" and data["version"] == 1
    assert data["entries"][0]["key"].startswith("mbconv-in:8x8x")
    # the directory listing `compress devices` uses sees it
    from compress.latency.store import measured_runtimes

    assert measured_runtimes("local-cpu", tables_dir=tmp_path) == ["onnxruntime"]


def test_corrupted_files_error_cleanly(tmp_path) -> None:
    t = _table(tmp_path)
    text = t.path.read_text()
    t.path.write_text(text[: len(text) // 2])
    with pytest.raises(UsageError, match="corrupted or truncated.*compress profile"):
        LatencyTable.load(t.path)
    t.path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(UsageError, match="not a latency table"):
        LatencyTable.load(t.path)
    bad = json.loads(text)
    bad["version"] = 99
    t.path.write_text(json.dumps(bad))
    with pytest.raises(UsageError, match="version 99"):
        LatencyTable.load(t.path)
    bad = json.loads(text)
    bad["entries"][0]["signature"]["kind"] = "warp_drive"
    t.path.write_text(json.dumps(bad))
    with pytest.raises(UsageError, match="malformed"):
        LatencyTable.load(t.path)
    with pytest.raises(UsageError, match="no latency table.*compress profile --device nowhere"):
        LatencyTable.load(device="nowhere", runtime="onnxruntime", space="tiny", tables=tmp_path)


def test_interpolation_is_flagged_and_sensible() -> None:
    ms = {B("mbconv", 8, c, 8, c, kernel=3, mid=3 * c, act="relu", residual=True): c / 100 for c in (16, 64)}
    # bracketed along one field only when exactly one field differs: here in_ch, out_ch and mid all vary
    v, src, note = interpolate_one(B("mbconv", 8, 32, 8, 32, kernel=3, mid=96, act="relu", residual=True), ms)
    assert src == "interpolated" and 0.16 < v < 0.64, (v, note)
    # linear along mid
    ms2 = {B("mbconv", 8, 32, 8, 32, kernel=3, mid=m, act="relu"): m / 100 for m in (64, 128)}
    v, src, note = interpolate_one(B("mbconv", 8, 32, 8, 32, kernel=3, mid=96, act="relu"), ms2)
    assert src == "interpolated" and v == pytest.approx(0.96) and "linear in mid" in note
    # a kind the table never measured is only an estimate, scaled by the table's own speed
    v, src, _ = interpolate_one(B("linear", 1, 64, 1, 10), ms2)
    assert src == "estimated" and v > 0
    filled = fill_missing([*ms2, B("mbconv", 8, 32, 8, 32, kernel=3, mid=100, act="relu")], ms2)
    assert list(filled) == [B("mbconv", 8, 32, 8, 32, kernel=3, mid=100, act="relu")]


@settings(max_examples=200, deadline=None)
@given(
    f=st.floats(1e3, 1e12),
    b=st.floats(1e3, 1e10),
    df=st.floats(0, 1e11, allow_subnormal=False),
    db=st.floats(0, 1e9, allow_subnormal=False),
)
def test_roofline_monotonic_in_flops_and_bytes(f: float, b: float, df: float, db: float) -> None:
    kw = dict(peak_flops=1e12, efficiency=0.3, bandwidth=50e9, overhead_s=1e-5)
    base = op_time_s(f, b, **kw)
    assert op_time_s(f + df, b, **kw) >= base
    assert op_time_s(f, b + db, **kw) >= base
    assert op_time_s(f + df, b + db, **kw) >= base


@pytest.mark.parametrize("device", ["local-cpu", "jetson-orin-nano", "nvidia-l4", "arm-cortex-a76"])
def test_roofline_blocks_grow_with_size_and_depthwise_is_inefficient(device: str) -> None:
    prof = get_profile(device)
    roof = roof_from_profile(prof, prof.precisions[0])
    for kind in KINDS:
        small = B(kind, 8, 16, 8, 16, kernel=3, mid=48, residual=True)
        big = B(kind, 16, 32, 16, 32, kernel=3, mid=96, residual=True)
        f0, b0, _ = block_cost(small)
        f1, b1, _ = block_cost(big)
        assert f1 >= f0 and b1 >= b0
        assert block_time_ms(big, roof) >= block_time_ms(small, roof) > 0
    # per FLOP, a depthwise conv is slower than a dense one
    dw = B("dwconv", 56, 256, 56, 256, kernel=3)
    dense = B("conv", 56, 256, 56, 256, kernel=3)
    assert block_time_ms(dw, roof) / block_cost(dw)[0] > block_time_ms(dense, roof) / block_cost(dense)[0]


def test_uncontrolled_campaigns_keep_raw_samples() -> None:
    from types import SimpleNamespace

    from compress.bench.timing import summarize
    from compress.latency.measure import campaign_basis, entry_from_timing

    item = SimpleNamespace(stats=summarize([1.0, 1.1, 1.2]), raw_stats=summarize([2.0, 2.2, 2.4]), noisy=False)
    assert campaign_basis("uncontrolled") == "raw" and campaign_basis("normalised") == "normalised"
    raw = entry_from_timing(item, basis=campaign_basis("uncontrolled"), drift_status="uncontrolled", scale=3.0)
    assert raw.median_ms == 2.2 and raw.note and "raw" in raw.note  # no canary scaling on the raw basis
    norm = entry_from_timing(item, basis=campaign_basis("stable"), drift_status="stable", scale=2.0)
    assert norm.median_ms == pytest.approx(2.2) and norm.note is None  # 1.1 x the table's canary scale
