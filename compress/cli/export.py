"""``compress export``: ONNX / OpenVINO IR / TensorRT with preflight before and parity after."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, OutOpt, SeedOpt, command_line, console, emit_json
from compress.cli.main import app


@app.command("export")
def export_cmd(
    model: Annotated[
        str, typer.Argument(help="timm:NAME, a model directory, a search run, or a checkpoint reference.")
    ],
    format: Annotated[
        str, typer.Option("--format", "-f", help="Comma-separated: onnx, openvino (ov), tensorrt (trt, engine).")
    ] = "onnx",
    precision: Annotated[
        str, typer.Option("--precision", help="fp32 | fp16 | bf16 (openvino) | int8 (tensorrt).")
    ] = "fp32",
    batch: Annotated[str, typer.Option("--batch", help="A static batch size, or 'dynamic'.")] = "1",
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset (default 18).")] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Dataset for the top-1 agreement batch (default: the model's own).")
    ] = None,
    samples: Annotated[int, typer.Option("--samples", help="Images in the parity batch.")] = 64,
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
    workspace_mb: Annotated[int, typer.Option("--workspace-mb", help="TensorRT builder workspace limit (MiB).")] = 2048,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Largest batch of a dynamic TensorRT profile.")] = 32,
    exporter: Annotated[
        str, typer.Option("--exporter", help="auto (dynamo, legacy on failure) | dynamo | legacy.")
    ] = "auto",
    simplify: Annotated[
        bool,
        typer.Option(
            "--simplify/--no-simplify", help="Simplify the ONNX with onnxslim (kept only if outputs are unchanged)."
        ),
    ] = True,
    parity: Annotated[
        bool, typer.Option("--parity/--no-parity", help="Compare every runnable artefact with PyTorch.")
    ] = True,
    preflight: Annotated[
        bool, typer.Option("--preflight/--no-preflight", help="Check ops against each target before building.")
    ] = True,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for the runtimes during verification.")
    ] = None,
    num_classes: Annotated[int | None, typer.Option("--num-classes", help="timm:NAME only: classifier size.")] = None,
    image_size: Annotated[int | None, typer.Option("--image-size", help="timm:NAME only: input resolution.")] = None,
    in_chans: Annotated[int | None, typer.Option("--in-chans", help="timm:NAME only: input channels.")] = None,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="timm:NAME only: weights (.safetensors or a weights_only torch file)."),
    ] = None,
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

    cfg = validate(
        ExportConfig,
        {
            "formats": [s for s in format.split(",") if s.strip()],
            "precision": precision,
            "batch": batch,
            "opset": opset,
            "data": data,
            "samples": samples,
            "remote": remote,
            "dla_core": dla,
            "dla_gpu_fallback": dla_gpu_fallback,
            "trt_version": trt_version,
            "workspace_mb": workspace_mb,
            "max_batch": max_batch,
            "exporter": exporter,
            "simplify": simplify,
            "parity": parity,
            "preflight": preflight,
            "threads": threads,
            "seed": seed,
        },
        source="compress export",
    )
    model_options = {
        k: v
        for k, v in {
            "num_classes": num_classes,
            "image_size": image_size,
            "in_chans": in_chans,
            "weights": weights,
        }.items()
        if v is not None
    }
    if out is None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model.rstrip("/")).name or model).strip("-") or "model"
        out = Path("runs") / f"export-{slug}"
    from compress.export.formats import resolve_formats

    names = [f.name for f in resolve_formats(cfg.formats)]
    console.print(f"exporting {model} -> {', '.join(names)} ({cfg.precision}, batch {cfg.batch}) into {out}")
    result = export_model(model, out=out, config=cfg, model_options=model_options, command=command_line())
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
