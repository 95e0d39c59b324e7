"""``compress devices``: the known target devices and where their latency numbers come from."""

from __future__ import annotations

from rich.table import Table

from compress.cli.common import JsonOpt, ProfilesOpt, TablesOpt, console, emit_json
from compress.cli.main import app


@app.command("devices")
def devices_cmd(json: JsonOpt = False, profiles: ProfilesOpt = None, tables: TablesOpt = None) -> None:
    """List device profiles: name, aliases, kind, default runtime and latency source."""
    from compress.hardware.profile import devices

    infos = devices(profiles_dir=profiles, tables_dir=tables)
    if json:
        emit_json([i.model_dump() for i in infos])
        return
    t = Table(title="Devices", show_lines=False)
    for col in ("name", "aliases", "kind", "default runtime", "runtimes", "latency"):
        t.add_column(col)
    for i in infos:
        src = f"measured ({', '.join(i.measured_runtimes)})" if i.measured_runtimes else "estimated"
        t.add_row(i.name, ", ".join(i.aliases), i.kind, i.default_runtime, ", ".join(i.runtimes), src)
    console.print(t)
    console.print("[dim]estimated = roofline from datasheet figures; measure with `compress profile --device NAME`.[/dim]")
