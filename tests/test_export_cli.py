"""``compress export`` through the CLI: JSON output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import _export_helpers  # noqa: F401 - registers the exporttest: model reference
import pytest
from typer.testing import CliRunner

from compress.cli.main import app
from compress.export.parity import Threshold

runner = CliRunner()


def _invoke(*args):
    return runner.invoke(app, ["export", *map(str, args)])


def test_json_result_and_exit_zero(tmp_path):
    r = _invoke(
        "exporttest:digits",
        "--format",
        "onnx",
        "--out",
        tmp_path,
        "--samples",
        16,
        "--threads",
        1,
        "--exporter",
        "legacy",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)  # stdout holds only the JSON (exporter progress goes to stderr)
    assert data["passed"] is True and data["parity_inputs"].startswith("digits val[:16]")
    f = data["formats"][0]
    assert f["format"] == "onnx" and f["passed"] is True and f["top1_agreement"] == 1.0
    assert set(f) >= {"path", "sha256", "max_abs_err", "max_rel_err", "top1_agreement", "passed"}
    assert data["onnx"]["exporter"] in ("dynamo", "legacy")


def test_unknown_format_suggests(tmp_path):
    r = _invoke("exporttest:tiny", "--format", "onnx,openvno", "--out", tmp_path / "o")
    assert r.exit_code == 2
    assert "unknown export format 'openvno'" in r.stderr and "did you mean 'openvino'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_aliases(tmp_path):
    r = _invoke("exporttest:tiny", "--format", "engine,ir", "--precision", "fp64", "--out", tmp_path)
    assert r.exit_code == 2 and "precision" in r.stderr  # aliases resolved, then the bad precision named


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    r = _invoke("exporttest:tiny", "--out", blocker / "sub")
    assert r.exit_code == 2 and "cannot write to output directory" in r.stderr


def test_not_a_model(tmp_path):
    junk = tmp_path / "model.bin"
    junk.write_bytes(b"\x00garbage")
    r = _invoke(junk, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "is not a model this toolkit can read" in r.stderr
    d = tmp_path / "dir"
    d.mkdir()
    (d / "model.json").write_text(
        '{"format": "compress-model", "base": {"kind": "timm", "name": "resnet18",'
        ' "num_classes": 10, "in_chans": 1, "image_size": 16}, "input_shape": [1, 16, 16],'
        ' "num_classes": 10}'
    )
    (d / "model.safetensors").write_bytes(b"truncated")
    r = _invoke(d, "--out", tmp_path / "o2")
    assert r.exit_code == 2 and "cannot read weights" in r.stderr
    r = _invoke("timm:resnet1800", "--out", tmp_path / "o3")
    assert r.exit_code == 2 and "did you mean" in r.stderr


def test_parity_failure_exits_nonzero_with_numbers(tmp_path, monkeypatch):
    import compress.export.parity as parity

    monkeypatch.setitem(parity.THRESHOLDS, "fp32", Threshold(max_rel_err=-1.0, min_top1=1.0))  # impossible bar
    r = _invoke("exporttest:tiny", "--format", "onnx", "--out", tmp_path, "--samples", 8, "--json")
    assert r.exit_code == 1
    assert "parity failed: onnx (fp32): max_rel_err" in r.stderr and "top1_agreement 1.0" in r.stderr
    data = json.loads(r.stdout)  # the result is still printed and written
    assert data["passed"] is False and data["formats"][0]["passed"] is False
    assert json.loads((tmp_path / "export.json").read_text())["passed"] is False


def test_dla_needs_fp16(tmp_path):
    r = _invoke("exporttest:tiny", "--format", "trt", "--dla", 0, "--out", tmp_path)
    assert r.exit_code == 2 and "fp16" in r.stderr


def test_cli_module_import_is_light():
    code = "import sys, compress.cli.export; print(any(m in sys.modules for m in ('torch', 'onnx', 'openvino')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


@pytest.mark.parametrize("name", ["compress.export.runtimes", "compress.export.formats"])
def test_registry_modules_import_light(name):
    code = (
        f"import sys, {name}; import compress.export.formats as f; "
        "assert f.FORMATS.names() == ['onnx', 'openvino', 'tensorrt'], f.FORMATS.names(); "
        "print(any(m in sys.modules for m in ('torch', 'onnx', 'openvino', 'onnxruntime')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="."
    ).stdout.strip()
    assert out == "False"
