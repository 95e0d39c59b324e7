"""``compress latency validate|predict``: check a latency table against measurement, or use it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, OutOpt, ProfilesOpt, SeedOpt, TablesOpt, command_line, console, emit_json
from compress.cli.main import app
from compress.cli.power import PowerModeOpt, device_at

latency_app = typer.Typer(help="Latency tables: validate against measurement, predict subnets.", no_args_is_help=True)
app.add_typer(latency_app, name="latency")

DeviceOpt = Annotated[str, typer.Option("--device", "-d", help="Device profile (see `compress devices`).")]
RuntimeOpt = Annotated[
    str | None,
    typer.Option("--runtime", "-r", help="onnxruntime|openvino|tensorrt|torch (default: the device's first)."),
]
PrecisionOpt = Annotated[
    str | None, typer.Option("--precision", help="fp32|fp16|bf16|int8 (default: the device's first).")
]
SupernetOpt = Annotated[
    str | None, typer.Option("--supernet", help="Supernet checkpoint or family name (default: the embedded supernet).")
]


@latency_app.command("validate")
def validate_cmd(
    device: DeviceOpt = "local-cpu",
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = None,
    supernet: SupernetOpt = None,
    samples: Annotated[
        int, typer.Option("--samples", "-n", help="Random subnets measured end to end (each twice).")
    ] = 20,
    batch: Annotated[int, typer.Option("--batch", help="Batch size of the table.")] = 1,
    resolution: Annotated[
        str | None, typer.Option("--resolution", help="Sample subnets only at these input sizes (comma-separated).")
    ] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for the runtime.")] = None,
    iterations: Annotated[int, typer.Option("--iterations", help="Timed runs per subnet and pass.")] = 30,
    tables: TablesOpt = None,
    profiles: ProfilesOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json_out: JsonOpt = False,
    power_mode: PowerModeOpt = None,
) -> None:
    """Measure random subnets and report how well the table predicts them (and the noise)."""
    device = device_at(device, power_mode)
    from compress.cli.profile import parse_resolutions
    from compress.cli.progress import RichProgress
    from compress.latency.validate import validate

    with RichProgress(label="validate") as progress:
        res = validate(
            device=device,
            runtime=runtime,
            precision=precision,
            supernet=supernet,
            batch=batch,
            samples=samples,
            resolutions=parse_resolutions(resolution),
            tables=tables,
            profiles=profiles,
            threads=threads,
            iterations=iterations,
            seed=seed,
            out=out,
            command=command_line(),
            progress=progress,
        )
    if json_out:
        emit_json(res)
        return
    from rich.table import Table

    t = Table(title=f"{res['device']} / {res['runtime']} / {res['precision']}: {res['samples']} subnets")
    for col in ("predictor", "within ±10%", "MAPE %", "Spearman"):
        t.add_column(col)
    for name, m in (
        ("calibrated table", res),
        ("uncalibrated sum", res["uncalibrated"]),
        ("roofline (estimated)", res["roofline"]),
    ):
        t.add_row(name, f"{m['within_10pct']:.0%}", f"{m['mape']:.1f}", f"{m['spearman']:.3f}")
    console.print(t)
    console.print(
        f"measurement noise: repeatability MAPE {res['repeatability_mape']:.1f}%, two passes agree within "
        f"±10% for {res['noise_ceiling_within_10pct']:.0%} of subnets; drift: {res['drift']['status']}"
    )
    if "warning" in res:
        console.print(f"[yellow]warning:[/] {res['warning']}")
    if res.get("scatter_png"):
        console.print(f"scatter: {res['scatter_png']}")


@latency_app.command("predict")
def predict_cmd(
    config: Annotated[
        Path | None,
        typer.Argument(help="Subnet config JSON (our layout or OFA's ks/e/d/r); default: min and max subnets."),
    ] = None,
    device: DeviceOpt = "local-cpu",
    runtime: RuntimeOpt = None,
    precision: PrecisionOpt = None,
    supernet: SupernetOpt = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size of the table.")] = 1,
    breakdown: Annotated[bool, typer.Option("--breakdown", help="Per-layer entries.")] = False,
    tables: TablesOpt = None,
    profiles: ProfilesOpt = None,
    json_out: JsonOpt = False,
    power_mode: PowerModeOpt = None,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="gpu | dla: price one DLA core (Jetson AGX Orin / Orin NX; an uncalibrated estimate, never a table).",
        ),
    ] = "gpu",
) -> None:
    """Predicted latency of a subnet from the device's table (or the roofline estimate)."""
    from compress.core.runs import read_json
    from compress.latency.predict import LatencyModel
    from compress.latency.spaces import resolve_space

    device = device_at(device, power_mode)
    space = resolve_space(supernet)
    if engine == "gpu":
        model = LatencyModel.load(
            device=device,
            runtime=runtime,
            precision=precision,
            batch=batch,
            space=space,
            tables=tables,
            profiles=profiles,
        )
    else:
        model = _dla_model(device, runtime, precision, batch, space, profiles, engine)
    if config is not None:
        data = read_json(config, what="subnet config")
        data = data.get("config", data) if isinstance(data, dict) else data
        cfgs = {"subnet": space.config_from_dict(data)}
    else:
        cfgs = {"min": space.min_config(), "max": space.max_config()}
    out = {"model": model.info(), "predictions": {}}
    for name, cfg in cfgs.items():
        entry = {
            "config": cfg.to_dict(),
            "latency_ms": model.predict(cfg),
            "uncalibrated_ms": float(model.predict_sum_genes(space.to_genes(cfg))[0]),
        }
        if breakdown:
            entry["layers"] = model.breakdown(cfg)
        out["predictions"][name] = entry
    if engine != "gpu":
        out["model"]["engine"] = engine
    if json_out:
        emit_json(out)
        return
    info = out["model"]
    label = info.get("estimate_note") or model.source
    mode = (
        f" at power mode {info['power_mode']}{' (default)' if info.get('power_mode_is_default') else ''}"
        if info.get("power_mode") and model.source != "estimated"
        else ""
    )
    for name, e in out["predictions"].items():
        console.print(
            f"{name}: {e['latency_ms']:.3f} ms ({label}{mode}; uncalibrated sum {e['uncalibrated_ms']:.3f} ms)"
        )
        for layer in e.get("layers", []):
            console.print(f"  {layer['layer']:<20} {layer['ms']:8.4f} ms  {layer['source']:<12} {layer['signature']}")


