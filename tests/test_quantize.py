"""compress quantize: ONNX Runtime (QDQ), OpenVINO (NNCF) and TensorRT (Q/DQ bundle) on tiny real models.

The models are small MLPs trained on scikit-learn's digits (real data, seconds) and written as ONNX;
one of them is made sensitive on purpose: every unit of its first layer gets a huge weight (1e4) on
pixel (0, 0), which is 0 in every digits image (a constant after normalisation), with the bias
compensating exactly, so fp32 is unchanged while int8 per-channel weights (scale 1e4/127) round every
other weight of that layer to zero. Accuracy control has to find that layer and keep it in fp32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compress.quantize.api import JSON_KEYS

pytestmark = pytest.mark.filterwarnings("ignore")


def _digits():
    from compress.data import load_dataset

    return load_dataset("digits", seed=0)


def _mlp_onnx(path: Path, *, sensitive: bool, all_layers: bool = False) -> Path:
    """Flatten -> Gemm(64, 32) -> Relu -> Gemm(32, 32) -> Relu -> Gemm(32, 10), trained on digits.

    ``all_layers``: the later layers are made sensitive the same way, through a hidden unit that is
    dead by construction (weights 0, bias -1: always 0 after the ReLU) and a 1e4 weight on it."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from sklearn.neural_network import MLPClassifier

    ds = _digits()
    x = ds.train.images.numpy().reshape(len(ds.train), -1)
    y = ds.train.labels.numpy()
    clf = MLPClassifier(hidden_layer_sizes=(32, 32), max_iter=300, random_state=0).fit(x, y)
    ws = [w.astype(np.float32) for w in clf.coefs_]
    bs = [b.astype(np.float32) for b in clf.intercepts_]
    if sensitive:
        const = float(x[0, 0])
        assert np.all(x[:, 0] == const)  # pixel (0, 0) is blank in every digits image
        ws[0][0, :] = 1e4
        bs[0] = (bs[0] - 1e4 * const).astype(np.float32)
    if all_layers:
        for i in (0, 1):  # kill unit 0 of layer i, put the outlier on it in layer i + 1
            ws[i][:, 0], bs[i][0] = 0.0, -1.0
            ws[i + 1][0, :] = 1e4
    inits, nodes, cur = [], [helper.make_node("Flatten", ["input"], ["flat"], axis=1)], "flat"
    for i, (w, b) in enumerate(zip(ws, bs)):
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [f"g{i}"], name=f"fc{i}"))
        cur = f"g{i}"
        if i < len(ws) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"], name=f"relu{i}"))
            cur = f"r{i}"
    nodes[-1].output[0] = "logits"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {"compress.dataset": "digits"})
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Path:
    return _mlp_onnx(tmp_path_factory.mktemp("q") / "mlp.onnx", sensitive=False)


@pytest.fixture(scope="module")
def sensitive(tmp_path_factory) -> Path:
    return _mlp_onnx(tmp_path_factory.mktemp("q") / "sensitive.onnx", sensitive=True)


def _cli(args: list[str]):
    from typer.testing import CliRunner

    from compress.cli.main import app

    return CliRunner().invoke(app, args)


def _calib(n: int = 16) -> list[np.ndarray]:
    return [a[None] for a in _digits().calib.images[:n].numpy()]


# ---- the low-level ONNX Runtime function -----------------------------------------------------


