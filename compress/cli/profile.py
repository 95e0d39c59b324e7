"""``compress profile``: measure a per-device latency table for a supernet's search space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, ProfilesOpt, SeedOpt, TablesOpt, console, emit_json
from compress.cli.main import app
from compress.cli.power import PowerModeOpt, device_at


def parse_resolutions(text: str | None) -> list[int] | None:
    from compress.core.errors import UsageError

    if not text:
        return None
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise UsageError(f"--resolution takes comma-separated integers (e.g. 224 or 160,224), got '{text}'") from None


@app.command("profile")
def profile_cmd(
    device: Annotated[
        str, typer.Option("--device", "-d", help="Device profile (see `compress devices`).")
    ] = "local-cpu",
    power_mode: PowerModeOpt = None,
    runtime: Annotated[
        str | None,
        typer.Option("--runtime", "-r", help="onnxruntime|openvino|tensorrt|torch (default: the device's first)."),
    ] = None,
    precision: Annotated[
        str | None, typer.Option("--precision", help="fp32|fp16|bf16|int8 (default: the device's first).")
    ] = None,
    supernet: Annotated[
        str | None,
        typer.Option("--supernet", help="Supernet checkpoint or family name (default: the embedded supernet)."),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size the table is measured at.")] = 1,
    resolution: Annotated[
        str | None, typer.Option("--resolution", help="Only blocks of subnets at these input sizes (comma-separated).")
    ] = None,
    merged: Annotated[
        bool, typer.Option("--merged", help="Also measure the merged block forms depth pruning may choose.")
    ] = False,
    remote: Annotated[
        str | None, typer.Option("--remote", help="Measure on user@host[:port] over SSH (your ~/.ssh/config and keys).")
    ] = None,
    ssh_config: Annotated[
        Path | None,
        typer.Option("--ssh-config", help="ssh config file instead of ~/.ssh/config (also COMPRESS_SSH_CONFIG)."),
    ] = None,
    remote_python: Annotated[
        str, typer.Option("--remote-python", help="Python on the remote device (needs numpy and the runtime).")
    ] = "python3",
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads for the runtime (default: the runtime's).")
    ] = None,
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="Timed runs per block.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed runs per block.")] = 5,
    estimator: Annotated[
        str,
        typer.Option(
            "--estimator",
            help="median|p10|min|mean: the value a table entry predicts with (p10: robust to preemption).",
        ),
    ] = "p10",
    calibrate: Annotated[
        int, typer.Option("--calibrate", help="Whole subnets measured end to end to calibrate the sum (0: skip).")
    ] = 20,
    tables: TablesOpt = None,
    profiles: ProfilesOpt = None,
    seed: SeedOpt = 0,
    lock_wait: Annotated[
        float,
        typer.Option(
            "--lock-wait",
            help="Seconds to wait for another run measuring the same table (then its entries are kept and only the rest measured).",
        ),
    ] = 600.0,
    json_out: JsonOpt = False,
) -> None:
    """Measure every block the search space can produce on the device's runtime (resumable)."""
    device = device_at(device, power_mode)  # DEVICE@MODE: validated where the profile is resolved
    from dataclasses import asdict

    from compress.cli.progress import RichProgress
    from compress.latency.profile import profile_table

    with RichProgress(label="profile", elapsed=True) as progress:
        res = profile_table(
            device=device,
            runtime=runtime,
            precision=precision,
            supernet=supernet,
            batch=batch,
            resolutions=parse_resolutions(resolution),
            merged=merged,
            remote=remote,
            ssh_config=ssh_config,
            remote_python=remote_python,
            tables=tables,
            threads=threads,
            iterations=iterations,
            warmup=warmup,
            estimator=estimator,
            calibrate=calibrate,
            seed=seed,
            progress=progress,
            profiles=profiles,
            lock_wait=lock_wait,
        )
    if json_out:
        emit_json(asdict(res))
        return
    console.print(f"table: {res.path}")
    console.print(
        f"{res.signatures} block signatures: {res.measured_now} measured now, "
        f"{res.already_measured} already in the table ({res.wall_s:.0f} s)"
    )
    d = res.drift or {}
    if d:
        console.print(f"drift: {d.get('status')} - {d.get('note')}")
    if res.calibration:
        c = res.calibration
        console.print(
            f"calibration: {c['model']} on {c['samples']} subnets, leave-one-out MAPE {c['loo_mape']:.1f}% "
            f"(uncalibrated sum {c['uncalibrated_mape']:.1f}%)"
        )
    for n in res.notes:
        console.print(f"[yellow]note:[/] {n}")
