"""compress.export.runtimes: one runner per runtime, shared by parity, latency profiling and bench."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_tiny_onnx

from compress.core.errors import MissingDependency, UsageError
from compress.export.runtimes import get_runner, guess_runtime, runner_names

torch.set_num_threads(1)


def test_registry_names_and_aliases():
    assert runner_names() == ["onnxruntime", "openvino", "tensorrt", "torch"]
    for alias, name in [
        ("ort", "onnxruntime"),
        ("ov", "openvino"),
        ("trt", "tensorrt"),
        ("pytorch", "torch"),
        ("OV", "openvino"),
    ]:
        assert get_runner(alias).name == name
    with pytest.raises(UsageError, match="did you mean 'openvino'"):
        get_runner("openvno")


def test_info_never_raises():
    for name in runner_names():
        info = get_runner(name).info()
        assert info["runtime"] == name and isinstance(info["available"], bool)
    assert get_runner("ort").info()["version"]


@pytest.fixture(scope="module")
def dyn_onnx(tmp_path_factory):
    return make_tiny_onnx(tmp_path_factory.mktemp("rt") / "dyn.onnx", hw=16, batch="N")


def test_ort_and_openvino_agree_and_sessions_are_reusable(tiny_onnx):
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    outs = {}
    for name in ("onnxruntime", "openvino"):
        with get_runner(name).load(tiny_onnx, threads=1) as s:
            assert s.input_shape == (1, 3, 32, 32) and s.input_dtype == np.float32
            first = s.run(x).copy()
            assert s.run_bound() is None  # CPU runtimes: the caller times the call
            s.bind(x * 2)
            s.run_bound()
            doubled = s.outputs()[0].copy()
            again = s.run(x)
            np.testing.assert_array_equal(first, again)
            assert not np.allclose(doubled, first)
            assert len(s.run_all(x)) == len(s.output_names) == 1
            outs[name] = first
    np.testing.assert_allclose(outs["onnxruntime"], outs["openvino"], rtol=1e-5, atol=1e-6)


def test_openvino_fp32_sets_f32_precision_hint(tiny_onnx):
    with get_runner("ov").load(tiny_onnx, threads=1) as s:
        assert s.settings["requested"]["INFERENCE_PRECISION_HINT"] == "f32"
        assert s.settings["effective"]["INFERENCE_PRECISION_HINT"] == "f32"
        assert s.settings["requested"]["PERFORMANCE_HINT"] == "LATENCY"


def test_dynamic_batch_is_bound_at_load(dyn_onnx):
    x4 = np.ones((4, 3, 16, 16), np.float32)
    for name in ("ort", "ov"):
        with get_runner(name).load(dyn_onnx, batch=4) as s:
            assert s.input_shape == (4, 3, 16, 16)
            y = s.run(x4)
            assert y.shape == (4, 10)
            with pytest.raises(UsageError, match="batch=1"):
                s.run(x4[:1])
        with get_runner(name).load(dyn_onnx) as s:  # default batch 1
            assert s.input_shape[0] == 1


def test_static_batch_refuses_another(tiny_onnx):
    for name in ("ort", "ov"):
        with pytest.raises(UsageError, match="static batch of 1"):
            get_runner(name).load(tiny_onnx, batch=2)


def test_bad_options_are_errors_not_ignored(tiny_onnx, tmp_path):
    with pytest.raises(UsageError, match="unknown onnxruntime option 'thread'"):
        get_runner("ort").load(tiny_onnx, thread=2)
    with pytest.raises(UsageError, match="precision"):
        get_runner("ort").load(tiny_onnx, precision="fp16")  # an fp32 ONNX runs fp32 in ORT
    with pytest.raises(UsageError, match="threads must be a positive integer"):
        get_runner("ov").load(tiny_onnx, threads=0)
    with pytest.raises(UsageError, match="not found"):
        get_runner("ort").load(tmp_path / "missing.onnx")
    with pytest.raises(UsageError, match="expected a .onnx"):
        get_runner("ort").load(_touch(tmp_path / "m.xml"))
    with pytest.raises(UsageError, match="not available here"):
        get_runner("ov").load(tiny_onnx, device="NPU")


def _touch(p):
    p.write_text("x")
    return p


def test_torch_runner_wraps_modules_and_restores_threads():
    from _export_helpers import tiny_model

    lm = tiny_model()
    before = torch.get_num_threads()
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    with get_runner("torch").load(lm, batch=2, threads=1) as s:
        assert torch.get_num_threads() == 1
        y = s.run(x)
        with torch.no_grad():
            ref = lm.module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    assert torch.get_num_threads() == before
    with pytest.raises(UsageError, match="input_shape"):
        get_runner("torch").load(lm.module)
    with get_runner("torch").load(lm.module, input_shape=(3, 16, 16)) as s:
        assert s.input_shape == (1, 3, 16, 16)


def test_tensorrt_missing_is_a_clean_error(tmp_path):
    r = get_runner("tensorrt")
    if r.available():
        pytest.skip("TensorRT is installed here; the missing-dependency path does not apply")
    assert r.info()["available"] is False
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(MissingDependency, match=r"compress\[tensorrt\]|CUDA"):
        r.load(engine)


def test_guess_runtime(tiny_onnx, tmp_path):
    assert guess_runtime(tiny_onnx) == "onnxruntime"
    assert guess_runtime("timm:resnet18") == "torch"
    assert guess_runtime(tmp_path / "a.engine") == "tensorrt"
    assert guess_runtime(tmp_path / "a.xml") == "openvino"
    with pytest.raises(UsageError, match="pass the runtime"):
        guess_runtime(tmp_path / "a.bin")