def _dla_model(
    device: str,
    runtime: str | None,
    precision: str | None,
    batch: int,
    space: object,
    profiles: Path | None,
    engine: str,
) -> object:
    """A roofline model of one DLA core (no tables: DLA latency is estimated only)."""
    from compress.core.errors import UsageError, unknown
    from compress.hardware import get_profile
    from compress.latency.predict import LatencyModel
    from compress.latency.roofline import estimate_note

    if engine != "dla":
        raise unknown("engine", engine, ("gpu", "dla"))
    prof = get_profile(device, profiles_dir=profiles)
    if prof.dla is None:
        raise UsageError(f"device '{prof.name}' has no DLA (the Orin Nano has none); use --engine gpu")
    prec = precision or ("int8" if "int8" in prof.dla.precisions else prof.dla.precisions[0])
    if prec not in prof.dla.precisions:
        raise UsageError(
            f"the DLA of {prof.name} runs {', '.join(prof.dla.precisions)}, not {prec}; choose --precision "
            f"{prof.dla.precisions[0]}"
        )
    model = LatencyModel.from_roofline(
        space, prof, runtime=prof.check_runtime(runtime), precision=prec, batch=batch, engine="dla"
    )
    console.print(
        f"[yellow]warning:[/] {estimate_note(prof, engine='dla')}: DLA layers it cannot run fall back to "
        "the GPU; the built engine's layer report (export --dla-core) says which"
    )
    info = model.info
    model.info = lambda: {
        **info(),
        "estimate_note": estimate_note(prof, engine="dla"),  # type: ignore[method-assign]
        "estimate_calibration": None,
    }
    return model


@latency_app.command("calibrate-published")
def calibrate_published_cmd(
    rows: Annotated[
        Path | None,
        typer.Option(
            "--rows",
            help="Published-latency YAML (default: the shipped hardware_profiles/published/jetson_mlperf.yaml).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Calibration file to write (default: the shipped hardware_profiles/calibration/jetson-orin-gpu.yaml).",
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Fit and report; write nothing.")] = False,
    profiles: ProfilesOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-fit the Jetson GPU roofline (efficiency scale, per-layer cycles) to the published rows.

    Run it after adding a row to the published file; `compress devices --check-estimates` shows the result.
    """
    from compress.latency.published import calibrate, calibration_path, load_rows, rows_path, write_calibration

    rp = rows_path(rows)
    cal = calibrate(
        load_rows(rows),
        rows_file=str(rows) if rows else "hardware_profiles/published/jetson_mlperf.yaml",
        profiles_dir=profiles,
    )
    target = out or calibration_path(cal.name)
    if not dry_run:
        write_calibration(cal, target)
    if json_out:
        emit_json({**cal.model_dump(mode="json"), "written": None if dry_run else str(target)})
        return
    console.print(
        f"fitted to {len(cal.rows)} rows of {rp} ({cal.configurations} device/mode configurations): "
        f"efficiency x{cal.efficiency_scale:.3f} of the defaults, {cal.layer_overhead_cycles:.0f} GPU cycles "
        f"per layer; max error {cal.fit_max_error_pct:.1f}% in sample, "
        + (f"{cal.loo_max_error_pct:.1f}% leave-one-out" if cal.loo_max_error_pct is not None else "no leave-one-out")
    )
    console.print("wrote nothing (--dry-run)" if dry_run else f"wrote {target}")
