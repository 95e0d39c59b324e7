"""``compress pipeline``: one YAML file -> (train) -> profile -> search -> prune -> export -> bench -> check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, OutOpt, console, emit_json
from compress.cli.main import app


@app.command("pipeline")
def pipeline_cmd(
    pipeline: Annotated[Path, typer.Argument(help="Pipeline YAML (see examples/demo.yaml).")],
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an unfinished run in --out (after a crash).")
    ] = False,
    out: OutOpt = None,
    check_only: Annotated[
        bool,
        typer.Option(
            "--check-only",
            help="Only the preflight: check every input the run "
            "will need (dataset, devices, remote hosts, budgets, output dir, "
            "extras), list all problems with their fixes, run nothing.",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Run a whole pipeline; stages whose inputs did not change are reused from the run directory.

    Exit 0 when every gate holds (or none is configured), 1 when a gate fails, 2 on a usage error.

    Example: compress pipeline examples/demo.yaml --out runs/demo
    (--check-only: exit 0 when the preflight passes, 2 with every problem listed when not.)
    """
    from rich.markup import escape

    from compress.cli.progress import RichProgress
    from compress.pipeline.runner import run_pipeline

    with RichProgress(elapsed=True, note_style=None) as progress:
        res = run_pipeline(pipeline, out=out, resume=resume, console=console, check_only=check_only, progress=progress)
    if check_only:
        if json:
            emit_json(res)
        else:
            pre = res["preflight"]
            console.print(
                f"preflight passed: {len(pre['checks_s'])} checks in {sum(pre['checks_s'].values()):.2f} s "
                f"(nothing was run; {res['run_dir']} untouched)"
            )
        return
    if json:
        emit_json(res)
    else:
        for g in res["gates"]:
            mark = "[green]PASS[/green]" if g["passed"] else "[red]FAIL[/red]"
            console.print(
                f"  {mark} {escape(g['name'])}: measured {g['measured']:.4g} vs threshold {g['threshold']:.4g} "
                f"{g['unit']} (margin {g['margin']:.4g})"
                if g["measured"] is not None
                else f"  {mark} {escape(g['name'])}: {escape(g['detail'])}"
            )
        ran = [k for k, v in res["stages"].items() if not v["cached"]]
        console.print(f"stages run: {', '.join(ran) or 'none (all cached)'}; {res['seconds']:.0f} s")
    verdict = {True: "[green]all gates hold[/green]", False: "[red]gate(s) failed[/red]", None: "no gates configured"}[
        res["passed"]
    ]
    console.print(f"{verdict}; report: {res['report']['html']} (and report.md)")
    if res["passed"] is False:
        raise typer.Exit(1)
