"""CLI machinery: help without torch, devices, errors, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from compress.cli.main import app

runner = CliRunner()


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compress", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from compress.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'timm') if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY=\n" in res.stdout or res.stdout.strip().endswith("HEAVY="), res.stdout + res.stderr


def test_devices_does_not_import_torch():
    code = (
        "import sys\n"
        "from compress.cli.main import app\n"
        "try:\n    app(['devices', '--json'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY=' + ','.join(m for m in ('torch', 'onnxruntime', 'openvino') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip().endswith("HEAVY="), res.stdout + res.stderr


def test_help_lists_commands_subprocess():
    res = _run("--help")
    assert res.returncode == 0
    assert "devices" in res.stdout


def test_devices_json_fields(tmp_path):
    res = runner.invoke(app, ["devices", "--json", "--tables", str(tmp_path)])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    names = {d["name"] for d in data}
    assert {
        "jetson-orin-nano",
        "jetson-orin-nx",
        "jetson-agx-orin",
        "x86-avx512-cpu",
        "arm-cortex-a76",
        "local-cpu",
    } <= names
    assert names & {"nvidia-a100", "nvidia-l4"}
    for d in data:
        assert {"name", "aliases", "kind", "runtimes", "latency_source"} <= set(d)
        assert d["latency_source"] == "estimated"
    nano = next(d for d in data if d["name"] == "jetson-orin-nano")
    assert "jetson" in nano["aliases"]


def test_devices_reports_measured_when_table_exists(tmp_path):
    d = tmp_path / "local-cpu"
    d.mkdir()
    (d / "onnxruntime__fp32__b1__abc.json").write_text("{}")
    res = runner.invoke(app, ["devices", "--json", "--tables", str(tmp_path)])
    data = {x["name"]: x for x in json.loads(res.stdout)}
    assert data["local-cpu"]["latency_source"] == "measured"
    assert data["local-cpu"]["measured_runtimes"] == ["onnxruntime"]
    assert data["jetson-orin-nano"]["latency_source"] == "estimated"


def test_unknown_command_is_usage_error():
    res = _run("devicez")
    assert res.returncode == 2


def test_bad_profiles_dir_one_line_error(tmp_path):
    res = _run("devices", "--profiles", str(tmp_path / "missing"))
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "profile directory not found" in lines[0]
    assert "Traceback" not in res.stderr


def test_broken_profile_names_file_and_field(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "name: mydev\nkind: gpu\nvendor: x\nruntimes: [onnxruntime]\nprecisions: [fp32]\nruntimez: [x]\n"
    )
    res = _run("devices", "--profiles", str(tmp_path))
    assert res.returncode == 2
    assert "bad.yaml" in res.stderr and "runtimez" in res.stderr and "did you mean 'runtimes'" in res.stderr
    assert "Traceback" not in res.stderr


def test_debug_shows_traceback(tmp_path):
    res = _run("--debug", "devices", "--profiles", str(tmp_path / "missing"))
    assert res.returncode == 2
    assert "Traceback" in res.stderr


def test_user_profile_dir_adds_device(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "name: my-board\naliases: [board]\nkind: edge\nvendor: acme\nruntimes: [onnxruntime]\nprecisions: [fp32]\n"
    )
    res = runner.invoke(app, ["devices", "--json", "--profiles", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "my-board" in {d["name"] for d in json.loads(res.stdout)}
    res = _run("devices", "--json", env={"COMPRESS_PROFILES": str(tmp_path)})
    assert "my-board" in {d["name"] for d in json.loads(res.stdout)}


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and "compress" in res.stdout
