"""Latency tables, validation and search at int8 (ONNX Runtime, QDQ blocks), for real on a tiny supernet.

The blocks are quantized by the project's quantizer (``compress.quantize.onnxruntime.quantize_onnx_int8``)
and timed on ONNX Runtime; nothing here is simulated. The search test injects an accuracy estimator
(the latency side is the real int8 table).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from _search_fixtures import make_checkpoint  # noqa: E402

from compress.cli.main import app  # noqa: E402
from compress.core.errors import UsageError  # noqa: E402

FAST = ["--threads", "1", "--iterations", "4", "--warmup", "1"]


def _quantizer():
    return pytest.importorskip(
        "compress.quantize.onnxruntime", reason="the quantization core (compress.quantize) is not in this tree"
    )


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    return make_checkpoint(tmp_path_factory.mktemp("qt") / "tiny.safetensors")


@pytest.fixture(scope="module")
def int8_tables(ckpt, tmp_path_factory):
    """An int8 and an fp32 table of the tiny space (CLI), calibrated on a few subnets."""
    _quantizer()
    tables = tmp_path_factory.mktemp("tables")
    out = {}
    for prec in ("int8", "fp32"):
        r = CliRunner().invoke(
            app,
            [
                "profile",
                "--device",
                "local-cpu",
                "--runtime",
                "onnxruntime",
                "--precision",
                prec,
                "--supernet",
                str(ckpt),
                "--tables",
                str(tables),
                "--calibrate",
                "4",
                *FAST,
                "--json",
            ],
        )
        assert r.exit_code == 0, r.output
        out[prec] = json.loads(r.stdout)
    return tables, out


def test_quantized_block_carries_qdq_and_runs_int8_kernels(tmp_path) -> None:
    _quantizer()
    import onnx
    import onnxruntime as ort

    from compress.latency.blocks import build_module
    from compress.latency.measure import MeasureSettings, block_artifact
    from compress.latency.signature import BlockSignature

    sig = BlockSignature(
        kind="mbconv",
        in_hw=8,
        in_ch=16,
        out_hw=8,
        out_ch=16,
        kernel=3,
        mid=32,
        stride=1,
        act="relu",
        residual=True,
        norm=True,
        has_expand=True,
    )
    st = MeasureSettings(runtime="onnxruntime", precision="int8", threads=1)
    art, _ = block_artifact(build_module(sig), sig.input_shape, tmp_path, "blk", st)
    ops = {n.op_type for n in onnx.load(str(art)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops  # Q/DQ as quantize_static places them
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    so.log_severity_level = 3
    ort.InferenceSession(str(art), so, providers=["CPUExecutionProvider"])
    fused = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert "QLinearConv" in fused  # ORT runs the convs in int8
    # the runner loads the QDQ file at fp32 (the int8 lives in the graph), canary included
    assert st.load_kwargs()["precision"] == "fp32"
    assert MeasureSettings(runtime="onnxruntime", precision="fp32").load_kwargs()["precision"] == "fp32"


def test_profile_int8_keys_the_table_by_precision(int8_tables) -> None:
    from compress.latency.table import LatencyTable

    tables, res = int8_tables
    i8, f32 = res["int8"], res["fp32"]
    assert i8["precision"] == "int8" and "onnxruntime__int8__b1__" in Path(i8["path"]).name
    assert f32["precision"] == "fp32" and Path(f32["path"]) != Path(i8["path"])
    assert i8["signatures"] == f32["signatures"] == i8["measured_now"]
    t = LatencyTable.load(i8["path"])
    assert t.meta.precision == "int8" and t.meta.threads == 1 and len(t.measured()) == i8["signatures"]
    assert t.calibration and t.calibration["samples"] == 4
    # the two tables hold different timings for the same signatures (one timed quantized blocks)
    tf = LatencyTable.load(f32["path"])
    assert set(t.entries) == set(tf.entries)
    assert any(abs(t.lookup(s) - tf.lookup(s)) > 1e-9 for s in t.entries)


def test_latency_validate_int8_reports_the_fp32_figures(int8_tables, ckpt) -> None:
    tables, _ = int8_tables
    got = {}
    for prec in ("int8", "fp32"):
        r = CliRunner().invoke(
            app,
            [
                "latency",
                "validate",
                "--device",
                "local-cpu",
                "--runtime",
                "onnxruntime",
                "--precision",
                prec,
                "--supernet",
                str(ckpt),
                "--tables",
                str(tables),
                "--samples",
                "3",
                "--threads",
                "1",
                "--iterations",
                "4",
                "--json",
            ],
        )
        assert r.exit_code == 0, r.output
        got[prec] = json.loads(r.stdout)
    assert set(got["int8"]) - {"warning"} == set(got["fp32"]) - {"warning"}  # warning: only when drift moved
    v = got["int8"]
    assert v["precision"] == "int8" and "onnxruntime__int8__" in v["table"] and v["calibrated"]
    for key in ("within_10pct", "mape", "spearman", "repeatability_mape", "noise_ceiling_within_10pct", "drift"):
        assert key in v
    assert v["mape"] >= 0 and all(s["measured_ms"][0] > 0 for s in v["subnets"])


def test_search_int8_selects_by_int8_latency(int8_tables, ckpt) -> None:
    from compress.latency.predict import LatencyModel
    from compress.search.api import search
    from compress.supernet import SearchSpace
    from compress.supernet.checkpoint import read_checkpoint_header

    tables, _ = int8_tables
    space = SearchSpace.from_dict(read_checkpoint_header(ckpt)["space"])

    class BiggerIsBetter:  # an injected accuracy estimator: the latency side is the real int8 table
        def predict_genes(self, genes: np.ndarray) -> np.ndarray:
            return genes.sum(axis=1) / (1.0 + genes.sum(axis=1))

    lat = {
        p: LatencyModel.load(
            device="local-cpu", runtime="onnxruntime", precision=p, space=space, tables=tables, allow_estimate=False
        )
        for p in ("int8", "fp32")
    }
    assert lat["int8"].table.meta.precision == "int8"
    g = space.sample_genes(np.random.default_rng(0), 64)
    budget = float(np.median(lat["int8"].predict_genes(g)))
    res = search(
        devices=["local-cpu"],
        latency_ms=budget,
        precision="int8",
        supernet=ckpt,
        tables=tables,
        accuracy=BiggerIsBetter(),
        refine=0,
        population=16,
        generations=5,
    )
    d = res.devices[0]
    assert d.precision == "int8" and d.latency_source == "measured"
    sel = space.to_genes(space.config_from_dict(d.selected.config))[None]
    assert d.selected.predicted_latency_ms == pytest.approx(float(lat["int8"].predict_genes(sel)[0]), rel=1e-9)
    assert d.selected.predicted_latency_ms <= budget + 1e-12


def test_int8_without_table_names_the_profile_command(tmp_path, ckpt) -> None:
    from compress.latency.predict import LatencyModel

    # local-cpu has no int8 datasheet peak: no estimate either, so an error with the fix
    with pytest.raises(UsageError, match="compress profile --device local-cpu --runtime onnxruntime --precision int8"):
        LatencyModel.load(device="local-cpu", runtime="onnxruntime", precision="int8", space=ckpt, tables=tmp_path)
    r = CliRunner().invoke(
        app,
        [
            "search",
            "--device",
            "local-cpu",
            "--precision",
            "int8",
            "--latency-ms",
            "1",
            "--supernet",
            str(ckpt),
            "--tables",
            str(tmp_path),
            "--refine",
            "0",
        ],
    )
    assert r.exit_code == 2 and "--precision int8" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    # a device with an int8 peak still gets its (flagged) roofline estimate
    est = LatencyModel.load(device="jetson", precision="int8", space=ckpt, tables=tmp_path, warn=False)
    assert est.source == "estimated"


def test_int8_profile_bad_inputs(ckpt, tmp_path) -> None:
    base = ["profile", "--device", "local-cpu", "--supernet", str(ckpt), "--tables", str(tmp_path), "--calibrate", "0"]
    r = CliRunner().invoke(app, [*base, "--runtime", "torch", "--precision", "int8"])
    assert r.exit_code == 2 and "use --runtime onnxruntime or openvino" in r.stderr
    r = CliRunner().invoke(app, [*base, "--precision", "int4"])
    assert r.exit_code == 2 and "no precision 'int4'" in r.stderr
    assert not list(tmp_path.rglob("*.json"))  # nothing half-written


@pytest.mark.parametrize(
    "flags, has", [({"avx2", "fma"}, False), ({"avx512f", "avx512_bf16"}, True), ({"amx_bf16", "amx_tile"}, True)]
)
def test_local_cpu_lists_bf16_only_where_the_cpu_has_it(flags, has) -> None:
    from compress.hardware.local import detect_precisions

    got = detect_precisions(["fp32", "int8", "bf16"], flags)
    assert got[:2] == ["fp32", "int8"] and ("bf16" in got) is has


def test_local_cpu_profile_follows_this_cpu() -> None:
    from compress.hardware import get_profile
    from compress.hardware.local import has_bf16

    prof = get_profile("local-cpu")
    assert "int8" in prof.precisions
    assert ("bf16" in prof.precisions) is has_bf16() is ("bf16" in prof.spec.peak)


@pytest.mark.slow  # ~20-40 s: OpenVINO compiles every block of the space
def test_bf16_table_and_search_on_openvino_where_the_cpu_has_it(ckpt, tmp_path) -> None:
    from compress.hardware.local import has_bf16

    if not has_bf16():
        pytest.skip("this CPU has no AVX512-BF16/AMX-BF16: local-cpu does not list bf16")
    pytest.importorskip("openvino")
    from compress.export.runtimes import get_runner
    from compress.latency.predict import LatencyModel
    from compress.latency.table import LatencyTable

    r = CliRunner().invoke(
        app,
        [
            "profile",
            "--device",
            "local-cpu",
            "--runtime",
            "openvino",
            "--precision",
            "bf16",
            "--supernet",
            str(ckpt),
            "--tables",
            str(tmp_path),
            "--calibrate",
            "0",
            "--resolution",
            "12",
            *FAST,
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    t = LatencyTable.load(res["path"])
    assert t.meta.precision == "bf16" and t.meta.runtime == "openvino" and len(t.measured()) == res["signatures"]
    m = LatencyModel.load(device="local-cpu", runtime="openvino", precision="bf16", space=ckpt, tables=tmp_path)
    assert m.source == "measured" and m.table.meta.precision == "bf16"
    # the blocks were timed with OpenVINO's bf16 inference precision in effect (the runner's hint)
    from compress.latency.blocks import build_module, export_onnx

    sig = next(iter(t.entries))
    onnx = export_onnx(build_module(sig), sig.input_shape, tmp_path / "b.onnx")
    with get_runner("openvino").load(str(onnx), precision="bf16", threads=1) as s:
        assert str(s.settings["effective"].get("INFERENCE_PRECISION_HINT")).lower() == "bf16"
