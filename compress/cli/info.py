"""``compress info CKPT``: what a supernet checkpoint holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, console, emit_json
from compress.cli.main import app


@app.command("info")
def info_cmd(
    checkpoint: Annotated[Path, typer.Argument(help="Supernet checkpoint (.safetensors).")], json: JsonOpt = False
) -> None:
    """Family, number of subnets, params/MACs of the min and max subnets, training metrics."""
    from compress.supernet.checkpoint import checkpoint_info

    info = checkpoint_info(checkpoint)
    if json:
        emit_json(info)
        return
    console.print(f"[bold]{info['path']}[/bold]  family [cyan]{info['family']}[/cyan]  ({info['dtype']})")
    console.print(
        f"subnets: {info['num_subnets']:.3e}   resolutions: {info['resolutions']}   width: {info['width_mults']}"
    )
    console.print(
        f"params: {info['params_min'] / 1e6:.3f}M - {info['params_max'] / 1e6:.3f}M   "
        f"MACs: {info['macs_min'] / 1e6:.2f}M - {info['macs_max'] / 1e6:.2f}M"
    )
    for i, s in enumerate(info["stages"]):
        console.print(
            f"  stage {i}: width {s['width']}  depths {s['depths']}  kernels {s['kernels']}  expands {s['expands']}"
        )
    console.print(f"metrics: {info['metrics'] or '-'}")
    if info.get("recipe"):
        console.print(f"recipe: {info['recipe']}")
