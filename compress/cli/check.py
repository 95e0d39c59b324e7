"""``compress check``: release gates with exit codes (0 pass, 1 fail, 2 usage error) and JUnit XML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from compress.cli.common import JsonOpt, console, emit_json
from compress.cli.main import app


@app.command("check")
def check_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A `compress pipeline` run directory.")],
    baseline: Annotated[
        Path | None, typer.Option("--baseline", help="Baseline run directory for regression gates.")
    ] = None,
    max_latency_ms: Annotated[
        float | None, typer.Option("--max-latency-ms", help="Latency budget (with --device).")
    ] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="Device whose benchmark --max-latency-ms gates.")
    ] = None,
    min_top1: Annotated[float | None, typer.Option("--min-top1", help="Minimum final top-1 (%).")] = None,
    max_top1_drop: Annotated[
        float | None, typer.Option("--max-top1-drop", help="Maximum top-1 drop from pruning (points).")
    ] = None,
    max_parity_err: Annotated[
        float | None, typer.Option("--max-parity-err", help="Maximum relative parity error of any exported format.")
    ] = None,
    max_quant_drop: Annotated[
        float | None,
        typer.Option("--max-quant-drop", help="Maximum top-1 drop from quantization (points, worst runtime)."),
    ] = None,
    max_latency_regression_pct: Annotated[
        float | None,
        typer.Option(
            "--max-latency-regression-pct",
            help="Allowed latency regression vs --baseline beyond measurement noise (%).",
        ),
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML (one test case per gate).")] = None,
    json: JsonOpt = False,
) -> None:
    """Check release gates on a run; exit 0 when all hold, 1 when any fails."""
    from rich.markup import escape

    from compress.pipeline.check import check, verify_finished

    for d in (run_dir, baseline):  # a running, failed or mixed-up run directory has no gates to check
        if d is not None:
            verify_finished(d)
    res = check(
        run_dir,
        baseline=baseline,
        max_latency_ms=max_latency_ms,
        device=device,
        min_top1=min_top1,
        max_top1_drop=max_top1_drop,
        max_parity_err=max_parity_err,
        max_latency_regression_pct=max_latency_regression_pct,
        max_quant_drop=max_quant_drop,
        junit=junit,
    )
    if json:
        emit_json(res)
    else:
        t = Table(title=f"gates: {run_dir}")
        for c in ("gate", "result", "measured", "threshold", "margin", "detail"):
            t.add_column(c)
        for g in res["gates"]:
            fmt = lambda v: "-" if v is None else f"{v:.4g}"  # noqa: E731
            t.add_row(
                escape(g["name"]),
                "[green]PASS[/green]" if g["passed"] else "[red]FAIL[/red]",
                fmt(g["measured"]),
                fmt(g["threshold"]),
                fmt(g["margin"]),
                escape(g["detail"]),
            )
        console.print(t)
        console.print("[green]all gates hold[/green]" if res["passed"] else "[red]gate(s) failed[/red]")
    if not res["passed"]:
        raise typer.Exit(1)
