"""TensorRT: the device build bundle where TensorRT is absent; a real build where it is present."""

from __future__ import annotations

import json
import os
import py_compile
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from _export_helpers import tiny_model

from compress.core.errors import Failure, UsageError
from compress.core.runs import sha256_file
from compress.export.api import export_model

torch.set_num_threads(1)


def _has_trt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.fixture(scope="module")
def bundle_run(tmp_path_factory):
    if _has_trt():
        pytest.skip("TensorRT is installed: the engine is built instead of a bundle (see the tensorrt-marked test)")
    out = tmp_path_factory.mktemp("trt")
    res = export_model(
        tiny_model(),
        out=out,
        formats=["onnx", "trt"],
        precision="fp32",
        batch="dynamic",
        exporter="legacy",
        samples=12,
        max_batch=16,
        workspace_mb=512,
    )
    return out, res


def test_bundle_contents(bundle_run):
    out, res = bundle_run
    trt = res.formats[1]
    assert trt["format"] == "tensorrt" and trt["kind"] == "tensorrt-bundle"
    assert trt["passed"] is None and trt["max_abs_err"] is None  # no engine, no claimed parity
    assert any("engine NOT built" in n for n in trt["notes"])
    b = out / "tensorrt"
    names = {p.name for p in b.iterdir() if not p.name.startswith(".")}
    assert names == {
        "model.onnx",
        "build_engine.py",
        "build_engine.sh",
        "bundle.json",
        "README.md",
        "parity_inputs.npy",
        "parity_reference.npy",
    }
    assert not (b / "model.engine").exists()
    cfg = json.loads((b / "bundle.json").read_text())
    assert cfg["onnx_sha256"] == sha256_file(b / "model.onnx") == sha256_file(out / "model.onnx")
    assert cfg["dynamic"] and (cfg["min_batch"], cfg["opt_batch"], cfg["max_batch"]) == (1, 1, 16)
    assert cfg["workspace_mb"] == 512 and cfg["threshold"]["max_rel_err"] == 1e-4
    x, ref = np.load(b / "parity_inputs.npy"), np.load(b / "parity_reference.npy")
    assert x.shape == (12, 3, 16, 16) and ref.shape == (12, 5)
    man = json.loads((out / "manifest.json").read_text())
    for name in ("build_engine.py", "build_engine.sh", "bundle.json", "parity_inputs.npy"):
        assert man["outputs"][f"tensorrt/{name}"]["sha256"] == sha256_file(b / name)


def test_bundle_scripts_are_valid_and_name_the_right_files(bundle_run):
    out, _res = bundle_run
    b = out / "tensorrt"
    py_compile.compile(str(b / "build_engine.py"), doraise=True)
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(b / "build_engine.sh")], check=True)
    sh = (b / "build_engine.sh").read_text()
    assert "--onnx=model.onnx" in sh and "--saveEngine=model.engine" in sh
    assert "--minShapes=input:1x3x16x16" in sh and "--maxShapes=input:16x3x16x16" in sh
    assert "--memPoolSize=workspace:512M" in sh and "--timingCacheFile=timing.cache" in sh
    assert "--fp16" not in sh
    assert os.access(b / "build_engine.sh", os.X_OK)
    py = (b / "build_engine.py").read_text()
    for api in (
        "OnnxParser",
        "create_optimization_profile",
        "set_memory_pool_limit",
        "create_timing_cache",
        "build_serialized_network",
        "execute_async_v3",
    ):
        assert api in py
    readme = (b / "README.md").read_text()
    assert "python3 build_engine.py" in readme and "bash build_engine.sh" in readme


