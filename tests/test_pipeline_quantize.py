"""The pipeline's quantize stage on a tiny supernet (digits), for real: an int8 latency table measured on
the spot, an int8 search, UPDP, the quantize stage (ONNX Runtime QDQ, accuracy control), the quantized
models benchmarked beside the fp32 ones, the report's fp32-vs-int8 section and plot, the
max_quant_drop gate (pipeline and `compress check`), and caching of the new stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from _search_fixtures import make_checkpoint  # noqa: E402

YAML = """
name: tiny-int8
seed: 0
supernet: {ckpt}
data: {{name: digits}}
devices:
  - {{name: local-cpu, profile: true, precision: int8}}
profiling: {{iterations: 2, warmup: 1, calibrate: 0, threads: 1, resolutions: [12]}}
search: {{population: 8, generations: 3, predictor_samples: 10, calib_images: 32, val_images: 60, refine: 0}}
prune: {{method: updp, blocks: 1, epochs: 1, max_steps: 2, train_limit: 256, latency: macs-estimate}}
quantize: {{precision: int8, runtimes: [onnxruntime], max_drop: {max_drop}, calib_images: 64}}
export: {{formats: [onnx], samples: 8}}
bench: {{runtimes: [onnxruntime], iterations: 5, warmup: 1, rounds: 1, threads: 1}}
gates: {{min_top1: 1, max_quant_drop: {gate}}}
"""


def write_yaml(path: Path, ckpt: Path, *, max_drop: str = "100", gate: float = 100.0) -> Path:
    path.write_text(YAML.format(ckpt=ckpt, max_drop=max_drop, gate=gate))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    pytest.importorskip("compress.quantize.api", reason="compress.quantize (the quantization core) is not in this tree")
    import torch

    from compress.pipeline.runner import run_pipeline

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("qpipe")
    ckpt = make_checkpoint(d / "tiny.safetensors", train_steps=10)
    y = write_yaml(d / "p.yaml", ckpt)
    return d, ckpt, y, run_pipeline(y, out=d / "run")


def test_int8_pipeline_quantizes_benchmarks_and_reports(run) -> None:
    d, _ckpt, _y, res = run
    rd = d / "run"
    assert [k for k, v in res["stages"].items() if not v["cached"]] == [
        "profile",
        "search",
        "prune",
        "quantize",
        "export",
        "bench",
        "check",
    ]
    # the latency table the search used is the int8 one, measured here
    assert list((rd / "stages" / "profile" / "tables" / "local-cpu").glob("onnxruntime__int8__b1__*.json"))
    summary = json.loads((rd / "summary.json").read_text())
    q = summary["quantization"]["onnxruntime"]
    assert q["precision"] == "int8" and q["drop_points"] == pytest.approx(q["top1_fp32"] - q["top1_quant"], abs=1e-3)
    assert q["bench"]["median_ms_quant"] > 0 and q["bench"]["speedup"] > 0
    # bench timed the quantized final model and the quantized searched subnet beside the fp32 ones
    items = summary["benchmarks"]
    assert {"final:onnxruntime", "final-int8:onnxruntime", "searched-int8:onnxruntime"} <= set(items)
    rec = json.loads((rd / "stages" / "quantize" / "stage.json").read_text())["result"]
    qfile = rd / "stages" / "quantize" / rec["runtimes"]["onnxruntime"]["path"]
    import onnx

    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(qfile)).graph.node)
    assert rec["searched"]["device"] == "local-cpu" and rec["searched"]["precision"] == "int8"
    # gates: the quantization drop is gated
    gates = {g["name"]: g for g in res["gates"]}
    assert gates["max-quant-drop"]["passed"] and gates["max-quant-drop"]["measured"] == pytest.approx(q["drop_points"])
    # the report: fp32 vs int8 side by side with a plot, and the int8 prediction vs its measurement
    md = (rd / "report.md").read_text()
    assert "## Quantization: fp32 vs int8 side by side" in md and "figures/quantization.png" in md
    assert (rd / "figures" / "quantization.png").stat().st_size > 1000
    assert "searched subnet, int8 (measured int8 table, onnxruntime)" in md
    assert "searched subnet (measured table" not in md  # no fp32 measurement set against an int8 prediction


def test_second_run_caches_quantize_and_a_new_max_drop_redoes_it(run, tmp_path) -> None:
    from compress.pipeline.runner import run_pipeline

    d, ckpt, y, _ = run
    again = run_pipeline(y, out=d / "run")
    assert all(v["cached"] for k, v in again["stages"].items() if k != "check")
    y2 = write_yaml(tmp_path / "p2.yaml", ckpt, max_drop="50")
    res = run_pipeline(y2, out=d / "run")
    redone = [k for k, v in res["stages"].items() if not v["cached"]]
    assert redone[0] == "quantize" and "export" not in redone and "bench" in redone


def test_check_gates_the_quantization_drop(run) -> None:
    from compress.cli.main import app

    d, *_ = run
    summary = json.loads((d / "run" / "summary.json").read_text())
    drop = summary["quantization"]["onnxruntime"]["drop_points"]
    r = CliRunner().invoke(app, ["check", str(d / "run"), "--max-quant-drop", str(drop + 1.0), "--json"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["check", str(d / "run"), "--max-quant-drop", str(drop - 1.0), "--json"])
    assert r.exit_code == 1
    g = {x["name"]: x for x in json.loads(r.stdout)["gates"]}["max-quant-drop"]
    assert not g["passed"] and "worst runtime: onnxruntime" in g["detail"]


def test_quant_drop_gate_without_a_quantized_model_fails_with_the_fix() -> None:
    from compress.pipeline.gates import quant_drop_gate

    g = quant_drop_gate({"quantization": {}}, 0.5)
    assert not g.passed and "add `quantize:`" in g.detail
    g = quant_drop_gate({"quantization": {"onnxruntime": {"drop_points": 0.2}, "openvino": {"drop_points": 0.7}}}, 0.5)
    assert not g.passed and g.measured == 0.7 and "openvino" in g.detail


def test_quantize_yaml_is_validated(tmp_path) -> None:
    from compress.core.errors import UsageError
    from compress.pipeline.config import load_pipeline

    p = tmp_path / "bad.yaml"
    p.write_text("devices: [{name: local-cpu}]\nquantize: {precision: int8, max_dorp: 0.5}\n")
    with pytest.raises(UsageError, match="max_drop"):
        load_pipeline(p)
    p.write_text("devices: [{name: local-cpu}]\nquantize: {precision: int8, max_drop: -1}\n")
    with pytest.raises(UsageError, match="max_drop"):
        load_pipeline(p)
    p.write_text("devices: [{name: local-cpu}]\nquantize: {precision: int4}\n")
    with pytest.raises(UsageError, match="precision"):
        load_pipeline(p)
