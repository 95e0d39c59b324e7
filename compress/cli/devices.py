"""``compress devices``: the known target devices and where their latency numbers come from."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from compress.cli.common import JsonOpt, ProfilesOpt, TablesOpt, console, emit_json
from compress.cli.main import app
from compress.cli.power import PowerModeOpt


@app.command("devices")
def devices_cmd(
    name: Annotated[str | None, typer.Argument(help="One device: its power modes and figures (with sources).")] = None,
    power_mode: PowerModeOpt = None,
    check_estimates: Annotated[
        bool,
        typer.Option(
            "--check-estimates",
            help="Hold the roofline estimate against the published batch-1 latencies "
            "(per row: estimate, published, ratio, leave-one-out).",
        ),
    ] = False,
    json: JsonOpt = False,
    profiles: ProfilesOpt = None,
    tables: TablesOpt = None,
) -> None:
    """List device profiles: name, aliases, kind, default runtime, power modes and latency source."""
    from compress.cli.power import render_check
    from compress.hardware.profile import devices, get_profile

    if check_estimates:
        from compress.latency.published import check_estimates as check

        res = check(profiles_dir=profiles)
        if json:
            emit_json(res)
        else:
            render_check(res, console)
        return
    if name is not None or power_mode:
        if name is None:
            from compress.core.errors import UsageError

            raise UsageError("--power-mode needs a device: compress devices NAME --power-mode MODE")
        prof = get_profile(name, power_mode=power_mode, profiles_dir=profiles)
        _show_one(prof, json=json)
        return
    infos = devices(profiles_dir=profiles, tables_dir=tables)
    if json:
        emit_json([i.model_dump() for i in infos])
        return
    t = Table(title="Devices", show_lines=False)
    for col in ("name", "aliases", "kind", "default runtime", "runtimes", "power modes", "latency"):
        t.add_column(col)
    for i in infos:
        src = f"measured ({', '.join(i.measured_runtimes)})" if i.measured_runtimes else "estimated"
        modes = ", ".join(m + ("*" if m == i.default_power_mode else "") for m in i.power_modes) or "-"
        t.add_row(i.name, ", ".join(i.aliases), i.kind, i.default_runtime, ", ".join(i.runtimes), modes, src)
    console.print(t)
    console.print(
        "[dim]estimated = roofline from datasheet figures; measure with `compress profile --device NAME`. "
        "* = default power mode; one device's modes: `compress devices NAME`.[/dim]"
    )


def _show_one(prof, *, json: bool) -> None:  # noqa: ANN001 - a HardwareProfile
    from compress.cli.power import mode_rows, render_modes
    from compress.hardware.modes import current_mode, mode_label
    from compress.latency.roofline import estimate_info

    info = {
        "name": prof.name,
        "aliases": prof.aliases,
        "description": prof.description,
        "kind": prof.kind,
        "power_mode": prof.power_mode,
        "power_mode_label": mode_label(prof),
        "power_modes": mode_rows(prof),
        "spec": prof.spec.model_dump() if prof.spec else None,
        "dla": prof.dla.model_dump() if prof.dla else None,
        "calibration": prof.calibration,
    }
    cur = current_mode(prof)
    if prof.spec is not None and (cur is None or cur.gpu_clock_mhz or cur.peak):
        info.update(estimate_info(prof))
    if json:
        emit_json(info)
        return
    console.print(f"[bold]{prof.name}[/bold]: {prof.description}")
    cur = current_mode(prof)
    if cur is not None and not (cur.gpu_clock_mhz or cur.peak):
        render_modes(prof, console)
        console.print(
            f"[yellow]{prof.name} at {cur.name}: no published clocks or peaks, so latency is not estimated "
            f"at this mode[/yellow] (measure a table: `compress profile --device {prof.name} --power-mode "
            f"{cur.name} --remote user@host`)"
        )
        return
    if prof.power_modes:
        render_modes(prof, console)
        console.print(
            f"at {mode_label(prof)}: "
            + ", ".join(f"{p} {f.value:g} {f.unit}" for p, f in (prof.spec.peak.items() if prof.spec else []))
            + (f", {prof.spec.memory_bandwidth.value:g} GB/s" if prof.spec else "")
        )
    if prof.dla is not None:
        console.print(
            f"DLA: {prof.dla.cores} cores, {', '.join(prof.dla.precisions)} - its own engine, not in the GPU "
            f"peak (`compress latency predict --engine dla`); {prof.dla.note or ''}"
        )
    if prof.spec is not None and info.get("estimate_note"):
        console.print(f"latency estimates: {info['estimate_note']}")
