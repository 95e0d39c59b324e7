"""`compress pipeline` end to end on a tiny supernet (digits): every stage, the run directory and
report, caching (a second run redoes nothing; a new budget redoes search and everything after it),
and --resume after a stage crashed midway."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from _search_fixtures import make_checkpoint  # noqa: E402

from compress.core.errors import UsageError  # noqa: E402

YAML = """
name: tiny
seed: 0
supernet: {ckpt}
data: {{name: digits}}
devices:
  - {{name: jetson, budget_ms: {jetson_budget}}}
  - {{name: local-cpu, profile: true}}
profiling: {{iterations: 2, warmup: 1, calibrate: 0, threads: 1, resolutions: [12]}}
search: {{population: 8, generations: 3, predictor_samples: 10, calib_images: 32, val_images: 60}}
prune: {{method: {prune}, blocks: 1, epochs: 1, max_steps: 2, train_limit: 256, latency: macs-estimate}}
export: {{formats: {formats}, samples: 8}}
bench: {{runtimes: [onnxruntime], iterations: {bench_iters}, warmup: 1, rounds: 1, threads: 1}}
gates: {{min_top1: 1, max_parity_err: 1.0e-3, max_latency_ms: {{cpu: 1000}}}}
"""


def write_yaml(
    path: Path,
    ckpt: Path,
    *,
    jetson_budget: float = 5.0,
    prune: str = "updp",
    formats: str = "[onnx, tensorrt]",
    bench_iters: int = 5,
) -> Path:
    path.write_text(
        YAML.format(ckpt=ckpt, jetson_budget=jetson_budget, prune=prune, formats=formats, bench_iters=bench_iters)
    )
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return make_checkpoint(tmp_path_factory.mktemp("pipe") / "tiny.safetensors", train_steps=10)


@pytest.fixture(scope="module")
def first_run(ckpt, tmp_path_factory):
    from compress.pipeline.runner import run_pipeline

    d = tmp_path_factory.mktemp("runs")
    y = write_yaml(d / "p.yaml", ckpt)
    res = run_pipeline(y, out=d / "run")
    return d, y, res


def test_tiny_pipeline_end_to_end(first_run):
    d, _y, res = first_run
    run = d / "run"
    assert [k for k, v in res["stages"].items() if not v["cached"]] == [
        "profile",
        "search",
        "prune",
        "export",
        "bench",
        "check",
    ]
    assert res["passed"] is True and {g["name"] for g in res["gates"]} == {
        "latency[local-cpu]",
        "min-top1",
        "max-parity-err",
    }
    summary = json.loads((run / "summary.json").read_text())
    assert (
        summary["latency"]["local-cpu"]["median_ms"] > 0 and summary["latency"]["local-cpu"]["runtime"] == "onnxruntime"
    )
    assert summary["gates"]["max_latency_ms"] == {"local-cpu": 1000}  # alias `cpu` canonicalised
    acc = summary["accuracy"]
    assert 0 <= acc["top1_after"] <= 100 and acc["top1_before"] is not None
    assert (
        summary["parity"]["onnx"]["max_rel_err"] < 1e-3 and "tensorrt" not in summary["parity"]
    )  # bundle: not checked here
    assert summary["search"]["jetson-orin-nano"]["latency_source"] == "estimated"
    assert summary["search"]["local-cpu"]["latency_source"] == "measured"
    # every stage's JSON, the selected subnets, the pruned model and the exports are in the run dir
    st = run / "stages"
    assert (st / "profile" / "tables" / "local-cpu").is_dir()
    assert json.loads((st / "search" / "local-cpu" / "subnet.json").read_text())["format"] == "compress-subnet"
    assert (st / "prune" / "model" / "model.json").is_file()
    exp = json.loads((st / "export" / "stage.json").read_text())["result"]
    assert {f["kind"] for f in exp["formats"]} == {"onnx", "tensorrt-bundle"}
    assert (st / "export" / "searched" / "model.onnx").is_file()  # the unpruned choice, for predicted-vs-measured
    bench = json.loads((st / "bench" / "stage.json").read_text())["result"]
    assert set(bench["items"]) == {"final:onnxruntime", "searched:onnxruntime"}
    # manifest: versions, seeds, input hashes, stage keys
    man = json.loads((run / "manifest.json").read_text())
    assert man["seeds"] == {"seed": 0} and "torch" in man["versions"]
    assert len(man["inputs"]["supernet"]["sha256"]) == 64 and set(man["stages"]) == set(res["stages"])
    # the report: markdown + self-contained HTML with the plots
    md = (run / "report.md").read_text()
    for part in (
        "Pareto front",
        "Predicted vs measured",
        "Per-block latency",
        "before pruning",
        "Export parity",
        "Benchmarks",
        "ESTIMATED",
        "ALL GATES HOLD",
    ):
        assert part in md, part
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    import xml.etree.ElementTree as ET

    assert ET.parse(st / "check" / "junit.xml").getroot().get("tests") == "3"
    # the run is a valid `compress check` run dir
    from compress.cli.main import app

    r = CliRunner().invoke(app, ["check", str(run), "--min-top1", "101"])
    assert r.exit_code == 1


def test_second_run_redoes_nothing_and_a_new_budget_redoes_search_and_after(first_run, ckpt):
    from compress.cli.main import app

    d, y, res1 = first_run
    r = CliRunner().invoke(app, ["pipeline", str(y), "--out", str(d / "run"), "--json"])
    assert r.exit_code == 0, r.output
    res2 = json.loads(r.stdout)
    assert all(v["cached"] for v in res2["stages"].values())
    assert {k: v["key"] for k, v in res2["stages"].items()} == {k: v["key"] for k, v in res1["stages"].items()}

    from compress.pipeline.runner import run_pipeline

    shutil.copytree(d / "run", d / "run_budget")
    y2 = write_yaml(d / "p_budget.yaml", ckpt, jetson_budget=4.0)
    res3 = run_pipeline(y2, out=d / "run_budget")
    ran = [k for k, v in res3["stages"].items() if not v["cached"]]
    assert ran == ["search", "prune", "export", "bench", "check"]  # the profile is reused
    assert res3["stages"]["profile"]["key"] == res1["stages"]["profile"]["key"]


def test_resume_after_a_stage_crashed(first_run, ckpt):
    from compress.core import hooks
    from compress.pipeline.runner import run_pipeline

    def fault(stage, work, **_):  # the test seam: bench fails after it wrote part of its work
        if stage == "bench":
            raise RuntimeError(f"injected fault in stage {stage}; work left in {work}")

    d, _y, _res = first_run
    shutil.copytree(d / "run", d / "run_crash")
    y = write_yaml(d / "p_crash.yaml", ckpt, bench_iters=6)  # only bench (and check) change
    with hooks.installed("pipeline.stage", fault), pytest.raises(RuntimeError, match="injected fault"):
        run_pipeline(y, out=d / "run_crash")
    st = d / "run_crash" / "stages"
    assert (st / "bench.partial").is_dir()  # the half-done work, never read as a result
    state = json.loads((d / "run_crash" / "pipeline.json").read_text())
    assert state["status"] == "failed" and state["stage"] == "bench"
    with pytest.raises(UsageError, match="--resume"):
        run_pipeline(y, out=d / "run_crash")  # an unfinished run is not silently reused
    res = run_pipeline(y, out=d / "run_crash", resume=True)
    assert [k for k, v in res["stages"].items() if not v["cached"]] == ["bench", "check"]
    assert not (st / "bench.partial").exists() and (st / "bench" / "stage.json").is_file()
    assert json.loads((d / "run_crash" / "pipeline.json").read_text())["status"] == "done"


@pytest.mark.slow
def test_killed_process_leaves_nothing_half_written_and_resumes(first_run, ckpt):
    """SIGKILL the CLI during the bench stage, then --resume (slow: a real process kill)."""
    import os
    import signal
    import subprocess
    import time

    d, _y, _res = first_run
    shutil.copytree(d / "run", d / "run_kill")
    y = write_yaml(d / "p_kill.yaml", ckpt, bench_iters=4000)
    exe = Path(sys.executable).parent / "compress"
    cmd = [str(exe), "pipeline", str(y), "--out", str(d / "run_kill")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = d / "run_kill" / "pipeline.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if (d / "run_kill" / "stages" / "bench.partial").is_dir() and json.loads(state.read_text()).get(
            "stage"
        ) == "bench":
            break
        assert proc.poll() is None, "the pipeline finished before it could be killed"
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["status"] == "running"  # killed: never marked done
    old = json.loads((d / "run_kill" / "stages" / "bench" / "stage.json").read_text())
    assert old["result"]["items"]["final:onnxruntime"]["iterations"] < 4000  # the committed bench is the old one
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "--resume" in r.stderr
    r = subprocess.run([*cmd, "--resume", "--json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert [k for k, v in res["stages"].items() if not v["cached"]] == ["bench", "check"]


@pytest.mark.slow
def test_train_stage_then_search(tmp_path):
    """`train:` instead of `supernet:` (slow: trains a tiny supernet for two epochs)."""
    from compress.pipeline.runner import run_pipeline

    sys.path.insert(0, str(Path(__file__).parent))
    from _train_fixtures import TINY_SPACE

    y = tmp_path / "t.yaml"
    y.write_text(
        json.dumps(
            {
                "name": "train-tiny",
                "data": {"name": "digits", "image_size": 8},
                "train": {
                    "family": "convnext-small-input",
                    "epochs": 2,
                    "batch_size": 32,
                    "train_limit": 256,
                    "space": TINY_SPACE,
                    "options": {
                        "shrink_start": 1,
                        "ramp_epochs": 1,
                        "base_lr": 0.05,
                        "eval_every_epochs": 0,
                        "calib_size": 128,
                    },
                },
                "devices": [{"name": "local-cpu", "budget_ms": 5}],
                "search": {
                    "population": 8,
                    "generations": 3,
                    "predictor_samples": 10,
                    "calib_images": 32,
                    "val_images": 60,
                },
                "prune": {"method": "none"},
                "export": {"formats": ["onnx"], "samples": 8},
                "bench": {"runtimes": ["onnxruntime"], "iterations": 5, "warmup": 1, "rounds": 1},
                "gates": {"min_top1": 1},
            }
        )
    )
    res = run_pipeline(y, out=tmp_path / "run")
    assert [k for k, v in res["stages"].items() if not v["cached"]] == [
        "train",
        "search",
        "prune",
        "export",
        "bench",
        "check",
    ]
    man = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "stages/train/" in man["inputs"]["supernet"]["path"]
    assert res["summary"]["accuracy"]["top1"] >= 0 and res["passed"] is True
