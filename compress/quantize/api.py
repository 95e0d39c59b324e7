"""``compress.quantize``: post-training INT8 / FP16 for ONNX Runtime, OpenVINO and TensorRT.

One call does what a deployment engineer does by hand with each vendor's tool, and checks it:

1. resolve MODEL the way ``compress export`` does (``compress.models.load_model``: a search run, a
   prune run, a checkpoint + subnet, ``timm:NAME`` + weights) and export the fp32 ONNX with the
   exporter's own ``to_onnx``; an ``.onnx`` file is taken as it is (and refused if already quantized);
2. calibrate on the dataset's **calib split** (never random data) and quantize with the runtime's
   own quantizer (:mod:`compress.quantize.onnxruntime`, :mod:`compress.quantize.openvino`);
3. measure top-1 of the fp32 and the quantized model on the **test split**, the quantized one run in
   its runtime through the project's runners (``compress.export.runtimes``);
4. accuracy control (``max_drop``): when the drop exceeds it, rank the weighted layers by
   sensitivity (the drop with that one layer kept in fp32), keep the most sensitive ones in fp32
   until the drop holds, or fail with the table of layers and drops;
5. time fp32 and quantized with the drift-controlled engine (``compress.bench.timing``: one thread,
   batch 1, interleaved rounds, canary), and write ``quantize.json`` + ``manifest.json``.

Sensitivity is measured on the same test split the drop is reported on, as the issue defines the
drop; ``test_images`` caps both (use the val split for model selection elsewhere).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from compress.core.config import StrictModel, validate
from compress.core.errors import Failure, UsageError, unknown
from compress.core.progress import Progress, progress_or_log

RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino", "tensorrt")
PRECISIONS: tuple[str, ...] = ("int8", "fp16")
#: the keys of ``QuantizeResult.to_json`` (the CLI's ``--json``), in order
JSON_KEYS: tuple[str, ...] = (
    "runtime",
    "precision",
    "path",
    "sha256",
    "calib_images",
    "top1_fp32",
    "top1_quant",
    "drop_points",
    "top1_agreement",
    "fp32_layers",
    "median_ms_fp32",
    "median_ms_quant",
    "speedup",
    "drift",
)
_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider")


class QuantizeConfig(StrictModel):
    """Everything ``compress quantize`` does; the defaults are the CLI's."""

    runtime: str = "onnxruntime"
    precision: Literal["int8", "fp16"] = "int8"
    data: str | None = Field(None, description="dataset: calib split for calibration, test split for top-1")
    calib_images: int = Field(512, ge=1, description="calibration images from the calib split")
    max_drop: float | None = Field(None, ge=0, description="accuracy control: largest top-1 drop in points")
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    test_images: int | None = Field(None, ge=1, description="cap on test images (default: the whole test split)")
    eval_batch: int = Field(32, ge=1, description="batch for the top-1 evaluation (dynamic-batch models)")
    threads: int = Field(1, ge=1, description="CPU threads for evaluation and timing")
    iterations: int = Field(50, ge=1, description="timed runs per model (split over rounds)")
    rounds: int = Field(5, ge=1)
    time: bool = Field(True, description="time fp32 vs quantized (False: accuracy only)")
    exporter: Literal["auto", "dynamo", "legacy"] = "auto"
    seed: int = 0


@dataclass
class QuantizeResult:
    out: Path
    runtime: str
    precision: str
    path: Path
    sha256: str
    calib_images: int
    top1_fp32: float | None
    top1_quant: float | None
    top1_agreement: float | None
    fp32_layers: list[str]
    median_ms_fp32: float | None
    median_ms_quant: float | None
    drift: str | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def drop_points(self) -> float | None:
        if self.top1_fp32 is None or self.top1_quant is None:
            return None
        return round(self.top1_fp32 - self.top1_quant, 4)

    @property
    def speedup(self) -> float | None:
        if not self.median_ms_fp32 or not self.median_ms_quant:
            return None
        return self.median_ms_fp32 / self.median_ms_quant

    def to_json(self) -> dict[str, Any]:
        """Exactly :data:`JSON_KEYS` (top-1 in percent, drop in points, times in ms)."""
        return {
            "runtime": self.runtime,
            "precision": self.precision,
            "path": str(self.path),
            "sha256": self.sha256,
            "calib_images": self.calib_images,
            "top1_fp32": self.top1_fp32,
            "top1_quant": self.top1_quant,
            "drop_points": self.drop_points,
            "top1_agreement": self.top1_agreement,
            "fp32_layers": list(self.fp32_layers),
            "median_ms_fp32": self.median_ms_fp32,
            "median_ms_quant": self.median_ms_quant,
            "speedup": self.speedup,
            "drift": self.drift,
        }


