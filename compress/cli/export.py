"""``compress export``: ONNX / OpenVINO IR / TensorRT with preflight before and parity after."""

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


def _default(name: str) -> str:
    """ExportConfig's default for ``name``, for the help text (the model holds it, the CLI shows it)."""
    from compress.export.context import ExportConfig

    f = ExportConfig.model_fields[name]
    v = f.get_default(call_default_factory=True)
    return ",".join(v) if isinstance(v, list) else str(v)


@app.command("export")
def export_cmd(
    model: Annotated[
        str, typer.Argument(help="timm:NAME, a model directory, a search run, or a checkpoint reference.")
    ],
    format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            help=f"Comma-separated: onnx, openvino (ov), tensorrt (trt, engine) (default {_default('formats')}).",
        ),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help=f"fp32 | fp16 | bf16 (openvino) | int8 (tensorrt) (default {_default('precision')}).",
        ),
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option("--batch", help=f"A static batch size, or 'dynamic' (default {_default('batch')})."),
    ] = None,
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset (default 18).")] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Dataset for the top-1 agreement batch (default: the model's own).")
    ] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", help=f"Images in the parity batch (default {_default('samples')}).")
    ] = None,
    remote: Annotated[
        str | None, typer.Option("--remote", help="user@host: build the TensorRT engine there over SSH.")
    ] = None,
    dla: Annotated[
        int | None, typer.Option("--dla", help="Build the TensorRT engine for this DLA core (Jetson).")
    ] = None,
    dla_gpu_fallback: Annotated[
        bool, typer.Option("--dla-gpu-fallback", help="Let layers the DLA cannot run use the GPU.")
    ] = False,
    trt_version: Annotated[
        str | None,
        typer.Option("--trt-version", help="TensorRT version to preflight against (default: installed, else 10)."),
    ] = None,
    workspace_mb: Annotated[
        int | None,
        typer.Option(
            "--workspace-mb", help=f"TensorRT builder workspace limit (MiB) (default {_default('workspace_mb')})."
        ),
    ] = None,
    max_batch: Annotated[
        int | None,
        typer.Option(
            "--max-batch", help=f"Largest batch of a dynamic TensorRT profile (default {_default('max_batch')})."
        ),
    ] = None,
    exporter: Annotated[
        str | None,
        typer.Option(
            "--exporter", help=f"auto (dynamo, legacy on failure) | dynamo | legacy (default {_default('exporter')})."
        ),
    ] = None,
    simplify: Annotated[
        bool | None,
        typer.Option(
            "--simplify/--no-simplify",
            help="Simplify the ONNX with onnxslim (kept only if outputs are unchanged; default on).",
        ),
    ] = None,
    parity: Annotated[
        bool | None,
        typer.Option("--parity/--no-parity", help="Compare every runnable artefact with PyTorch (default on)."),
    ] = None,
    preflight: Annotated[
        bool | None,
        typer.Option("--preflight/--no-preflight", help="Check ops against each target before building (default on)."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for the runtimes during verification.")
    ] = None,
    num_classes: NumClassesOpt = None,
    image_size: ImageSizeOpt = None,
    in_chans: InChansOpt = None,
    weights: ModelWeightsOpt = None,
    out: OutOpt = None,
    seed: SeedOpt = 0,
    json: JsonOpt = False,
) -> None:
    """Export MODEL to ONNX / OpenVINO IR / TensorRT, with preflight before and parity after.

    Exit codes: 0 ok; 1 preflight, export or parity failed (the numbers are printed); 2 bad input.
    """
    from compress.core.config import validate
    from compress.export.api import export_model
    from compress.export.context import ExportConfig
    from compress.export.formats import resolve_formats

    given = {
        "formats": [s for s in format.split(",") if s.strip()] if format is not None else None,
        "precision": precision,
        "batch": batch,
        "opset": opset,
        "data": data,
        "samples": samples,
        "remote": remote,
        "dla_core": dla,
        "dla_gpu_fallback": dla_gpu_fallback or None,  # a flag: absent means the model's default
        "trt_version": trt_version,
        "workspace_mb": workspace_mb,
        "max_batch": max_batch,
        "exporter": exporter,
        "simplify": simplify,
        "parity": parity,
        "preflight": preflight,
        "threads": threads,
        "seed": seed,
    }
    cfg = validate(ExportConfig, {k: v for k, v in given.items() if v is not None}, source="compress export")
    opts = model_options(num_classes=num_classes, image_size=image_size, in_chans=in_chans, weights=weights)
    out = out or default_run_dir("export", model)
    names = [f.name for f in resolve_formats(cfg.formats)]
    console.print(f"exporting {model} -> {', '.join(names)} ({cfg.precision}, batch {cfg.batch}) into {out}")
    result = export_model(model, out=out, config=cfg, model_options=opts, command=command_line())
    if json:
        emit_json(result.to_json())
    else:
        _print_table(result)
    result.raise_for_failure()


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _print_table(result: object) -> None:
    from rich.table import Table

    t = Table(title=f"export ({result.parity_inputs or 'no parity'})")  # type: ignore[attr-defined]
    for col in ("format", "artefact", "max abs err", "max rel err", "top-1 agree", "parity"):
        t.add_column(col)
    for f in result.formats:  # type: ignore[attr-defined]
        status = {True: "[green]passed[/green]", False: "[red]FAILED[/red]", None: "not run here"}[f["passed"]]
        t.add_row(
            f["format"], f["path"], _fmt(f["max_abs_err"]), _fmt(f["max_rel_err"]), _fmt(f["top1_agreement"]), status
        )
    console.print(t)
    for f in result.formats:  # type: ignore[attr-defined]
        for note in f["notes"]:
            console.print(f"[dim]{f['format']}: {note}[/dim]")
    console.print(f"manifest: {result.out / 'manifest.json'}")  # type: ignore[attr-defined]
