"""DEVICE@MODE in pipeline YAML: the mode travels with the device through the stages, tables are
looked up per mode, and --power-mode reaches bench and profile (refused where a device has no modes)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from compress.core.errors import UsageError

YAML = """
name: t
supernet: /nonexistent.safetensors
tables: {tables}
devices:
  - {{name: {device}, budget_ms: 1.0}}
  - {{name: local-cpu, budget_ms: 1.0}}
"""


def _cfg(tmp_path: Path, device: str):
    from compress.pipeline.config import load_pipeline

    p = tmp_path / "p.yaml"
    p.write_text(YAML.format(device=device, tables=tmp_path / "tables"))
    (tmp_path / "tables").mkdir(exist_ok=True)
    return load_pipeline(p)


def test_device_at_mode_in_yaml(tmp_path):
    from compress.pipeline.stages import canonical_devices, external_tables

    devs = canonical_devices(_cfg(tmp_path, "jetson-agx-orin@30W"))
    assert devs[0]["name"] == "jetson-agx-orin@30W" and devs[0]["power_mode"] == "30W"
    assert devs[0]["table_dir"] == "jetson-agx-orin@30W"
    default = canonical_devices(_cfg(tmp_path, "jetson"))[0]
    assert default["name"] == "jetson-orin-nano" and default["power_mode"] == "MAXN_SUPER"  # named in the record
    assert devs[1]["name"] == "local-cpu" and devs[1]["power_mode"] is None
    # an external table is found under its mode's directory, not another mode's
    for mode in ("MAXN", "30W"):
        d = tmp_path / "tables" / f"jetson-agx-orin@{mode}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "tensorrt__int8__b1__demo.json").write_text("{}")
    found = external_tables(_cfg(tmp_path, "jetson-agx-orin@30W"))
    assert [f.parent.name for f in found] == ["jetson-agx-orin@30W"]
    with pytest.raises(UsageError, match="unknown power mode '31W'"):
        canonical_devices(_cfg(tmp_path, "jetson-agx-orin@31W"))


def test_power_mode_option_on_bench_and_profile(tmp_path):
    from compress.cli.main import app

    r = CliRunner().invoke(app, ["bench", "timm:resnet18", "--device", "local-cpu", "--power-mode", "MAXN"])
    assert r.exit_code == 2 and "'local-cpu' has no power modes" in r.output
    r = CliRunner().invoke(
        app, ["profile", "--device", "jetson-agx-orin", "--power-mode", "maxm", "--tables", str(tmp_path)]
    )
    assert r.exit_code == 2 and "did you mean" in r.output and "MAXN" in r.output


def test_bench_warns_when_the_board_is_not_in_the_mode_asked(tmp_path, monkeypatch):
    """A real local bench (ONNX Runtime) whose device state reports a Jetson in MAXN (this machine is
    not a Jetson: only ``nvpmodel -q``'s answer is substituted) while 30W was asked for."""
    import torch

    import compress.bench.device_state as ds
    from compress.bench.api import bench

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (torch.zeros(1, 3, 8, 8),), str(path), dynamo=False, opset_version=17)
    monkeypatch.setattr(ds, "jetson_state", lambda: {"nvpmodel": "NV Power Mode: MAXN\n0\n", "jetson_clocks": None})
    res = bench(
        [str(path)],
        device="jetson-agx-orin@30W",
        runtime="onnxruntime",
        iterations=5,
        rounds=1,
        warmup=1,
        canary=False,
        threads=1,
    )
    assert res.device == "jetson-agx-orin@30W"
    assert any("not jetson-agx-orin's '30W'" in w and "sudo nvpmodel -m 2" in w for w in res.warnings)
    ok = bench(
        [str(path)],
        device="jetson-agx-orin",
        runtime="onnxruntime",
        iterations=5,
        rounds=1,
        warmup=1,
        canary=False,
        threads=1,
    )
    assert ok.device == "jetson-agx-orin@MAXN" and not any("nvpmodel" in w for w in ok.warnings)