# ---- inputs ------------------------------------------------------------------------------------


def _canonical_runtime(name: str) -> str:
    from compress.export.runtimes import get_runner

    try:
        rt = get_runner(name).name
    except UsageError:
        raise unknown("runtime", name, RUNTIMES) from None
    if rt not in RUNTIMES:
        raise UsageError(
            f"{rt} cannot run a quantized model: int8/fp16 need --runtime onnxruntime, openvino or "
            f"tensorrt (export one, then quantize for it)"
        )
    return rt


def _check_precision(runtime: str, precision: str) -> None:
    if runtime == "onnxruntime" and precision == "fp16":
        import onnxruntime as ort

        if not any(p in ort.get_available_providers() for p in _GPU_PROVIDERS):
            raise UsageError(
                "fp16 is not faster on ONNX Runtime's CPU provider (it computes fp16 by converting to "
                "fp32); use --precision int8 here, or --runtime openvino --precision fp16 "
                "(or bf16 inference on CPUs with AVX512-BF16/AMX)"
            )


def _onnx_source(path: Path) -> dict[str, Any]:
    """An fp32 ONNX file as a model source: its input shape and dataset (from compress metadata)."""
    import json

    import onnx

    from compress.quantize.onnxruntime import check_not_quantized, weighted_nodes

    try:
        m = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # noqa: BLE001
        raise UsageError(f"{path} is not a readable ONNX model ({type(err).__name__}: {err})") from None
    check_not_quantized(m, what=str(path))
    if not weighted_nodes(m):
        raise UsageError(
            f"nothing to quantize in {path}: no Conv/ConvTranspose/Gemm/MatMul (int8 needs weighted layers)"
        )
    meta = {p.key: p.value for p in m.metadata_props}
    inits = {i.name for i in m.graph.initializer}
    inp = [i for i in m.graph.input if i.name not in inits]
    if len(inp) != 1:
        raise UsageError(f"{path} has {len(inp)} inputs; quantize takes single-input image models")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or None in dims[1:]:
        raise UsageError(f"{path}: input {inp[0].name} has shape {dims}; expected N x C x H x W with fixed C, H, W")
    return {
        "input_shape": tuple(int(d) for d in dims[1:]),
        "batch": dims[0],
        "dataset": meta.get("compress.dataset") or None,
        "input_name": inp[0].name,
        "metadata": meta,
        "source": {"onnx": str(path)},
        "input_shape_meta": json.loads(meta["compress.input_shape"]) if "compress.input_shape" in meta else None,
    }


# ---- evaluation and timing ---------------------------------------------------------------------


def _logits(runtime: str, path: Path, images: np.ndarray, *, batch: int | None, threads: int) -> np.ndarray:
    """Logits of ``images`` from ``path`` run in ``runtime`` (padded last batch, padding dropped)."""
    from compress.export.runtimes import get_runner

    b = int(batch or 1)
    out = []
    with get_runner(runtime).load(str(path), precision="fp32", threads=threads, batch=b) as s:
        for i in range(0, len(images), b):
            x = images[i : i + b]
            n = len(x)
            if n < b:
                x = np.concatenate([x, np.repeat(x[-1:], b - n, axis=0)])
            out.append(np.array(s.run(np.ascontiguousarray(x, dtype=np.float32)), copy=True)[:n])
    return np.concatenate(out)


