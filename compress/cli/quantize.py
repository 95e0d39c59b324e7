"""``compress quantize``: INT8 / FP16 for ONNX Runtime, OpenVINO or TensorRT, with accuracy control."""

from __future__ import annotations

from typing import Annotated

import typer

from compress.cli.common import (
    ImageSizeOpt,
    InChansOpt,
    JsonOpt,
    ModelWeightsOpt,
    NumClassesOpt,
    OutOpt,
    SeedOpt,
    command_line,
    console,
    default_run_dir,
    emit_json,
    model_options,
)
from compress.cli.main import app


@app.command("quantize")
def quantize_cmd(
    model: Annotated[
        str,
        typer.Argument(
            help="Anything `compress export` takes (timm:NAME, a model directory, a search or prune run, a checkpoint reference), or an fp32 .onnx file."
        ),
    ],
    runtime: Annotated[
        str, typer.Option("--runtime", "-r", help="onnxruntime (ort) | openvino (ov) | tensorrt (trt).")
    ] = "onnxruntime",
    precision: Annotated[str, typer.Option("--precision", help="int8 | fp16.")] = "int8",
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Dataset: its calib split calibrates, its test split measures top-1 (default: the model's own).",
        ),
    ] = None,
    calib_images: Annotated[int, typer.Option("--calib-images", help="Calibration images from the calib split.")] = 512,
    max_drop: Annotated[
        float | None,
        typer.Option(
            "--max-drop",
            help="Accuracy control: largest top-1 drop in points; sensitive layers stay fp32 until it holds.",
        ),
    ] = None,
    method: Annotated[
        str, typer.Option("--method", help="Calibration: minmax | entropy | percentile (ONNX Runtime, TensorRT).")
    ] = "minmax",
    test_images: Annotated[
        int | None, typer.Option("--test-images", help="Cap on test images (default: the whole test split).")
    ] = None,
    iterations: Annotated[
        int, typer.Option("--iterations", help="Timed runs per model (interleaved rounds, one thread).")
    ] = 50,
    no_time: Annotated[bool, typer.Option("--no-time", help="Skip the fp32-vs-quantized timing.")] = False,
    exporter: Annotated[
        str, typer.Option("--exporter", help="auto | dynamo | legacy (for MODELs that are exported first).")
    ] = "auto",
    num_classes: NumClassesOpt = None,
    image_size: ImageSizeOpt = None,
    in_chans: InChansOpt = None,
    weights: ModelWeightsOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    json: JsonOpt = False,
) -> None:
    """Quantize MODEL for a runtime, check top-1 against fp32 in that runtime, and time both.

    Exit codes: 0 ok; 1 accuracy control could not reach --max-drop, or a runtime failed; 2 bad input.
    """
    from compress.quantize.api import quantize

    opts = model_options(num_classes=num_classes, image_size=image_size, in_chans=in_chans, weights=weights)
    out = out or default_run_dir("quantize", model, runtime, precision)
    from compress.cli.progress import RichProgress

    res = quantize(
        model,
        out=out,
        runtime=runtime,
        precision=precision,
        data=data,
        calib_images=calib_images,
        max_drop=max_drop,
        method=method,
        test_images=test_images,
        iterations=iterations,
        time=not no_time,
        exporter=exporter,
        seed=seed,
        model_options=opts,
        command=command_line(),
        progress=RichProgress(),  # notes only (accuracy-control steps), dim on stderr
    )
    if json:
        emit_json(res.to_json())
        return
    _print(res)


def _fmt(v: object, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def _print(res: object) -> None:
    from rich.table import Table

    j = res.to_json()  # type: ignore[attr-defined]
    t = Table(title=f"quantize: {j['runtime']} {j['precision']} ({j['calib_images']} calibration images)")
    for col in ("", "fp32", j["precision"]):
        t.add_column(col)
    t.add_row("top-1 (%)", _fmt(j["top1_fp32"]), _fmt(j["top1_quant"]))
    t.add_row("median latency (ms)", _fmt(j["median_ms_fp32"], ".3f"), _fmt(j["median_ms_quant"], ".3f"))
    console.print(t)
    console.print(
        f"drop {_fmt(j['drop_points'])} points, top-1 agreement {_fmt(j['top1_agreement'], '.4f')}, "
        f"speed-up {_fmt(j['speedup'])}x (drift: {j['drift'] or 'not timed'})"
    )
    if j["fp32_layers"]:
        console.print(f"kept in fp32: {', '.join(j['fp32_layers'])}")
    for note in res.details.get("notes", []):  # type: ignore[attr-defined]
        console.print(f"[dim]{note}[/dim]")
    console.print(f"artefact: {j['path']}  (sha256 {j['sha256'][:16]}...)")
