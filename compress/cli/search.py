"""``compress search``: the subnet each device should ship, under its latency budget (or the Pareto front)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, OutOpt, ProfilesOpt, SeedOpt, TablesOpt, command_line, console, emit_json
from compress.cli.main import app
from compress.cli.power import PowerModeOpt, devices_at
from compress.core.runs import claim_run_dir
from compress.search.options import SearchOptions, SearchRequest

_D = SearchOptions()  # every default below is read from the options models (held once, shared with YAML/API)
_BATCH = SearchRequest.model_fields["batch"].default


@app.command("search")
def search_cmd(
    device: Annotated[
        list[str],
        typer.Option(
            "--device", "-d", help="Target device (repeat for several: one front and one selected subnet per device)."
        ),
    ],
    latency_ms: Annotated[
        list[float] | None,
        typer.Option("--latency-ms", help="Latency budget in ms (one for all devices, or one per --device)."),
    ] = None,
    pareto: Annotated[
        bool,
        typer.Option(
            "--pareto", help="Return the Pareto front (the default without --latency-ms); selected = its knee."
        ),
    ] = False,
    supernet: Annotated[
        Path | None, typer.Option("--supernet", help="Supernet checkpoint (default: the embedded one).")
    ] = None,
    runtime: Annotated[str | None, typer.Option("--runtime", help="Runtime (default: the device's first).")] = None,
    precision: Annotated[
        str | None, typer.Option("--precision", help="Precision (default: the device's first).")
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size the latency is predicted for.")] = _BATCH,
    max_params: Annotated[int | None, typer.Option("--max-params", help="Upper limit on parameters.")] = None,
    max_macs: Annotated[int | None, typer.Option("--max-macs", help="Upper limit on multiply-accumulates.")] = None,
    channel_multiple: Annotated[
        int | None,
        typer.Option(
            "--channel-multiple", help="Every chosen channel count must be a multiple (e.g. 8 for tensor cores)."
        ),
    ] = None,
    algorithm: Annotated[
        str,
        typer.Option(
            "--algorithm",
            help="A registered searcher: evolution | nsga2 | random (the front always comes from NSGA-II without a budget).",
        ),
    ] = _D.algorithm,
    rerank: Annotated[
        int,
        typer.Option(
            "--rerank",
            help="Evaluate the top K for real (BN recalibration + validation split) and choose by measured top-1.",
        ),
    ] = _D.rerank,
    refine: Annotated[
        int,
        typer.Option(
            "--refine",
            help="Refinement rounds: score the top candidates (5, or --rerank K) for real, add them to the predictor's data, refit and search again.",
        ),
    ] = _D.refine,
    population: Annotated[int, typer.Option("--population", help="Population size (OFA: 100).")] = _D.population,
    generations: Annotated[int, typer.Option("--generations", help="Generations (OFA: 500).")] = _D.generations,
    predictor_samples: Annotated[
        int,
        typer.Option(
            "--predictor-samples",
            help="Subnets evaluated to train the accuracy predictor (cached beside the checkpoint).",
        ),
    ] = _D.predictor_samples,
    predictor_val_images: Annotated[
        int,
        typer.Option(
            "--predictor-val-images",
            help="Validation images the predictor's training subnets are scored on (recorded; 0 = the whole split).",
        ),
    ] = _D.predictor_val_images or 0,
    predictor_calib_images: Annotated[
        int,
        typer.Option(
            "--predictor-calib-images",
            help="Calibration images for their BN recalibration (recorded; 0 = all --calib images).",
        ),
    ] = _D.predictor_calib_images or 0,
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Dataset for BN recalibration/evaluation (default: the checkpoint's)."),
    ] = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json: JsonOpt = False,
    tables: TablesOpt = None,
    profiles: ProfilesOpt = None,
    power_mode: PowerModeOpt = None,
) -> None:
    """Search a supernet for the subnet that fits each device's latency budget.

    Example: compress search --device jetson --latency-ms 8 --supernet supernet.safetensors --out runs/s1
    """
    from compress.cli.progress import RichProgress
    from compress.search.api import search
    from compress.search.result import render_table

    if out is not None:
        claim_run_dir(out, command=command_line())  # one writer per run directory, before any work
    with RichProgress(remaining=True) as progress:
        res = search(
            devices=devices_at(device, power_mode),
            latency_ms=latency_ms or None,
            pareto=pareto,
            supernet=supernet,
            runtime=runtime,
            precision=precision,
            batch=batch,
            seed=seed,
            dataset=dataset,
            tables=tables,
            profiles=profiles,
            options=dict(  # validated into SearchOptions by search() (a bad value is a usage error)
                algorithm=algorithm,
                population=population,
                generations=generations,
                rerank=rerank,
                refine=refine,
                predictor_samples=predictor_samples,
                predictor_val_images=predictor_val_images or None,  # 0 on the command line: the whole split
                predictor_calib_images=predictor_calib_images or None,
                max_params=max_params,
                max_macs=max_macs,
                channel_multiple=channel_multiple,
            ),
            out=out,
            progress=progress,
            command=command_line(),
        )
    render_table(res, console)
    if out is not None:
        png = ", pareto.png" if "pareto_png" in (res.files or {}) else ""  # no figure without [report]
        console.print(f"[dim]wrote {out}/result.json, subnet files, pareto.csv{png}[/dim]")
    if json:
        emit_json(res.to_dict())
