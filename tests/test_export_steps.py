"""export_model as named steps (#29), its options held once, and the MODEL options shared by
`compress export` and `compress quantize`."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from compress.core.errors import UsageError
from compress.export.api import check_targets, resolve_config
from compress.export.context import ExportConfig


def test_resolve_config_merges_and_validates():
    assert resolve_config(None, {}).model_dump() == ExportConfig().model_dump()
    cfg = resolve_config({"formats": ["ov"], "samples": 8}, {"samples": 16})
    assert cfg.formats == ["ov"] and cfg.samples == 16
    assert resolve_config(ExportConfig(batch=4), {"opset": 17}).model_dump() == {
        **ExportConfig(batch=4).model_dump(),
        "opset": 17,
    }
    with pytest.raises(UsageError, match="batch"):
        resolve_config(None, {"batch": "many"})


def test_check_targets_refuses_before_any_work():
    assert [f.name for f in check_targets(ExportConfig(formats=["onnx"]))] == ["onnx"]
    with pytest.raises(UsageError, match="add --format tensorrt"):
        check_targets(ExportConfig(formats=["onnx"], remote="u@h"))
    with pytest.raises(UsageError, match="--dla applies to TensorRT"):
        check_targets(ExportConfig(formats=["onnx"], dla_core=0))
    with pytest.raises(UsageError, match="unknown export format 'bogus'"):
        check_targets(ExportConfig(formats=["bogus"]))


def test_cli_defaults_are_the_models_and_model_options_are_shared():
    from compress.cli import export as e, quantize as q
    from compress.cli.common import default_run_dir, model_options

    sig = inspect.signature(e.export_cmd)
    for name in ("format", "precision", "batch", "samples", "workspace_mb", "max_batch", "exporter", "simplify"):
        assert sig.parameters[name].default is None, name  # the default is ExportConfig's, not the CLI's
    for name in ("num_classes", "image_size", "in_chans", "weights"):
        assert sig.parameters[name].annotation == inspect.signature(q.quantize_cmd).parameters[name].annotation
    assert e._default("samples") == str(ExportConfig().samples) and e._default("formats") == "onnx"
    assert model_options(num_classes=10, image_size=None, in_chans=1, weights=None) == {
        "num_classes": 10,
        "in_chans": 1,
    }
    assert default_run_dir("export", "runs/my model/") == Path("runs/export-my-model")
    assert default_run_dir("quantize", "timm:resnet18", "ort", "int8") == Path("runs/quantize-timm-resnet18-ort-int8")


def test_export_cli_flags_reach_the_config(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import compress.export.api as api
    from compress.cli.main import app

    seen = {}

    def fake_export(model, *, out, config, model_options, command):  # stops before any export work
        seen.update(config=config, model_options=model_options, out=out)
        raise UsageError("stop")

    monkeypatch.setattr(api, "export_model", fake_export)
    r = CliRunner().invoke(
        app, ["export", "timm:resnet18", "--no-parity", "--samples", "8", "--num-classes", "10", "--out", str(tmp_path)]
    )
    assert r.exit_code == 2, r.output
    cfg = seen["config"]
    assert cfg.parity is False and cfg.samples == 8 and cfg.simplify is True and cfg.formats == ["onnx"]
    assert seen["model_options"] == {"num_classes": 10}
