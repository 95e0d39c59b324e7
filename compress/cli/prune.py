"""``compress prune``: depth pruning with block merging (UPDP) or dynamic channel gating (FTWT)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, get_args

import typer

from compress.cli.common import JsonOpt, OutOpt, ProfilesOpt, SeedOpt, TablesOpt, command_line, console, emit_json
from compress.cli.main import app
from compress.core.errors import UsageError
from compress.core.runs import claim_run_dir
from compress.prune.ftwt import DEFAULT_MASS
from compress.prune.updp.options import UpdpOptions


class Method(str, Enum):
    updp = "updp"
    ftwt = "ftwt"


# the scorers UPDP knows, named once (compress.prune.updp.options.UpdpOptions.selection)
Selection = Enum("Selection", {v: v for v in get_args(UpdpOptions.model_fields["selection"].annotation)}, type=str)  # type: ignore[misc]


class Mode(str, Enum):
    decoupled = "decoupled"
    joint = "joint"


_ONLY = {
    "updp": ("--blocks", "--latency-ms", "--device", "--runtime", "--teacher", "--selection", "--tables", "--profiles"),
    "ftwt": ("--mass", "--mode"),
}


@app.command("prune")
def prune_cmd(
    method: Annotated[Method, typer.Option("--method", help="updp (merge blocks) or ftwt (dynamic channel gating).")],
    model: Annotated[
        str,
        typer.Option(
            "--model",
            help="timm:NAME, your own model as path/to/file.py:factory (+ --weights), a model directory, a supernet checkpoint (+ --subnet), a search run, or efficientnet-lite0.",
        ),
    ],
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="Dataset name (digits, mnist5k, fashion-mnist, imagefolder:PATH); needed unless --list-blocks.",
        ),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Fine-tuning epochs; needed unless --list-blocks.")
    ] = None,
    subnet: Annotated[str | None, typer.Option("--subnet", help="Subnet config (with a supernet checkpoint).")] = None,
    weights: Annotated[
        Path | None,
        typer.Option("--weights", help="Weights for timm:NAME or file.py:factory (safetensors or a torch state_dict)."),
    ] = None,
    list_blocks: Annotated[
        bool,
        typer.Option(
            "--list-blocks",
            help="[updp] list every candidate block and every block left intact with the reason, then exit (no --data/--epochs needed).",
        ),
    ] = False,
    blocks: Annotated[int | None, typer.Option("--blocks", help="[updp] number of blocks to prune.")] = None,
    latency_ms: Annotated[
        float | None, typer.Option("--latency-ms", help="[updp] latency budget in ms on --device.")
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="[updp] target device (default local-cpu, measured here; another device: its latency table, `compress profile --merged`, for supernet subnets).",
        ),
    ] = None,
    runtime: Annotated[
        str | None, typer.Option("--runtime", help="[updp] runtime on the device (default: the device's first).")
    ] = None,
    teacher: Annotated[
        str | None, typer.Option("--teacher", help="[updp] KD teacher (default: the unpruned model).")
    ] = None,
    selection: Annotated[
        Selection | None,
        typer.Option(
            "--selection",
            help="[updp] block scorer: proxy (default, no training) or supernet (trains a weight-sharing network with random K-block masks; ranks masks better, ~2.5x the cost).",
        ),
    ] = None,
    mass: Annotated[
        float | None,
        typer.Option("--mass", help=f"[ftwt] heatmap mass r kept by the masks, in (0, 1] (default {DEFAULT_MASS})."),
    ] = None,
    mode: Annotated[Mode | None, typer.Option("--mode", help="[ftwt] decoupled or joint (default decoupled).")] = None,
    tables: TablesOpt = None,
    profiles: ProfilesOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json: JsonOpt = False,
) -> None:
    """Prune a model: UPDP merges whole blocks into single convs (`--blocks K` or `--latency-ms X`);
    FTWT trains per-layer channel gates (`--mass`)."""
    given = {
        "--blocks": blocks,
        "--latency-ms": latency_ms,
        "--device": device,
        "--runtime": runtime,
        "--teacher": teacher,
        "--selection": selection,
        "--tables": tables,
        "--profiles": profiles,
        "--mass": mass,
        "--mode": mode,
    }
    other = "ftwt" if method.value == "updp" else "updp"
    wrong = [k for k in _ONLY[other] if given[k] is not None]
    if wrong:
        raise UsageError(
            f"{', '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply to --method {method.value} "
            f"(only to --method {other}); remove {'it' if len(wrong) == 1 else 'them'}"
        )
    from compress.prune import prune

    if list_blocks:
        if method is not Method.updp:
            raise UsageError("--list-blocks applies to --method updp only")
        from compress.prune.updp.api import list_blocks as _list

        listing = _list(model=model, data=data, weights=str(weights) if weights else None, subnet=subnet)
        if json:
            emit_json(listing)
        else:
            _print_blocks(listing)
        return
    missing = [k for k, v in (("--data", data), ("--epochs", epochs)) if v is None]
    if missing:
        raise UsageError(f"compress prune needs {' and '.join(missing)} (or --list-blocks to only list the blocks)")
    if out is not None:
        claim_run_dir(out, command=command_line())  # one writer per run directory, before any work
    if method is Method.updp:
        from compress.prune.updp.options import options_from

        given_opts = dict(
            epochs=epochs,
            blocks=blocks,
            latency_ms=latency_ms,
            device=device,
            runtime=runtime,
            teacher=teacher,
            selection=selection.value if selection else None,
        )
        opts = dict(
            model=model,
            data=data,
            options=options_from(None, {k: v for k, v in given_opts.items() if v is not None}),
            weights=str(weights) if weights else None,
            subnet=subnet,
            seed=seed,
            out=out,
            tables=tables,
            profiles=profiles,
            progress=lambda msg: console.print(f"[dim]updp:[/dim] {msg}"),
        )
    else:
        opts = dict(
            model=model,
            subnet=subnet,
            weights=str(weights) if weights else None,
            data=data,
            epochs=epochs,
            mass=mass,  # None: FTWT's own default (compress.prune.ftwt.DEFAULT_MASS)
            mode=mode.value if mode else None,
            seed=seed,
            out=out,
            progress=True,
        )
    result = prune(method=method.value, **opts)
    if json:
        emit_json(result)
        return
    _summary(result)


def _print_blocks(r: dict) -> None:
    from rich.table import Table

    t = Table(title=f"UPDP blocks of {r['model']} (input {tuple(r['input_shape'])})")
    for col in ("block", "class", "UPDP", "detail"):
        t.add_column(col)
    for c in r["candidates"]:
        shortcut = "identity residual" if c["residual"] else "no residual"
        t.add_row(
            c["name"],
            c["class"],
            f"candidate ({c['kind']})",
            f"{c['convs']} convs -> {c['kernel']}x{c['kernel']}/{c['stride']}, {shortcut}; forms {', '.join(c['forms'])}",
        )
    for s in r["skipped"]:
        t.add_row(s["name"], s["class"], "[dim]skipped[/dim]", s["reason"])
    console.print(t)
    if r["folded"]:
        console.print(f"folded train-time branches first (reparameterize()): {len(r['folded'])} blocks")
    console.print(f"{len(r['candidates'])} candidate blocks, {len(r['skipped'])} left intact")


def _summary(r: dict) -> None:
    if r.get("method") != "updp":
        console.print_json(data={k: v for k, v in r.items() if not isinstance(v, (list, dict))})
        if r.get("method") == "ftwt":
            _ftwt_summary(r)
        return
    from rich.table import Table

    t = Table(title="UPDP block decisions")
    for col in ("block", "kind", "original ms", "merged forms (ms)", "decision"):
        t.add_column(col)
    for b in r["blocks"]:
        forms = ", ".join(f"{k} {v:.4f}" for k, v in b["forms_ms"].items())
        dec = f"pruned ({b['form']})" if b["selected"] else ("eligible" if b["eligible"] else "keep")
        t.add_row(b["name"], b["kind"], f"{b['original_ms']:.4f}", forms, f"{dec}: {b['reason']}")
    console.print(t)
    for u in r.get("unsupported_blocks", []):
        console.print(f"[dim]left intact: {u['name']} ({u['class']}): {u['reason']}[/dim]")
    console.print(
        f"pruned {len(r['pruned_blocks'])} blocks: top-1 {r['top1_before']:.2f} -> {r['top1_after']:.2f}; "
        f"MACs {r['macs_before']:,} -> {r['macs_after']:,}; predicted latency "
        f"{r['predicted_latency_ms_before']:.3f} -> {r['predicted_latency_ms_after']:.3f} ms ({r['latency_source']})"
    )
    if r.get("model_dir"):
        console.print(f"merged model: {r['model_dir']}")


def _ftwt_summary(r: dict) -> None:
    """FTWT: the per-image FLOPs distribution, how input-dependent the masks are, and by class."""
    dep = r.get("input_dependence") or {}
    console.print(
        f"FTWT r={r['mass']} {r['mode']}: top-1 {100 * r['top1_before']:.2f} -> {100 * r['top1_after']:.2f}; "
        f"FLOPs reduction per image mean {r['flops_reduction_mean']:.1%} (p10 {r['flops_reduction_p10']:.1%}, "
        f"p50 {r['flops_reduction_p50']:.1%}, p90 {r['flops_reduction_p90']:.1%}); "
        f"mask entropy {dep.get('mask_entropy_mean', 0.0):.3f} bit/channel"
    )
    if dep.get("by_class"):
        console.print("by class: " + ", ".join(f"{c.get('name', c['label'])} {c['mean']:.1%}" for c in dep["by_class"]))