def test_quantize_onnx_int8_writes_a_qdq_model_that_runs(mlp, tmp_path) -> None:
    import onnx
    import onnxruntime as ort

    from compress.quantize.onnxruntime import quantizable_nodes, quantize_onnx_int8

    out = quantize_onnx_int8(mlp, tmp_path / "q.onnx", calib=_calib(), input_name="input", method="minmax")
    ops = [n.op_type for n in onnx.load(str(out)).graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert quantizable_nodes(mlp) == ["fc0", "fc1", "fc2"]
    x = _digits().test.images[:8].numpy()
    y32 = ort.InferenceSession(str(mlp)).run(None, {"input": x})[0]
    y8 = ort.InferenceSession(str(out)).run(None, {"input": x})[0]
    assert (y32.argmax(1) == y8.argmax(1)).mean() >= 0.75
    # a layer kept in fp32 has no DequantizeLinear feeding its weight
    kept = quantize_onnx_int8(mlp, tmp_path / "k.onnx", calib=_calib(), exclude_nodes=["fc1"], method="entropy")
    m = onnx.load(str(kept))
    producers = {o: n.op_type for n in m.graph.node for o in n.output}
    fc1 = next(n for n in m.graph.node if n.name == "fc1")
    assert producers.get(fc1.input[1]) != "DequantizeLinear"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write: no temp files left


def test_low_level_refusals(mlp, tmp_path) -> None:
    from compress.core.errors import UsageError
    from compress.quantize.onnxruntime import quantize_onnx_int8

    q = quantize_onnx_int8(mlp, tmp_path / "q.onnx", calib=_calib(4))
    with pytest.raises(UsageError, match="already quantized"):
        quantize_onnx_int8(q, tmp_path / "qq.onnx", calib=_calib(4))
    with pytest.raises(UsageError, match="no calibration data"):
        quantize_onnx_int8(mlp, tmp_path / "e.onnx", calib=[])
    with pytest.raises(UsageError, match="nothing to quantize"):
        quantize_onnx_int8(mlp, tmp_path / "x.onnx", calib=_calib(4), exclude_nodes=["fc0", "fc1", "fc2"])
    with pytest.raises(UsageError, match="did you mean"):
        quantize_onnx_int8(mlp, tmp_path / "m.onnx", calib=_calib(4), method="minmx")
    assert not (tmp_path / "qq.onnx").exists() and not (tmp_path / "e.onnx").exists()
    assert not (tmp_path / "x.onnx").exists()


# ---- the CLI contract and every backend ---------------------------------------------------------


def test_cli_json_contract_onnxruntime(mlp, tmp_path) -> None:
    r = _cli(
        [
            "quantize",
            str(mlp),
            "--runtime",
            "ort",
            "--data",
            "digits",
            "--calib-images",
            "32",
            "--iterations",
            "10",
            "--out",
            str(tmp_path / "o"),
            "--json",
        ]
    )
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert tuple(d) == JSON_KEYS
    assert d["runtime"] == "onnxruntime" and d["precision"] == "int8" and d["calib_images"] == 32
    assert Path(d["path"]).is_file() and len(d["sha256"]) == 64
    assert d["top1_fp32"] > 80 and d["drop_points"] <= 3 and d["top1_agreement"] >= 0.9
    assert (
        d["median_ms_fp32"] > 0 and d["median_ms_quant"] > 0 and d["drift"] in ("stable", "normalised", "uncontrolled")
    )
    assert abs(d["speedup"] - d["median_ms_fp32"] / d["median_ms_quant"]) < 1e-9
    saved = json.loads((tmp_path / "o" / "quantize.json").read_text())
    assert {k: saved[k] for k in JSON_KEYS} == d and (tmp_path / "o" / "manifest.json").is_file()


def test_openvino_int8_with_nncf(mlp, tmp_path) -> None:
    import openvino as ov

    import compress

    res = compress.quantize(mlp, out=tmp_path / "ov", runtime="ov", data="digits", calib_images=32, time=False)
    assert res.runtime == "openvino" and res.path.name == "model.xml" and res.path.with_suffix(".bin").is_file()
    ops = {op.get_type_name() for op in ov.Core().read_model(str(res.path)).get_ordered_ops()}
    assert "FakeQuantize" in ops
    assert res.top1_quant is not None and res.drop_points <= 3 and res.median_ms_quant is None


def test_openvino_compiled_layers_show_int8_kernels_and_ours_runs_the_plain_defaults_kernels(mlp, tmp_path) -> None:
    """The benchmark's ours-vs-plain check: same compiled kernels (int8), unlike the fp32 model."""
    from compress.quantize.openvino import (
        compiled_layers,
        quantize_ov_int8,
        quantize_ov_int8_default,
        read_model,
        save_ir,
    )

    ours = quantize_ov_int8(mlp, tmp_path / "ours", calib=_calib(32))
    plain = quantize_ov_int8_default(mlp, tmp_path / "plain", calib=_calib(32))
    fp32 = save_ir(read_model(mlp), tmp_path / "fp32")
    lo, lp, lf = compiled_layers(ours), compiled_layers(plain), compiled_layers(fp32)
    fc = [row for row in lo if row[0] == "FullyConnected"]
    assert len(fc) == 3 and all(prec in ("u8", "i8") for _t, prec, _p in fc)
    assert lo == lp
    assert not any(prec in ("u8", "i8") for t, prec, _p in lf if t == "FullyConnected")


def test_openvino_fp16_through_the_export_writer(mlp, tmp_path) -> None:
    import compress

    res = compress.quantize(mlp, out=tmp_path / "f16", runtime="openvino", precision="fp16", data="digits", time=False)
    assert res.path == tmp_path / "f16" / "openvino-fp16" / "model.xml"
    assert "f16" in res.path.read_text()  # compress_to_fp16: the weights are stored as f16 constants
    assert res.drop_points is not None and abs(res.drop_points) <= 1


def test_tensorrt_bundle_has_the_qdq_onnx_and_says_which_path_it_builds(mlp, tmp_path) -> None:
    import onnx
    from onnx import numpy_helper

    import compress

    res = compress.quantize(mlp, out=tmp_path / "trt", runtime="trt", data="digits", calib_images=16)
    b = res.path
    assert {
        "model.onnx",
        "model.qdq.onnx",
        "calib.npy",
        "build_engine.py",
        "build_engine.sh",
        "README.md",
        "bundle.json",
    } <= {p.name for p in b.iterdir()}
    cfg = json.loads((b / "bundle.json").read_text())
    assert cfg["int8_mode"] == "explicit" and cfg["qdq_onnx"] == "model.qdq.onnx"
    readme = (b / "README.md").read_text()
    assert "explicit quantization" in readme and "model.qdq.onnx" in readme and "--int8-mode calibration" in readme
    assert "--onnx=model.qdq.onnx" in (b / "build_engine.sh").read_text()
    zps = [
        numpy_helper.to_array(i)
        for i in onnx.load(str(b / "model.qdq.onnx")).graph.initializer
        if "zero_point" in i.name
    ]
    assert zps and all(int(np.abs(z).max()) == 0 for z in zps)  # TensorRT: symmetric int8 only
    assert res.median_ms_quant is None and res.speedup is None  # no engine here, nothing timed or claimed
    assert any("no engine was built" in n for n in res.details["notes"])


def test_tensorrt_engine_from_the_qdq_bundle(mlp, tmp_path) -> None:
    pytest.importorskip("tensorrt", reason="TensorRT is not installable here; the engine is built on the device")
    import subprocess
    import sys

    import compress

    res = compress.quantize(mlp, out=tmp_path / "trt", runtime="trt", data="digits", calib_images=16)
    r = subprocess.run([sys.executable, "build_engine.py"], cwd=res.path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((res.path / "build.json").read_text())["build"]["precision"] == "int8"


# ---- accuracy control ---------------------------------------------------------------------------


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_accuracy_control_keeps_the_sensitive_layer_in_fp32(sensitive, tmp_path, runtime) -> None:
    import compress

    plain = compress.quantize(
        sensitive, out=tmp_path / "plain", runtime=runtime, data="digits", calib_images=32, time=False
    )
    assert plain.drop_points > 20, "the outlier layer should wreck int8 without accuracy control"
    ctl = compress.quantize(
        sensitive, out=tmp_path / "ctl", runtime=runtime, data="digits", calib_images=32, max_drop=1.0, time=False
    )
    assert ctl.drop_points <= 1.0
    assert ctl.fp32_layers == [ctl.details["accuracy_control"]["sensitivity"][0]["layer"]]
    assert "fc0" in ctl.fp32_layers[0]
    assert json.loads((tmp_path / "ctl" / "quantize.json").read_text())["fp32_layers"] == ctl.fp32_layers


def test_accuracy_control_that_cannot_hold_fails_with_the_table(tmp_path) -> None:
    every = _mlp_onnx(tmp_path / "every.onnx", sensitive=True, all_layers=True)
    r = _cli(
        [
            "quantize",
            str(every),
            "--data",
            "digits",
            "--calib-images",
            "16",
            "--max-drop",
            "1",
            "--no-time",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert r.exit_code == 1, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("error:"))
    assert "accuracy control could not reach a drop <= 1 points" in line
    assert all(f"fc{i}: " in line for i in range(3))  # the table: each layer with its drop
    assert not (tmp_path / "o" / "model.int8.onnx").exists() and not (tmp_path / "o" / "quantize.json").exists()


# ---- bad input ---------------------------------------------------------------------------------


def _nothing_quantizable(path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["r"]), helper.make_node("Flatten", ["r"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 64])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


def test_bad_inputs_exit_2_with_one_line_and_write_nothing(mlp, tmp_path) -> None:
    from compress.quantize.onnxruntime import quantize_onnx_int8

    qdq = quantize_onnx_int8(mlp, tmp_path / "already.onnx", calib=_calib(4))
    empty = _nothing_quantizable(tmp_path / "relu.onnx")
    cases = {
        "negative max-drop": ([str(mlp), "--data", "digits", "--max-drop", "-0.5"], "max_drop"),
        "already quantized": ([str(qdq), "--data", "digits"], "already quantized"),
        "nothing quantizable": ([str(empty), "--data", "digits"], "nothing to quantize"),
        "fp16 on the ORT CPU provider": ([str(mlp), "--data", "digits", "--precision", "fp16"], "not faster"),
        "int8 on torch": ([str(mlp), "--data", "digits", "--runtime", "torch"], "cannot run a quantized model"),
        "unknown runtime": ([str(mlp), "--data", "digits", "--runtime", "openvno"], "did you mean"),
        "unknown method": ([str(mlp), "--data", "digits", "--method", "minmx"], "method"),
        "no calibration data": ([str(_nothing_dataset(tmp_path, mlp))], "no calibration data"),
        "zero calibration images": ([str(mlp), "--data", "digits", "--calib-images", "0"], "calib_images"),
    }
    for what, (args, msg) in cases.items():
        out = tmp_path / f"out-{what.replace(' ', '-')}"
        r = _cli(["quantize", *args, "--out", str(out), "--no-time"])
        assert r.exit_code == 2, (what, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and msg in lines[0], (what, r.output)
        assert not out.exists() or not any(out.iterdir()), what


def _nothing_dataset(tmp_path: Path, mlp: Path) -> Path:
    """The MLP without its compress.dataset metadata: no --data and nothing recorded."""
    import onnx

    m = onnx.load(str(mlp))
    del m.metadata_props[:]
    p = tmp_path / "nodata.onnx"
    onnx.save(m, str(p))
    return p


def test_compress_quantize_is_callable_even_after_importing_the_package() -> None:
    import compress
    import compress.quantize.onnxruntime  # noqa: F401 - sets the attribute compress.quantize to the package

    assert callable(compress.quantize)
    from compress.quantize.api import quantize

    assert compress.quantize.__call__ is not None and quantize.__name__ == "quantize"


def test_openvino_layers_with_generated_names_are_labelled_by_position() -> None:
    """OpenVINO names some ops it creates ``Multiply_180822``, a number that changes with every
    conversion (seen on the default supernet's subnet): such layers are named by type and position."""
    from compress.quantize.openvino import layer_labels

    class Op:
        def __init__(self, kind: str, name: str) -> None:
            self.kind, self.name = kind, name

        def get_type_name(self) -> str:
            return self.kind

        def get_friendly_name(self) -> str:
            return self.name

    class Model:
        def __init__(self, suffix: int) -> None:
            self.ops = [
                Op("Convolution", "/stem/Conv/WithoutBiases"),
                Op("Relu", f"Relu_{suffix}"),
                Op("MatMul", f"Multiply_{suffix}"),
            ]

        def get_ordered_ops(self) -> list:
            return self.ops

    a, b = layer_labels(Model(180822)), layer_labels(Model(780223))
    assert [lab for lab, _ in a] == [lab for lab, _ in b] == ["/stem/Conv/WithoutBiases", "MatMul#1"]
    assert a[1][1] == "Multiply_180822" and b[1][1] == "Multiply_780223"


def test_bench_times_quantized_models_as_int8_and_refuses_an_fp32_file(mlp, tmp_path) -> None:
    """`compress bench --precision int8` runs what `compress quantize` wrote (ORT QDQ ONNX, OpenVINO INT8
    IR) and reports int8; an fp32 file asked to run in int8 is refused with the command that makes one."""
    from compress.quantize.onnxruntime import quantize_onnx_int8
    from compress.quantize.openvino import quantize_ov_int8

    qdq = quantize_onnx_int8(mlp, tmp_path / "mlp.int8.onnx", calib=_calib(16))
    ir = quantize_ov_int8(mlp, tmp_path / "ov", calib=_calib(16))
    for art, rt in ((qdq, "onnxruntime"), (ir, "openvino")):
        r = _cli(
            [
                "bench",
                str(art),
                "--runtime",
                rt,
                "--precision",
                "int8",
                "-n",
                "4",
                "--rounds",
                "2",
                "--warmup",
                "1",
                "--json",
            ]
        )
        assert r.exit_code == 0, (rt, r.output)
        d = json.loads(r.stdout)
        assert d["precision"] == "int8" and d["items"][0]["settings"]["precision"] == "int8", rt
        assert d["items"][0]["median_ms"] > 0
    for rt, op in (("onnxruntime", "QuantizeLinear"), ("openvino", "FakeQuantize")):
        r = _cli(["bench", str(mlp), "--runtime", rt, "--precision", "int8", "-n", "2", "--rounds", "1"])
        lines = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
        assert r.exit_code == 2 and len(lines) == 1, (rt, r.output)
        assert f"no {op}" in lines[0] and "compress quantize" in lines[0] and f"--runtime {rt}" in lines[0], lines
