"""DLA in the TensorRT bundle: the flags, the README that never claims an unbuilt DLA engine, and the
layer report (TensorRT's own: can_run_on_DLA in build_engine.py, or a verbose trtexec log)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(1)


def _has_trt() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()


@pytest.fixture(scope="module")
def dla_run(tmp_path_factory):
    if _has_trt():
        pytest.skip("TensorRT is installed: an engine would be built (needs a Jetson with a DLA for this check)")
    from _export_helpers import tiny_model

    from compress.export.api import export_model

    out = tmp_path_factory.mktemp("dla")
    res = export_model(
        tiny_model(),
        out=out,
        formats=["trt"],
        precision="fp16",
        batch=1,
        exporter="legacy",
        samples=4,
        dla_core=1,
        dla_gpu_fallback=True,
    )
    return out, res


def test_bundle_targets_the_dla_core(dla_run):
    out, res = dla_run
    b = out / "tensorrt"
    sh = (b / "build_engine.sh").read_text()
    assert "--useDLACore=1" in sh and "--allowGPUFallback" in sh and "--verbose" in sh and "tee trtexec.log" in sh
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(b / "build_engine.sh")], check=True)
    readme = (b / "README.md").read_text()
    assert "## DLA" in readme and "Requested: DLA core 1" in readme and "**Not built yet**" in readme
    assert "Layers that fall back" not in readme  # nothing claimed before TensorRT has built it
    trt = res.formats[-1]
    assert any("NO DLA engine was built" in n for n in trt["notes"])


def test_readme_lists_fallback_layers_from_the_build_report():
    from compress.export.tensorrt import _readme, dla_note

    cfg = {
        "dla_core": 0,
        "dla_gpu_fallback": True,
        "min_batch": 1,
        "max_batch": 1,
        "opt_batch": 1,
        "dynamic": False,
        "input_shape": [1, 3, 224, 224],
        "precision": "int8",
        "input_name": "input",
        "workspace_mb": 2048,
        "timing_cache": "timing.cache",
        "engine": "model.engine",
        "onnx_sha256": "x",
        "parity_source": None,
        "threshold": {"max_rel_err": 0.01, "min_top1": 0.99},
    }
    # the record build_engine.py writes (build.dla from IBuilderConfig.can_run_on_DLA)
    rec = {
        "gpu": "Orin",
        "tensorrt": "10.3.0",
        "build": {
            "dla": {
                "dla_core": 0,
                "gpu_fallback_allowed": True,
                "layers": 3,
                "on_dla": 2,
                "source": "TensorRT IBuilderConfig.can_run_on_DLA",
                "gpu_fallback": [{"name": "/fc/Gemm", "type": "MATRIX_MULTIPLY"}],
                "engine_layers": {"dla_subgraphs": ["{ForeignNode[a...b]}"]},
            }
        },
    }
    text = _readme(cfg, rec)
    assert "2 of 3 layers on DLA core 0" in text and "- `/fc/Gemm` (MATRIX_MULTIPLY)" in text
    assert "Not built yet" not in text and "1 DLA subgraph(s)" in text
    note = dla_note({"config": cfg, "built": "remote", "build": rec})
    assert "2 of 3 layers on the DLA, 1 fall back to the GPU (/fc/Gemm)" in note


def test_build_engine_dla_report_uses_tensorrts_per_layer_answer():
    """build_engine.py's report is what TensorRT's can_run_on_DLA says, layer by layer."""
    from compress.export import tensorrt as trt_mod

    spec = importlib.util.spec_from_file_location("be", Path(trt_mod.__file__).parent / "bundle" / "build_engine.py")
    be = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(be)

    class Layer:
        def __init__(self, name, type_):
            self.name, self.type = name, type_

    class Net:
        layers = [Layer("conv1", "LayerType.CONVOLUTION"), Layer("softmax", "LayerType.SOFTMAX")]
        num_layers = 2

        def get_layer(self, i):
            return self.layers[i]

    class Cfg:
        def can_run_on_DLA(self, layer):
            return layer.name != "softmax"

    rep = be.dla_report(Net(), Cfg(), {"dla_core": 1, "dla_gpu_fallback": False})
    assert rep["on_dla"] == 1 and rep["gpu_fallback"] == [{"name": "softmax", "type": "SOFTMAX"}]


@pytest.mark.tensorrt
def test_dla_engine_build_on_a_jetson(tmp_path):
    if not _has_trt():
        pytest.skip("needs TensorRT and a CUDA GPU with a DLA (Jetson AGX Orin / Orin NX); not installable here")
    import tensorrt as trt

    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    if builder.num_DLA_cores < 1:
        pytest.skip("this GPU has no DLA core")
    from _export_helpers import tiny_model

    from compress.export.api import export_model

    res = export_model(
        tiny_model(),
        out=tmp_path,
        formats=["trt"],
        precision="fp16",
        batch=1,
        exporter="legacy",
        samples=4,
        dla_core=0,
        dla_gpu_fallback=True,
    )
    readme = (tmp_path / "tensorrt" / "README.md").read_text()
    assert "layers on DLA core 0" in readme and any("DLA core 0:" in n for n in res.formats[-1]["notes"])
