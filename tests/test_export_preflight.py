"""Preflight: each target's op support checked before building, offenders named by module."""

from __future__ import annotations

import json

import _export_helpers  # noqa: F401 - registers the exporttest: model reference
import onnx
import pytest
import torch
from _export_helpers import fft_model, tiny_model
from typer.testing import CliRunner

from compress.cli.main import app
from compress.core.errors import Failure, UsageError
from compress.export.api import export_model
from compress.export.onnx import to_onnx
from compress.export.preflight import preflight, require

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_onnx_tagged(tmp_path_factory):
    return to_onnx(tiny_model(), tmp_path_factory.mktemp("pf") / "tiny.onnx", exporter="legacy").path


@pytest.fixture(scope="module")
def custom_op_onnx(tiny_onnx_tagged, tmp_path_factory):
    """The tiny model with one ReLU replaced by a custom-domain op no target knows."""
    m = onnx.load(str(tiny_onnx_tagged))
    node = next(n for n in m.graph.node if n.op_type == "Relu")
    node.op_type, node.domain = "FancyRelu", "com.example"
    m.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    path = tmp_path_factory.mktemp("pf") / "custom.onnx"
    onnx.save(m, str(path))
    module = next(p.value for p in node.metadata_props if p.key == "module")
    return path, node.name, module


def test_supported_model_passes_every_target(tiny_onnx_tagged):
    for target in ("onnx", "ov", "trt"):
        rep = preflight(tiny_onnx_tagged, target)
        assert rep.passed, rep.summary()
        assert rep.ops["Conv"] == 2 and rep.opset == 18


@pytest.mark.parametrize(
    "target,checked", [("onnxruntime", "kernels"), ("openvino", "ONNX frontend"), ("tensorrt", "TensorRT 10")]
)
def test_custom_op_is_caught_and_named(custom_op_onnx, target, checked):
    path, node, module = custom_op_onnx
    assert module.startswith("stem")  # the layer that produced the ReLU
    rep = preflight(path, target)
    assert not rep.passed and checked in rep.checked
    assert [(o.op, o.domain, o.node, o.module) for o in rep.offenders] == [("FancyRelu", "com.example", node, module)]
    with pytest.raises(Failure, match=f"FancyRelu in layer '{module}'"):
        require(rep)


def test_tensorrt_lacks_dft_and_names_the_module(tmp_path):
    """torch.fft -> ONNX DFT: ONNX Runtime runs it, TensorRT's ONNX parser does not."""
    with pytest.raises(Failure, match=r"preflight failed for tensorrt.*DFT in layer 'spectral'"):
        export_model(fft_model(), out=tmp_path, formats=["onnx", "trt"], exporter="dynamo")
    reports = {r["target"]: r for r in json.loads((tmp_path / "preflight.json").read_text())}
    assert reports["onnx"]["passed"] is True
    assert not reports["tensorrt"]["passed"]
    assert {o["module"] for o in reports["tensorrt"]["offenders"]} == {"spectral"}
    assert not (tmp_path / "tensorrt").exists()  # nothing built after a failed preflight


def test_cli_preflight_failure_exit_code(tmp_path):
    r = CliRunner().invoke(app, ["export", "exporttest:fft", "--format", "trt", "--out", str(tmp_path)])
    assert r.exit_code == 1, r.output
    assert "DFT in layer 'spectral'" in r.stderr


def test_tensorrt_version_tables_and_opset(tiny_onnx_tagged):
    assert preflight(tiny_onnx_tagged, "trt", trt_version="10.3").passed
    rep = preflight(tiny_onnx_tagged, "trt", trt_version="8.6")
    assert not rep.passed and "opset 18 is outside" in rep.summary() and "--opset 13" in rep.summary()


def test_dla_restrictions(tiny_onnx_tagged):
    ok = preflight(tiny_onnx_tagged, "trt", precision="fp16", dla_core=0)
    assert ok.passed, ok.summary()  # Conv / Relu / GlobalAveragePool / Gemm run on the DLA
    with pytest.raises(UsageError, match="fp16 or int8"):
        preflight(tiny_onnx_tagged, "trt", precision="fp32", dla_core=0)
    with pytest.raises(UsageError, match="static shapes"):
        preflight(tiny_onnx_tagged, "trt", precision="fp16", dla_core=0, dynamic=True)


def test_dla_fallback_turns_offenders_into_warnings(custom_op_onnx, tiny_onnx_tagged, tmp_path):
    m = onnx.load(str(tiny_onnx_tagged))
    node = next(n for n in m.graph.node if n.op_type == "Relu")
    node.op_type = "Softplus"  # a TensorRT op the DLA cannot run
    p = tmp_path / "softplus.onnx"
    onnx.save(m, str(p))
    strict = preflight(p, "trt", precision="fp16", dla_core=0)
    assert not strict.passed and "DLA cannot run" in strict.summary()
    loose = preflight(p, "trt", precision="fp16", dla_core=0, dla_gpu_fallback=True)
    assert loose.passed and any("fall back to the GPU" in w for w in loose.warnings)


def test_unreadable_onnx_is_a_usage_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf at all")
    with pytest.raises(UsageError, match="not a readable ONNX"):
        preflight(bad, "onnx")
    with pytest.raises(UsageError, match="unknown export format"):
        preflight(bad, "tflite")