def _top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 in percent, rounded to 4 decimals: the unit quantization reports and ``max_drop`` uses."""
    from compress.nn.evaluate import top1_of_logits

    return round(100.0 * top1_of_logits(logits, labels), 4)


def _time(runtime: str, fp32: Path, quant: Path, x: np.ndarray, cfg: QuantizeConfig, work: Path) -> dict[str, Any]:
    """fp32 vs quantized, one thread, batch 1, interleaved, drift-controlled (the canary in ORT)."""
    from compress.bench.canary import canary_onnx
    from compress.bench.timing import Item, TimingConfig, run_to_dict, time_items
    from compress.export.runtimes import get_runner

    runner = get_runner(runtime)
    sessions = {
        "fp32": runner.load(str(fp32), precision="fp32", threads=cfg.threads, batch=1),
        "quant": runner.load(str(quant), precision="fp32", threads=cfg.threads, batch=1),
    }
    can = get_runner("onnxruntime").load(str(canary_onnx(work)), precision="fp32", threads=cfg.threads)
    try:
        for s in sessions.values():
            s.bind(np.ascontiguousarray(x[:1], dtype=np.float32))
        can.bind(np.random.default_rng(cfg.seed).standard_normal(can.input_shape).astype(np.float32))
        run = time_items(
            [Item("fp32", sessions["fp32"].run_bound), Item("quant", sessions["quant"].run_bound)],
            canary=can.run_bound,
            config=TimingConfig(warmup=5, iterations=cfg.iterations, rounds=cfg.rounds),
        )
    finally:
        for s in [*sessions.values(), can]:
            s.close()
    return {
        "fp32_ms": run.items["fp32"].estimate_ms,
        "quant_ms": run.items["quant"].estimate_ms,
        "drift": run.drift.status,
        "timing": run_to_dict(run),
    }


# ---- accuracy control --------------------------------------------------------------------------


@dataclass
class _Backend:
    """What accuracy control needs from a runtime: its layers, a quantizer and an evaluator."""

    layers: list[str]
    quantize: Callable[[list[str], Path], Path]  # (layers kept fp32, destination) -> artefact
    logits: Callable[[Path], np.ndarray]  # artefact -> test logits


def _control(
    be: _Backend,
    ref: np.ndarray,
    labels: np.ndarray,
    top1_fp32: float,
    max_drop: float | None,
    work: Path,
    progress: Callable[[str], None],
) -> tuple[Path, list[str], np.ndarray, dict[str, Any]]:
    """Quantize everything; if the drop exceeds ``max_drop``, keep the most sensitive layers in fp32."""
    art = be.quantize([], work / "all")
    logits = be.logits(art)
    drop = top1_fp32 - _top1(logits, labels)
    info: dict[str, Any] = {"drop_all_int8": round(drop, 4), "max_drop": max_drop, "sensitivity": [], "steps": []}
    if max_drop is None or drop <= max_drop:
        return art, [], logits, info
    progress(f"drop {drop:.2f} points > {max_drop:g}: ranking {len(be.layers)} layers by sensitivity")
    table = []
    for i, name in enumerate(be.layers):
        a = be.quantize([name], work / f"s{i}")
        d = top1_fp32 - _top1(be.logits(a), labels)
        table.append({"layer": name, "drop_with_layer_fp32": round(d, 4)})
        shutil.rmtree(work / f"s{i}", ignore_errors=True)
    table.sort(key=lambda r: r["drop_with_layer_fp32"])  # most sensitive first: keeping it fp32 helps most
    info["sensitivity"] = table
    kept: list[str] = []
    for j, row in enumerate(table):
        kept.append(row["layer"])
        if len(kept) == len(be.layers):
            break
        a = be.quantize(list(kept), work / f"k{j}")
        lg = be.logits(a)
        d = top1_fp32 - _top1(lg, labels)
        info["steps"].append({"fp32_layers": list(kept), "drop": round(d, 4)})
        progress(f"keeping {len(kept)} layer(s) in fp32: drop {d:.2f} points")
        if d <= max_drop:
            return a, kept, lg, info
    rows = "; ".join(f"{r['layer']}: {r['drop_with_layer_fp32']:.2f}" for r in table)
    raise Failure(
        f"accuracy control could not reach a drop <= {max_drop:g} points (all int8: {drop:.2f}; "
        f"drop with each layer alone kept fp32: {rows}); raise --max-drop, add calibration images, "
        f"or try --method entropy/percentile"
    )


# ---- the public function -----------------------------------------------------------------------


def quantize(
    model: Any,
    *,
    out: str | Path,
    runtime: str = "onnxruntime",
    precision: str = "int8",
    data: str | None = None,
    calib_images: int = 512,
    max_drop: float | None = None,
    method: str = "minmax",
    test_images: int | None = None,
    threads: int = 1,
    iterations: int = 50,
    rounds: int = 5,
    time: bool = True,
    exporter: str = "auto",
    seed: int = 0,
    model_options: dict[str, Any] | None = None,
    command: str = "quantize",
    progress: Progress | None = None,
) -> QuantizeResult:
    """Quantize ``model`` (anything ``compress export`` takes, or an fp32 ``.onnx`` file) for ``runtime``
    at ``precision`` into ``out``; calibrate on ``data``'s calib split, measure top-1 on its test split,
    keep sensitive layers fp32 until the drop is at most ``max_drop`` points, and time both models.

    Raises :class:`UsageError` (exit 2, nothing written) for bad input: an unknown runtime, int8 or fp16
    where the runtime lacks it, no calibration data, a negative ``max_drop``, an already-quantized ONNX,
    nothing quantizable; :class:`Failure` (exit 1) when accuracy control cannot reach ``max_drop``.

    >>> r = compress.quantize("timm:resnet18", out="runs/q", data="fashion-mnist",  # doctest: +SKIP
    ...                       model_options={"num_classes": 10, "image_size": 32, "in_chans": 1})
    >>> r.to_json()["speedup"]  # doctest: +SKIP
    """
    cfg = validate(
        QuantizeConfig,
        {
            "runtime": runtime,
            "precision": precision,
            "data": data,
            "calib_images": calib_images,
            "max_drop": max_drop,
            "method": method,
            "test_images": test_images,
            "threads": threads,
            "iterations": iterations,
            "rounds": rounds,
            "time": time,
            "exporter": exporter,
            "seed": seed,
        },
        source="quantize",
    )
    say = progress_or_log(progress).note
    rt = _canonical_runtime(cfg.runtime)
    _check_precision(rt, cfg.precision)
    out = Path(out)

    # -- the model (nothing is written before every input has been checked) --
    onnx_file = Path(str(model)) if isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx") else None
    lm = None
    if onnx_file is not None:
        if not onnx_file.is_file():
            raise UsageError(f"ONNX model not found: {onnx_file}")
        src = _onnx_source(onnx_file)
        input_shape, dataset_name = src["input_shape"], src["dataset"]
    else:
        from compress.models import LoadedModel, load_model

        lm = model if isinstance(model, LoadedModel) else load_model(str(model), **(model_options or {}))
        input_shape, dataset_name = tuple(lm.input_shape), lm.dataset
    name = cfg.data or dataset_name
    if not name:
        raise UsageError(
            "no calibration data: pass --data DATASET (its calib split calibrates, its test split measures top-1)"
        )
    from compress.data import load_dataset

    c, h, _w = input_shape
    ds = load_dataset(
        name, image_size=h, channels=c, seed=cfg.seed, train_limit=max(cfg.calib_images, 1), calib_size=cfg.calib_images
    )
    calib = ds.calib.images[: cfg.calib_images].numpy().astype(np.float32)
    if len(calib) == 0:
        raise UsageError(f"no calibration data: the calib split of {name} is empty")
    test = ds.test if cfg.test_images is None else ds.test.subset(cfg.test_images)
    x_test, y_test = test.images.numpy().astype(np.float32), test.labels.numpy()
    if len(x_test) == 0:
        raise UsageError(f"{name} has an empty test split: nothing to measure top-1 on")

    from compress.core.runs import RunDir, sha256_file

    run = RunDir(out, command=command, seeds={"quantize": cfg.seed})
    run.set("config", cfg.model_dump(mode="json"))
    work = Path(tempfile.mkdtemp(prefix=".quantize-", dir=run.path))
    try:
        if onnx_file is not None:
            fp32, batch = onnx_file, src["batch"]
            run.add_input("model", onnx_file)
        else:
            from compress.export.api import _metadata
            from compress.export.onnx import to_onnx

            say("exporting the fp32 ONNX")
            res = to_onnx(
                lm,
                run.path / "model.fp32.onnx",
                batch="dynamic",
                exporter=cfg.exporter,
                metadata=_metadata(lm),
                seed=cfg.seed,
            )
            fp32, batch = res.path, None
            run.add_input(
                "model",
                value={
                    "reference": str(model) if not hasattr(model, "module") else None,
                    "source": lm.source,
                    "source_hash": lm.source_hash,
                },
            )
            run.add_output(fp32, role="fp32 ONNX")
        eval_batch = batch or cfg.eval_batch
        calib_list = [calib[i : i + 1] for i in range(len(calib))]
        say(f"fp32 top-1 on {len(x_test)} test images")
        eval_rt = "openvino" if rt == "openvino" else "onnxruntime"
        ref = _logits(eval_rt, fp32, x_test, batch=eval_batch, threads=cfg.threads)
        top1_fp32 = _top1(ref, y_test)
        details: dict[str, Any] = {
            "dataset": ds.meta,
            "test_images": len(x_test),
            "method": cfg.method,
            "evaluated_in": eval_rt,
            "notes": [],
            "_x_test": x_test,
        }

        quant_path, fp32_layers, qlogits, timed_rt = _build(
            rt, cfg, fp32, run.path, work, calib_list, ref, y_test, top1_fp32, eval_batch, details, say
        )
        details.pop("_x_test", None)
        top1_q = _top1(qlogits, y_test) if qlogits is not None else None
        agree = round(float((qlogits.argmax(1) == ref.argmax(1)).mean()), 4) if qlogits is not None else None
        t: dict[str, Any] = {}
        if cfg.time and timed_rt is not None:
            say(f"timing fp32 vs {cfg.precision} in {timed_rt} ({cfg.threads} thread, batch 1, interleaved)")
            t = _time(timed_rt, fp32, quant_path, x_test, cfg, work)
            details["timing"] = t["timing"]
        art_file = Path(details.get("artifact_file", quant_path))
        result = QuantizeResult(
            out=run.path,
            runtime=rt,
            precision=cfg.precision,
            path=quant_path,
            sha256=sha256_file(art_file),
            calib_images=len(calib),
            top1_fp32=top1_fp32,
            top1_quant=top1_q,
            top1_agreement=agree,
            fp32_layers=fp32_layers,
            median_ms_fp32=t.get("fp32_ms"),
            median_ms_quant=t.get("quant_ms"),
            drift=t.get("drift"),
            details=details,
        )
        run.write_json("quantize.json", {**result.to_json(), "details": details})
        run.set("result", result.to_json())
        run.save_manifest()
        return result
    except BaseException:
        from compress.core.runs import release_run_dir

        release_run_dir(run.path)  # no manifest for a failed run: nothing claims to be a result
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _build(
    rt: str,
    cfg: QuantizeConfig,
    fp32: Path,
    out: Path,
    work: Path,
    calib: list[np.ndarray],
    ref: np.ndarray,
    labels: np.ndarray,
    top1_fp32: float,
    eval_batch: int,
    details: dict[str, Any],
    say: Callable[[str], None],
) -> tuple[Path, list[str], np.ndarray | None, str | None]:
    """Quantize for ``rt``; returns (artefact, layers kept fp32, test logits or None, runtime to time in)."""
    x_test_logits = lambda rt_, p: _logits(rt_, p, _eval_images(details), batch=eval_batch, threads=cfg.threads)  # noqa: E731
    if cfg.precision == "fp16":
        return _build_fp16(rt, cfg, fp32, out, details, x_test_logits)
    if rt == "openvino":
        from compress.quantize import openvino as qov

        be = _Backend(
            layers=qov.quantizable_nodes(fp32),
            quantize=lambda keep, d: qov.quantize_ov_int8(fp32, d, calib=calib, ignored=keep, seed=cfg.seed),
            logits=lambda p: x_test_logits("openvino", p),
        )
        say(f"nncf.quantize on {len(calib)} calibration images")
        art, kept, lg, info = _control(be, ref, labels, top1_fp32, cfg.max_drop, work, say)
        details["accuracy_control"] = info
        final = _move_ir(art, out / "openvino-int8")
        details["artifact_file"] = str(final)
        return final, kept, lg, "openvino"
    from compress.quantize import onnxruntime as qort

    cache = work / "calibration.json"
    scheme = "tensorrt" if rt == "tensorrt" else "cpu"
    be = _Backend(
        layers=qort.quantizable_nodes(fp32),
        quantize=lambda keep, d: qort._quantize(
            fp32,
            d / "model.onnx",
            calib=calib,
            input_name=None,
            per_channel=True,
            method=cfg.method,
            exclude_nodes=keep,
            seed=cfg.seed,
            scheme=scheme,
            calibration_cache=cache,
        ),
        logits=lambda p: x_test_logits("onnxruntime", p),
    )
    say(f"quantize_static ({cfg.method}) on {len(calib)} calibration images")
    art, kept, lg, info = _control(be, ref, labels, top1_fp32, cfg.max_drop, work, say)
    details["accuracy_control"] = info
    if rt == "onnxruntime":
        final = out / "model.int8.onnx"
        _atomic_copy(art, final)
        return final, kept, lg, "onnxruntime"
    # tensorrt: the Q/DQ ONNX (symmetric int8) in the engine bundle, next to the calibration-cache path
    from compress.export.tensorrt import write_bundle

    shape = (1, *_eval_images(details).shape[1:])
    b = write_bundle(
        fp32,
        out / "tensorrt",
        precision="int8",
        input_shape=shape,
        dynamic=False,
        calib_inputs=np.concatenate(calib[:512]),
        qdq_onnx=art,
    )
    details["bundle"] = {"dir": str(b["dir"]), "files": [str(p) for p in b["files"]], "int8_mode": "explicit"}
    details["artifact_file"] = str(b["dir"] / "model.qdq.onnx")
    details["notes"].append(
        "TensorRT is not installed here: no engine was built; top-1 of the Q/DQ model was "
        "measured in ONNX Runtime (the same Q/DQ scales TensorRT reads); build on the device "
        "with tensorrt/build_engine.py"
    )
    return b["dir"], kept, lg, None


def _eval_images(details: dict[str, Any]) -> np.ndarray:
    return details["_x_test"]


def _build_fp16(
    rt: str,
    cfg: QuantizeConfig,
    fp32: Path,
    out: Path,
    details: dict[str, Any],
    logits: Callable[[str, Path], np.ndarray],
) -> tuple[Path, list[str], np.ndarray | None, str | None]:
    if rt == "openvino":
        from compress.export.openvino import to_openvino

        res = to_openvino(fp32, out / "openvino-fp16", precision="fp16", threads=cfg.threads)
        details["notes"].append(
            "fp16-compressed weights; on a CPU without native fp16 OpenVINO decompresses them "
            "to f32 at load, so the speed-up there is about none (bf16 is the CPU's fast path)"
        )
        details["artifact_file"] = str(res["xml"])
        return Path(res["xml"]), [], logits("openvino", Path(res["xml"])), "openvino"
    if rt == "tensorrt":
        from compress.export.tensorrt import write_bundle

        shape = (1, *_eval_images(details).shape[1:])
        b = write_bundle(fp32, out / "tensorrt", precision="fp16", input_shape=shape, dynamic=False)
        details["artifact_file"] = str(b["dir"] / "model.onnx")
        details["notes"].append("TensorRT is not installed here: no engine was built and fp16 top-1 was not measured")
        return b["dir"], [], None, None
    # onnxruntime with a GPU provider (checked before): fp16 weights and compute, fp32 inputs/outputs
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from compress.core.runs import atomic_path

    m16 = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    final = out / "model.fp16.onnx"
    with atomic_path(final) as tmp:
        onnx.save(m16, str(tmp))
    details["notes"].append("fp16 ONNX for a GPU provider; evaluated and timed here on the CPU provider")
    return final, [], logits("onnxruntime", final), "onnxruntime"


def _atomic_copy(src: Path, dst: Path) -> Path:
    from compress.core.runs import atomic_path

    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def _move_ir(xml: Path, dest: Path) -> Path:
    """Copy an IR (xml + bin) into ``dest`` atomically (.bin first)."""
    from compress.core.runs import atomic_path

    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".bin", ".xml"):
        with atomic_path(dest / f"model{suffix}") as tmp:
            shutil.copyfile(xml.with_suffix(suffix), tmp)
    return dest / "model.xml"
