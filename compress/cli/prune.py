"""``compress prune``: depth pruning with block merging (UPDP) or dynamic channel gating (FTWT)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, OutOpt, ProfilesOpt, SeedOpt, TablesOpt, command_line, console, emit_json
from compress.cli.main import app
from compress.core.errors import UsageError
from compress.core.runs import claim_run_dir


class Method(str, Enum):
    updp = "updp"
    ftwt = "ftwt"


class Selection(str, Enum):
    proxy = "proxy"
    supernet = "supernet"


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
    model: Annotated[str, typer.Option("--model", help="timm:NAME, a model directory, a supernet checkpoint (+ --subnet), a search run, or efficientnet-lite0.")],
    data: Annotated[str, typer.Option("--data", help="Dataset name (digits, mnist5k, fashion-mnist, imagefolder:PATH).")],
    epochs: Annotated[int, typer.Option("--epochs", help="Fine-tuning epochs.")],
    subnet: Annotated[str | None, typer.Option("--subnet", help="Subnet config (with a supernet checkpoint).")] = None,
    weights: Annotated[Path | None, typer.Option("--weights", help="Weights for timm:NAME (safetensors or a torch state_dict).")] = None,
    blocks: Annotated[int | None, typer.Option("--blocks", help="[updp] number of blocks to prune.")] = None,
    latency_ms: Annotated[float | None, typer.Option("--latency-ms", help="[updp] latency budget in ms on --device.")] = None,
    device: Annotated[str | None, typer.Option("--device", help="[updp] target device (default local-cpu, measured here; another device: its latency table, `compress profile --merged`, for supernet subnets).")] = None,
    runtime: Annotated[str | None, typer.Option("--runtime", help="[updp] runtime on the device (default: the device's first).")] = None,
    teacher: Annotated[str | None, typer.Option("--teacher", help="[updp] KD teacher (default: the unpruned model).")] = None,
    selection: Annotated[Selection | None, typer.Option("--selection", help="[updp] block scorer: proxy (default, no training) or supernet (trains a weight-sharing network with random K-block masks; ranks masks better, ~2.5x the cost).")] = None,
    mass: Annotated[float | None, typer.Option("--mass", help="[ftwt] activation mass kept (default 0.95).")] = None,
    mode: Annotated[Mode | None, typer.Option("--mode", help="[ftwt] decoupled or joint (default decoupled).")] = None,
    tables: TablesOpt = None,
    profiles: ProfilesOpt = None,
    seed: SeedOpt = 0,
    out: OutOpt = None,
    json: JsonOpt = False,
) -> None:
    """Prune a model: UPDP merges whole blocks into single convs (`--blocks K` or `--latency-ms X`);
    FTWT trains per-layer channel gates (`--mass`)."""
    given = {"--blocks": blocks, "--latency-ms": latency_ms, "--device": device, "--runtime": runtime,
             "--teacher": teacher, "--selection": selection, "--tables": tables, "--profiles": profiles, "--mass": mass, "--mode": mode}
    other = "ftwt" if method.value == "updp" else "updp"
    wrong = [k for k in _ONLY[other] if given[k] is not None]
    if wrong:
        raise UsageError(f"{', '.join(wrong)} {'does' if len(wrong) == 1 else 'do'} not apply to --method {method.value} "
                         f"(only to --method {other}); remove {'it' if len(wrong) == 1 else 'them'}")
    from compress.prune import prune

    if out is not None:
        claim_run_dir(out, command=command_line())  # one writer per run directory, before any work
    if method is Method.updp:
        if (blocks is None) == (latency_ms is None):
            raise UsageError("--method updp needs exactly one of --blocks K or --latency-ms X")
        opts = dict(model=model, data=data, epochs=epochs, blocks=blocks, latency_ms=latency_ms, device=device,
                    runtime=runtime, teacher=teacher, weights=str(weights) if weights else None, subnet=subnet,
                    seed=seed, out=out, progress=True, selection=(selection or Selection.proxy).value,
                    tables=tables, profiles=profiles)
    else:
        opts = dict(model=model, subnet=subnet, weights=str(weights) if weights else None, data=data, epochs=epochs,
                    mass=0.95 if mass is None else mass, mode=(mode or Mode.decoupled).value, seed=seed, out=out,
                    progress=True)
    result = prune(method=method.value, **opts)
    if json:
        emit_json(result)
        return
    _summary(result)


def _summary(r: dict) -> None:
    if r.get("method") != "updp":
        console.print_json(data={k: v for k, v in r.items() if not isinstance(v, (list, dict))})
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
    console.print(f"pruned {len(r['pruned_blocks'])} blocks: top-1 {r['top1_before']:.2f} -> {r['top1_after']:.2f}; "
                  f"MACs {r['macs_before']:,} -> {r['macs_after']:,}; predicted latency "
                  f"{r['predicted_latency_ms_before']:.3f} -> {r['predicted_latency_ms_after']:.3f} ms ({r['latency_source']})")
    if r.get("model_dir"):
        console.print(f"merged model: {r['model_dir']}")
