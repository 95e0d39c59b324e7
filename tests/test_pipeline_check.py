"""`compress check`: exit codes, JUnit validity, noise-aware regression."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from typer.testing import CliRunner

from compress.cli.main import app
from compress.pipeline.gates import regression_gates

runner = CliRunner()


def _run(tmp_path, name, median=5.0, std=0.2, n=200, top1=(90.0, 89.7), rel=2e-6):
    d = tmp_path / name
    d.mkdir()
    (d / "summary.json").write_text(
        json.dumps(
            {
                "latency": {
                    "local-cpu": {"median_ms": median, "std_ms": std, "iterations": n, "runtime": "onnxruntime"}
                },
                "accuracy": {"top1_before": top1[0], "top1_after": top1[1], "top1": top1[1]},
                "parity": {"onnx": {"max_abs_err": 1e-6, "max_rel_err": rel, "passed": True}},
                "gates": {"min_top1": 80.0},
            }
        )
    )
    return d


def test_all_pass_exit_0_and_junit(tmp_path):
    d = _run(tmp_path, "run")
    junit = tmp_path / "gates.xml"
    res = runner.invoke(
        app,
        [
            "check",
            str(d),
            "--max-latency-ms",
            "6",
            "--device",
            "local",
            "--min-top1",
            "85",
            "--max-top1-drop",
            "0.5",
            "--max-parity-err",
            "1e-4",
            "--junit",
            str(junit),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["passed"] and len(out["gates"]) == 4
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites" and root.get("failures") == "0"
    assert len(root.findall(".//testcase")) == 4


def test_failing_gate_exit_1_with_margin(tmp_path):
    d = _run(tmp_path, "run", top1=(90.0, 88.0))
    junit = tmp_path / "g.xml"
    res = runner.invoke(
        app,
        [
            "check",
            str(d),
            "--max-top1-drop",
            "0.5",
            "--max-latency-ms",
            "4",
            "--device",
            "local-cpu",
            "--json",
            "--junit",
            str(junit),
        ],
    )
    assert res.exit_code == 1
    gates = {g["name"]: g for g in json.loads(res.stdout)["gates"]}
    assert not gates["max-top1-drop"]["passed"] and abs(gates["max-top1-drop"]["margin"] + 1.5) < 1e-9
    assert not gates["latency[local-cpu]"]["passed"]
    assert len(ET.parse(junit).getroot().findall(".//failure")) == 2


def test_usage_errors_exit_2(tmp_path):
    d = _run(tmp_path, "run")
    assert runner.invoke(app, ["check", str(tmp_path / "nope"), "--min-top1", "1"]).exit_code == 2
    assert runner.invoke(app, ["check", str(d), "--max-latency-ms", "5"]).exit_code == 2  # no --device
    assert runner.invoke(app, ["check", str(d), "--max-latency-ms", "5", "--device", "jetsn"]).exit_code == 2
    assert runner.invoke(app, ["check", str(d), "--max-latency-regression-pct", "5"]).exit_code == 2


def test_gates_from_run_config(tmp_path):
    d = _run(tmp_path, "run", top1=(90.0, 70.0))
    res = runner.invoke(app, ["check", str(d), "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["gates"][0]["name"] == "min-top1"


def test_noise_aware_regression(tmp_path):
    base = {"latency": {"d": {"median_ms": 10.0, "std_ms": 2.0, "iterations": 20}}}
    noisy = {"latency": {"d": {"median_ms": 10.8, "std_ms": 2.0, "iterations": 20}}}
    quiet_base = {"latency": {"d": {"median_ms": 10.0, "std_ms": 0.05, "iterations": 500}}}
    quiet = {"latency": {"d": {"median_ms": 10.8, "std_ms": 0.05, "iterations": 500}}}
    # the same 8% regression passes a 5% gate when both runs are noisy, fails when both are quiet
    assert regression_gates(noisy, base, 5.0)[0].passed
    assert not regression_gates(quiet, quiet_base, 5.0)[0].passed
    b = _run(tmp_path, "base", median=5.0, std=0.01, n=500)
    c = _run(tmp_path, "cur", median=5.6, std=0.01, n=500)
    res = runner.invoke(app, ["check", str(c), "--baseline", str(b), "--max-latency-regression-pct", "5", "--json"])
    assert res.exit_code == 1
    res = runner.invoke(app, ["check", str(b), "--baseline", str(b), "--max-latency-regression-pct", "5", "--json"])
    assert res.exit_code == 0
