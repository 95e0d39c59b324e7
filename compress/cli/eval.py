"""``compress eval``: per-subnet top-1 of a trained supernet after BN recalibration."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, OutOpt, SeedOpt, console, emit_json
from compress.cli.main import app


@app.command("eval")
def eval_cmd(
    ckpt: Annotated[
        str | None,
        typer.Argument(
            help="Supernet checkpoint (.safetensors), a search run's subnet.json, or omitted for the default supernet."
        ),
    ] = None,
    data: Annotated[
        str, typer.Option("--data", help="Dataset (fashion-mnist, digits, mnist5k, imagefolder:PATH).")
    ] = "fashion-mnist",
    subnets: Annotated[
        str, typer.Option("--subnets", help="Comma-separated: min, max, random:N, or a subnet JSON file.")
    ] = "min,max",
    split: Annotated[str, typer.Option("--split", help="Split to score: test, val, train or calib.")] = "test",
    calib_size: Annotated[int, typer.Option("--calib-size", help="Training images for BN recalibration.")] = 1024,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json: JsonOpt = False,
) -> None:
    """Top-1 of each subnet (BN recalibrated on training images) with params and MACs."""
    from compress.train.evaluate import evaluate_supernet

    rows = evaluate_supernet(ckpt, data=data, subnets=subnets, split=split, seed=seed, calib_size=calib_size)
    if out is not None:
        from compress.cli.common import command_line
        from compress.core.runs import RunDir

        run = RunDir(out, command=command_line(), seeds={"seed": seed})
        if ckpt and Path(ckpt).is_file():
            run.add_input("checkpoint", ckpt)
        run.write_json("eval.json", rows)
        run.save_manifest()
    if json:
        emit_json(rows)
        return
    from rich.table import Table

    t = Table(title=f"top-1 on {data} {split} (BN recalibrated on {calib_size} training images)")
    for col in ("subnet", "top-1 %", "params", "MACs", "config"):
        t.add_column(col)
    for r in rows:
        c = r["config"]
        desc = f"r{c['resolution']} w{c['width']:g} d{''.join(map(str, c['depths']))}"
        t.add_row(r["name"], f"{100 * r['top1']:.2f}", f"{r['params']:,}", f"{r['macs']:,}", desc)
    console.print(t)
