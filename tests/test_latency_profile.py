"""Profiling a tiny space for real (ONNX Runtime / OpenVINO), resuming, validating, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from compress.cli.main import app
from compress.core.errors import UsageError
from compress.latency.blocks import build_module
from compress.latency.measure import measure_block
from compress.latency.predict import LatencyModel
from compress.latency.profile import merged_forms, profile_table
from compress.latency.signature import BlockSignature
from compress.latency.table import LatencyTable
from compress.latency.validate import validate
from compress.supernet import SearchSpace, get_space


def tiny_space() -> SearchSpace:
    d = get_space("convnext-small-input").to_dict()
    d.update(resolutions=[16], width_mults=[1.0])
    d["stem"]["channels"] = 8
    d["stages"] = [
        {"width": 8, "depths": [1, 2], "kernels": [3, 5], "expands": [2.0], "stride": 1, "act": "gelu", "se": False},
        {"width": 16, "depths": [1, 2], "kernels": [3], "expands": [2.0, 3.0], "stride": 2, "act": "gelu", "se": False},
    ]
    return SearchSpace.from_dict(d)


@pytest.fixture(autouse=True)
def _few_threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_profile_resume_devices_validate(tmp_path) -> None:
    space = tiny_space()
    kw = dict(
        device="local-cpu", runtime="onnxruntime", supernet=space, tables=tmp_path, threads=1, iterations=4, warmup=1
    )
    res = profile_table(**kw, calibrate=4, calibrate_iterations=4)
    assert res.measured_now == res.signatures >= 8 and res.already_measured == 0
    t = LatencyTable.load(res.path)
    assert len(t.measured()) == res.signatures
    assert all(e.count == 4 and e.median_ms > 0 and e.drift_status for e in t.entries.values())
    assert t.meta.runtime_version and t.meta.host and t.meta.drift and t.meta.drift[-1]["status"]
    assert t.calibration and t.calibration["samples"] == 4 and len(t.calibration["measured_ms"]) == 4
    # the calibration set always holds the smallest and largest subnets (where search goes)
    assert t.calibration["roles"][:2] == ["extreme", "extreme"]
    assert t.calibration["configs"][:2] == [space.min_config().key(), space.max_config().key()]
    # resumable: nothing left to measure the second time
    again = profile_table(**kw, calibrate=0)
    assert again.measured_now == 0 and again.already_measured == res.signatures
    # a table is for one thread setting: resuming it with another is refused, not mixed
    with pytest.raises(UsageError, match="measured with --threads 1, not the runtime's default threads"):
        profile_table(**{**kw, "threads": None}, calibrate=0)
    # `compress devices` now reports the device as measured for onnxruntime
    out = CliRunner().invoke(app, ["devices", "--json", "--tables", str(tmp_path)])
    info = {d["name"]: d for d in json.loads(out.stdout)}
    assert info["local-cpu"]["latency_source"] == "measured" and info["local-cpu"]["measured_runtimes"] == [
        "onnxruntime"
    ]
    # validate on the tiny space: every metric present, predicted vs measured scatter written
    v = validate(
        device="local-cpu",
        runtime="onnxruntime",
        supernet=space,
        tables=tmp_path,
        samples=3,
        threads=1,
        iterations=4,
        out=tmp_path / "val",
    )
    for key in ("samples", "within_10pct", "mape", "spearman", "repeatability_mape", "noise_ceiling_within_10pct"):
        assert key in v
    assert v["samples"] == 3 and 0 <= v["within_10pct"] <= 1 and v["mape"] >= 0
    assert set(v["uncalibrated"]) >= {"within_10pct", "mape", "spearman"} and "mape" in v["roofline"]
    assert (tmp_path / "val" / "scatter.png").stat().st_size > 1000
    assert (tmp_path / "val" / "manifest.json").is_file()
    # the calibration and the validation summary persist in the table file: a fresh load sees both
    m = LatencyModel.load(device="local-cpu", runtime="onnxruntime", space=space, tables=tmp_path)
    info = m.info()
    assert info["calibrated"] and info["calibration_loo_mape"] is not None
    assert info["validated"]["mape"] == pytest.approx(v["mape"]) and info["validated"]["stale"] is False


def test_merged_kinds_are_measured_and_stored(tmp_path) -> None:
    cx = BlockSignature(
        "convnext", 8, 16, 8, 16, kernel=5, mid=32, act="gelu", residual=True, norm=True, bias=True, layer_scale=True
    )
    forms = merged_forms(cx)
    assert [f.kind for f in forms] == ["merged_dw_pw", "merged_dense"]
    for f in forms:
        mod = build_module(f)
        y = mod(torch.randn(2, *f.input_shape))
        assert y.shape == (2, f.out_ch, f.out_hw, f.out_hw)
    r = measure_block(
        build_module(forms[0]), forms[0].input_shape, runtime="openvino", threads=1, iterations=5, warmup=1
    )
    assert (
        r.entry.median_ms > 0 and r.entry.count == 5 and r.drift["status"] in ("stable", "normalised", "uncontrolled")
    )
    t = LatencyTable.new(device="local-cpu", runtime="openvino", precision="fp32", batch=1, space="merged")
    t.add(forms[0], r.entry)
    t.save(tables=tmp_path)
    assert LatencyTable.load(t.path).lookup(forms[0]) == r.entry.p10_ms  # tables predict with p10 by default


def test_errors_are_clean(tmp_path) -> None:
    with pytest.raises(UsageError, match="unknown runtime 'onnxrt'"):
        profile_table(device="local-cpu", runtime="onnxrt", supernet=tiny_space(), tables=tmp_path)
    with pytest.raises(UsageError, match="does not run 'tensorrt'"):
        profile_table(device="local-cpu", runtime="tensorrt", supernet=tiny_space(), tables=tmp_path)
    with pytest.raises(UsageError, match=r"resolution\(s\) \[99\]"):
        profile_table(device="local-cpu", supernet=tiny_space(), tables=tmp_path, resolutions=[99])
    r = CliRunner().invoke(app, ["profile", "--runtime", "openvinoo", "--tables", str(tmp_path)])
    assert r.exit_code == 2 and "unknown runtime 'openvinoo'" in r.output
    bad = tmp_path / "local-cpu" / "onnxruntime__fp32__b1__convnext-small-input.json"
    bad.parent.mkdir(parents=True)
    bad.write_text('{"format": "compress-latency-table", "version": 1, "meta": {')
    r = CliRunner().invoke(app, ["latency", "predict", "--supernet", "convnext-small-input", "--tables", str(tmp_path)])
    assert r.exit_code == 2 and "corrupted or truncated" in r.output


@pytest.mark.tensorrt
def test_tensorrt_block_engine_is_timed() -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs a CUDA GPU)")
    from compress.export.runtimes import get_runner

    if not get_runner("tensorrt").available():
        pytest.skip("TensorRT is installed but no CUDA GPU is usable")
    sig = BlockSignature("merged_dense", 16, 32, 16, 32, kernel=5, bias=True)
    r = measure_block(build_module(sig), sig.input_shape, runtime="tensorrt", precision="fp16", iterations=20)
    assert r.entry.count == 20 and r.entry.p10_ms > 0
