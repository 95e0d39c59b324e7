"""``compress bench`` on this machine: real ONNX Runtime and OpenVINO runs, reports, errors."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from conftest import make_tiny_onnx
from typer.testing import CliRunner

from compress.bench.api import bench
from compress.bench.artifacts import resolve_artifact
from compress.bench.report import to_csv, to_markdown
from compress.bench.schema import BenchResult
from compress.bench.vendor import VendorToolError, parse_benchmark_app, parse_trtexec_times
from compress.cli.main import app
from compress.core.errors import UsageError

QUICK = dict(iterations=20, rounds=2, warmup=2, threads=1)


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("bench")
    return make_tiny_onnx(d / "small.onnx", channels=4), make_tiny_onnx(d / "big.onnx", hw=64, channels=32)


def _check_result(res: BenchResult, n_items: int) -> None:
    assert res.schema_version == 1 and len(res.items) == n_items
    for it in res.items:
        assert 0 < it.min_ms <= it.median_ms <= it.p90_ms <= it.p99_ms <= it.max_ms
        assert it.throughput == pytest.approx(it.batch * 1000 / it.median_ms)
        assert it.iterations >= QUICK["iterations"]
    assert res.median_ms == res.items[0].median_ms
    assert res.drift["status"] in ("stable", "normalised", "uncontrolled")
    assert res.drift["checks"], "the canary must have been timed"
    assert res.drift_controlled == (res.drift["status"] != "uncontrolled")
    cpu = res.device_state["cpu"]
    assert cpu["model"] and cpu["usable_cores"] >= 1 and res.device_state["threads_used"] == 1
    assert "onnxruntime" in res.device_state["versions"]
    assert "temperatures_c" in res.device_state_after


def test_onnxruntime_two_models_interleaved(two_models, tmp_path):
    small, big = two_models
    res = bench([str(small), str(big)], device="local-cpu", out=tmp_path / "run", csv=True, **QUICK)
    _check_result(res, 2)
    assert [it.runtime for it in res.items] == ["onnxruntime", "onnxruntime"]
    assert res.items[0].runner == "compress.export.runtimes"
    assert res.items[1].settings["threads"] == 1
    # the 64x64, 32-channel model does ~32x the work of the 32x32, 4-channel one
    assert res.ratios["big.onnx"] > 1.5
    on_disk = json.loads((tmp_path / "run" / "bench.json").read_text())
    assert on_disk["median_ms"] == pytest.approx(res.median_ms)
    for key in ("runtime", "device", "median_ms", "p90_ms", "p99_ms", "throughput", "iterations", "device_state"):
        assert key in on_disk
    rows = list(csv.DictReader(io.StringIO((tmp_path / "run" / "bench.csv").read_text())))
    assert [r["name"] for r in rows] == ["small.onnx", "big.onnx"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "bench.json" in manifest["outputs"] and "small.onnx" in manifest["inputs"]
    assert "| small.onnx" in (tmp_path / "run" / "bench.md").read_text()


def test_openvino_run(two_models):
    res = bench([str(two_models[0])], device="local-cpu", runtime="openvino", **QUICK)
    _check_result(res, 1)
    assert res.runtime == "openvino" and res.items[0].runtime_version
    assert res.items[0].precision == "fp32"


def test_predicted_vs_measured_from_onnx_metadata(tmp_path):
    import onnx

    p = make_tiny_onnx(tmp_path / "pred.onnx")
    m = onnx.load(str(p))
    m.metadata_props.add(
        key="compress.predicted_latency_ms", value=json.dumps({"local-cpu": 0.5, "jetson-orin-nano": 3.0})
    )
    onnx.save(m, str(p))
    assert resolve_artifact(str(p)).predictions == {"local-cpu": 0.5, "jetson-orin-nano": 3.0}
    res = bench([str(p)], device="local", **QUICK)  # alias of local-cpu
    assert res.predicted_ms == 0.5
    assert res.error_pct == pytest.approx((res.median_ms - 0.5) / 0.5 * 100)
    assert "0.500" in to_markdown(res)


def test_export_run_dir_with_manifest_predictions(tmp_path, two_models):
    d = tmp_path / "export_run"
    d.mkdir()
    (d / "model.onnx").write_bytes(two_models[0].read_bytes())
    (d / "manifest.json").write_text(
        json.dumps({"outputs": {"model.onnx": {"sha256": "x"}}, "predictions": {"local-cpu": {"latency_ms": 0.25}}})
    )
    art = resolve_artifact(str(d))
    assert art.files == {"onnx": str(d / "model.onnx")} and art.predictions == {"local-cpu": 0.25}


def test_markdown_and_csv_render(two_models):
    res = bench([str(two_models[0])], **QUICK)
    md = to_markdown(res)
    assert "| artefact |" in md and "Drift:" in md and "Device: CPU" in md
    rows = list(csv.DictReader(io.StringIO(to_csv(res))))
    assert float(rows[0]["median_ms"]) == pytest.approx(res.median_ms)


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_cli_json(two_models):
    r = _cli("bench", str(two_models[0]), "-n", "10", "--rounds", "2", "--threads", "1", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["runtime"] == "onnxruntime" and data["device"] == "local-cpu" and data["iterations"] >= 10


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--runtime", "onnxrt"], "unknown runtime 'onnxrt' (did you mean 'onnxruntime'?)"),
        (["--device", "jetson", "--runtime", "openvino"], "does not run 'openvino'"),
        (["--device", "jetson", "--runtime", "tensorrt"], "runtime 'tensorrt' cannot run it"),
        (["--precision", "fp16"], "no precision 'fp16'"),
        (["--iterations", "0"], "iterations must be >= 1"),
    ],
)
def test_cli_usage_errors(two_models, args, needle):
    r = _cli("bench", str(two_models[0]), *args)
    assert r.exit_code == 2, r.output
    assert needle in r.output and r.output.count("\n") <= 2


def test_missing_artifact_and_engine_for_wrong_runtime(tmp_path):
    r = _cli("bench", str(tmp_path / "nope.onnx"))
    assert r.exit_code == 2 and "artefact not found" in r.output
    eng = tmp_path / "model.engine"
    eng.write_bytes(b"\x00not really an engine")
    r = _cli("bench", str(eng), "--runtime", "onnxruntime")
    assert r.exit_code == 2 and "is a TensorRT engine; runtime 'onnxruntime' cannot run it" in r.output
    r = _cli("bench", str(eng))  # auto on local-cpu: none of its runtimes reads engines
    assert r.exit_code == 2 and "none of the device's runtimes" in r.output
    odd = tmp_path / "weights.pt"
    odd.write_bytes(b"x")
    with pytest.raises(UsageError, match="cannot benchmark 'weights.pt'"):
        resolve_artifact(str(odd))


def test_vendor_output_parsers():
    text = (
        "[ INFO ] Count:            200 iterations\n[ INFO ] Latency:\n[ INFO ]    Median:        1.60 ms\n"
        "[ INFO ]    Average:       1.68 ms\n[ INFO ]    Min:           1.47 ms\n[ INFO ]    Max:  4.55 ms\n"
        "[ INFO ] Throughput:   583.68 FPS\n"
    )
    got = parse_benchmark_app(text)
    assert got == {
        "iterations": 200,
        "median_ms": 1.6,
        "mean_ms": 1.68,
        "min_ms": 1.47,
        "max_ms": 4.55,
        "throughput": 583.68,
    }
    assert parse_benchmark_app("Latency:\n   Median:   28.91 us\n")["median_ms"] == pytest.approx(0.02891)
    with pytest.raises(VendorToolError):
        parse_benchmark_app("[ ERROR ] something broke")
    assert parse_trtexec_times([{"computeMs": 1.0, "latencyMs": 1.2}])["compute_ms"] == [1.0]
    with pytest.raises(VendorToolError):
        parse_trtexec_times([])


def test_benchmark_app_real_run(two_models):
    from compress.bench.vendor import find_tool, run_benchmark_app

    if find_tool("benchmark_app") is None:
        pytest.skip("benchmark_app (openvino) not installed")
    got = run_benchmark_app(two_models[0], iterations=20, threads=1, timeout=120)
    assert got["iterations"] == 20 and 0 < got["min_ms"] <= got["median_ms"] <= got["max_ms"]


def test_benchmark_app_times_our_input_file(two_models, tmp_path):
    """benchmark_app fed the exact f32 input we time with (its default is random u8 0-255)."""
    import onnx

    from compress.bench.vendor import find_tool, run_benchmark_app

    if find_tool("benchmark_app") is None:
        pytest.skip("benchmark_app (openvino) not installed")
    dims = [d.dim_value for d in onnx.load(str(two_models[0])).graph.input[0].type.tensor_type.shape.dim]
    f = tmp_path / "x.bin"
    np.random.default_rng(0).standard_normal(dims).astype(np.float32).tofile(f)
    got = run_benchmark_app(two_models[0], iterations=10, threads=1, timeout=120, input_file=f)
    assert got["command"][-4:] == ["-ip", "f32", "-i", str(f)] and got["iterations"] == 10
    bad = tmp_path / "short.bin"
    np.zeros(3, np.float32).tofile(bad)
    with pytest.raises(VendorToolError, match="benchmark_app failed"):
        run_benchmark_app(two_models[0], iterations=10, threads=1, timeout=120, input_file=bad)


@pytest.mark.tensorrt
def test_tensorrt_engine_bench():
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs JetPack or NVIDIA's wheels and a GPU)")
    pytest.skip("TensorRT present but no engine-building fixture yet: build one with compress export --format tensorrt")


def test_agent_falls_back_to_benchmark_app_when_openvino_python_is_missing(two_models, monkeypatch):
    import compress.bench.agent as agent
    from compress.bench.vendor import find_tool

    if find_tool("benchmark_app") is None:
        pytest.skip("benchmark_app (openvino) not installed")
    monkeypatch.setattr(agent, "_runtime_available", lambda rt: rt == "onnxruntime")
    spec = {
        "schema": 1,
        "items": [
            {"name": "m", "artifact": str(two_models[0]), "runtime": "openvino", "threads": 1, "precision": "fp32"}
        ],
        "timing": {"warmup": 0, "iterations": 20, "rounds": 2, "max_extra_rounds": 0},
        "canary": None,
    }
    res = agent.run_spec(spec)
    assert res["items"]["m"]["runner"] == "benchmark_app"
    assert res["timing"]["items"]["m"]["stats"]["n"] == 2  # one per-run median per round
    assert res["timing"]["drift"]["status"] == "no_canary"
    spec["fallback"] = False
    from compress.core.errors import MissingDependency

    monkeypatch.setattr("compress.export.runtimes.ov.OvRunner.available", lambda self: False)
    with pytest.raises(MissingDependency):  # without fallback: the shared runner's clear error
        agent.run_spec(spec)


def test_openvino_ir_and_duration(tmp_path):
    import openvino as ov

    onnx_path = make_tiny_onnx(tmp_path / "m.onnx")
    xml = tmp_path / "ir" / "m.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    art = resolve_artifact(str(xml))
    assert art.runtimes() == ["openvino"]
    res = bench([str(xml)], device="local-cpu", duration_s=0.2, rounds=2, warmup=2, threads=1)
    assert res.runtime == "openvino" and res.iterations >= 2
    xml.with_suffix(".bin").unlink()
    with pytest.raises(UsageError, match="has no m.bin beside it"):
        resolve_artifact(str(xml))