def test_build_script_fails_cleanly_without_tensorrt(bundle_run):
    out, _res = bundle_run
    r = subprocess.run(
        [sys.executable, str(out / "tensorrt" / "build_engine.py")], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    assert "TensorRT's Python package is not installed" in r.stderr
    assert not (out / "tensorrt" / "model.engine").exists()


def test_build_script_refuses_a_modified_onnx(bundle_run, tmp_path):
    out, _res = bundle_run
    b = tmp_path / "b"
    shutil.copytree(out / "tensorrt", b)
    (b / "model.onnx").write_bytes((b / "model.onnx").read_bytes() + b"\0")
    code = (
        "import sys, types; sys.modules['tensorrt'] = types.SimpleNamespace(__version__='10.0.0'); "
        f"sys.path.insert(0, {str(b)!r}); import build_engine; sys.exit(build_engine.main([]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "does not match the sha256" in r.stderr


def test_fp16_static_bundle_flags(tmp_path):
    if _has_trt():
        pytest.skip("TensorRT is installed here")
    res = export_model(
        tiny_model(), out=tmp_path, formats=["trt"], precision="fp16", batch=2, exporter="legacy", parity=False
    )
    sh = (tmp_path / "tensorrt" / "build_engine.sh").read_text()
    assert "--fp16" in sh and "--minShapes" not in sh
    cfg = json.loads((tmp_path / "tensorrt" / "bundle.json").read_text())
    assert cfg["parity_inputs"] is None and cfg["precision"] == "fp16" and cfg["input_shape"] == [2, 3, 16, 16]
    assert res.formats[0]["passed"] is None


def test_int8_needs_calibration_data(tmp_path):
    with pytest.raises(UsageError, match="int8 needs calibration images"):
        export_model(
            tiny_model(), out=tmp_path / "a", formats=["trt"], precision="int8", exporter="legacy", parity=False
        )
    if _has_trt():
        return
    export_model(
        tiny_model(in_ch=1, size=8, classes=10),
        out=tmp_path / "b",
        formats=["trt"],
        precision="int8",
        exporter="legacy",
        parity=False,
        data="digits",
    )
    calib = np.load(tmp_path / "b" / "tensorrt" / "calib.npy")
    assert calib.shape[1:] == (1, 8, 8) and len(calib) > 100
    assert "--int8" in (tmp_path / "b" / "tensorrt" / "build_engine.sh").read_text()


@pytest.mark.ssh
def test_remote_build_reports_failure_and_cleans_up(sshd, tmp_path, monkeypatch):
    """Over a real sshd on 127.0.0.1: the device has neither TensorRT nor trtexec, so the build must
    fail loudly (never a pretend engine) and leave no temp directory behind."""
    if _has_trt():
        pytest.skip("TensorRT is installed here")
    monkeypatch.setenv("COMPRESS_SSH_CONFIG", str(sshd.ssh_config))
    import contextlib
    from pathlib import Path

    from compress.remote.ssh import RemoteHost

    made = []
    original = RemoteHost.tempdir

    @contextlib.contextmanager
    def recording(self, **kw):
        with original(self, **kw) as d:
            made.append(d)
            yield d

    monkeypatch.setattr(RemoteHost, "tempdir", recording)
    with pytest.raises(Failure, match=rf"TensorRT build on {sshd.target} failed \(exit 2\).*trtexec not found"):
        export_model(tiny_model(), out=tmp_path, formats=["trt"], exporter="legacy", parity=False, remote=sshd.target)
    assert len(made) == 1 and not Path(made[0]).exists()  # the sshd is local: same filesystem
    assert not (tmp_path / "tensorrt" / "model.engine").exists()


@pytest.mark.tensorrt
def test_engine_build_and_parity_with_tensorrt(tmp_path):
    if not _has_trt():
        pytest.skip("needs TensorRT and a CUDA GPU (pip install 'compress[tensorrt]' or JetPack)")
    res = export_model(tiny_model(), out=tmp_path, formats=["trt"], precision="fp16", batch="dynamic", samples=16)
    f = res.formats[0]
    assert f["kind"] == "tensorrt-engine" and f["passed"] is True, f["parity"]
    assert (tmp_path / "tensorrt" / "model.engine").is_file() and (tmp_path / "tensorrt" / "timing.cache").is_file()
    assert [b["batch"] for b in f["parity"]["per_batch"]] == [1, 4]
