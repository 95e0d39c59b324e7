"""``compress train``: train a supernet (DεpS by default; OFA-PS, BigNAS; DDP or IST; exact resume).

The body only parses, calls and renders: the options become a :class:`~compress.train.TrainConfig`
through :func:`compress.train.options.config_from_options` (which holds the one table of renamed
options; the model holds every default, shown in the help), and :func:`compress.train.train`
launches torchrun workers and writes the manifest exactly as it does for a notebook user.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from compress.cli.common import JsonOpt, console, emit_json
from compress.cli.main import app
from compress.train.options import default

# options of the command that are not TrainConfig fields
RUN_OPTIONS = ("ctx", "config", "resume", "json", "max_restarts", "threads")


def Opt(flag: str, help: str, name: str | None = None) -> Any:  # noqa: N802 - reads as typer.Option
    """A typer option without a default (None = not given); the help shows the model's default."""
    if name is not None:
        help = f"{help} (default: {default(name)})"
    return typer.Option(flag, help=help)


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    family: Annotated[
        str | None,
        Opt("--family", "Supernet family (convnext-small-input, mbv3-small-input, ofa-mbv3, ofa-resnet).", "family"),
    ] = None,
    data: Annotated[
        str | None, Opt("--data", "Dataset: fashion-mnist, digits, mnist5k, imagefolder:PATH.", "data")
    ] = None,
    out: Annotated[
        Path | None, Opt("--out", "Run directory (checkpoints, metrics.jsonl, curves.png, supernet.safetensors).")
    ] = None,
    recipe: Annotated[str | None, Opt("--recipe", "deps, ofa-ps or bignas.", "recipe")] = None,
    strategy: Annotated[
        str | None, Opt("--strategy", "ddp (data parallel) or ist (Independent Subnet Training).", "strategy")
    ] = None,
    epochs: Annotated[int | None, Opt("--epochs", "Total epochs.", "epochs")] = None,
    seed: Annotated[int | None, Opt("--seed", "Seed for data order, augmentation, sampling and init.", "seed")] = None,
    nproc: Annotated[int | None, Opt("--nproc", "Processes; >1 re-launches under torchrun.", "nproc")] = None,
    max_restarts: Annotated[
        int, typer.Option("--max-restarts", help="torchrun restarts after a worker failure (with --nproc).")
    ] = 3,
    batch_size: Annotated[int | None, Opt("--batch-size", "Images per step per process.", "batch_size")] = None,
    image_size: Annotated[
        int | None, Opt("--image-size", "Input size (default: native if a resolution choice).")
    ] = None,
    train_limit: Annotated[int | None, Opt("--train-limit", "Use only this many training images.")] = None,
    lr: Annotated[float | None, Opt("--lr", "Base LR per process (eta0 = lr x processes).", "lr")] = None,
    min_lr: Annotated[float | None, Opt("--min-lr", "Cosine floor.", "min_lr")] = None,
    shrink_start: Annotated[float | None, Opt("--shrink-start", "E_w in epochs (default 150/270 of --epochs).")] = None,
    ramp_epochs: Annotated[
        float | None, Opt("--ramp-epochs", "W_s: epochs of the β ramp (default 5/270 of --epochs).")
    ] = None,
    subnets_per_step: Annotated[
        int | None,
        Opt("--subnets-per-step", "n of the sandwich step (largest, smallest, n-2 random).", "subnets_per_step"),
    ] = None,
    aggregation: Annotated[
        str | None, Opt("--aggregation", "Per-parameter gradient aggregation: sum, avg or sqrt.", "aggregation")
    ] = None,
    kd: Annotated[bool | None, Opt("--kd/--no-kd", "In-place distillation from the largest subnet.", "kd")] = None,
    temperature: Annotated[float | None, Opt("--temperature", "KD temperature.", "temperature")] = None,
    reorganize: Annotated[
        bool | None,
        Opt("--reorganize/--no-reorganize", "Sort hidden channels by importance once at shrink start.", "reorganize"),
    ] = None,
    elastic_kernel: Annotated[
        bool | None,
        Opt("--elastic-kernel/--fixed-kernel", "Sample kernel sizes (the DεpS paper fixes K = max).", "elastic_kernel"),
    ] = None,
    sampling: Annotated[str | None, Opt("--sampling", "uniform or compofa.", "sampling")] = None,
    accum_steps: Annotated[
        int | None, Opt("--accum-steps", "Micro-batches per step (gradient accumulation).", "accum_steps")
    ] = None,
    ist_rounds: Annotated[
        int | None, Opt("--ist-local-steps", "IST: local steps between repartitions (R).", "ist_rounds")
    ] = None,
    ist_rescale: Annotated[
        bool | None,
        Opt("--ist-rescale/--no-ist-rescale", "IST: scale hidden-channel sums by S during local steps.", "ist_rescale"),
    ] = None,
    ist_lr_scale: Annotated[float | None, Opt("--ist-lr-scale", "IST: local LR = --lr x this.", "ist_lr_scale")] = None,
    ist_finetune_epochs: Annotated[
        float | None,
        Opt("--ist-finetune-epochs", "IST: last epochs train the full model data-parallel.", "ist_finetune_epochs"),
    ] = None,
    checkpoint_every: Annotated[
        int | None, Opt("--checkpoint-every", "Steps between checkpoints (also each epoch end).", "checkpoint_every")
    ] = None,
    eval_subnets: Annotated[
        int | None, Opt("--eval-subnets", "Random subnets evaluated besides min/max each epoch.", "eval_subnets")
    ] = None,
    fp16: Annotated[bool | None, Opt("--fp16", "Store the final supernet in float16.")] = None,
    max_steps: Annotated[int | None, Opt("--max-steps", "Stop after this many steps.")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="torch intra-op threads per process.")] = None,
    device: Annotated[
        str | None,
        Opt("--device", "cpu, or cuda (one GPU per process: rank r uses cuda:r; NCCL under --nproc).", "device"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="YAML with TrainConfig fields (options given here override it).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from the run directory's latest checkpoint.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Train a weight-sharing supernet; writes supernet.safetensors, metrics and a manifest to --out."""
    from compress.train import distributed, train
    from compress.train.options import config_from_options

    options = {k: v for k, v in ctx.params.items() if k not in RUN_OPTIONS}
    cfg = config_from_options(options, config_file=config)
    if cfg.nproc > 1 and not distributed.under_torchrun():
        console.print(f"launching {cfg.nproc} processes under torchrun (max restarts {max_restarts})")
    res = train(cfg, resume=resume, max_restarts=max_restarts, threads=threads)
    if int(os.environ.get("RANK", "0") or 0) != 0 or os.environ.get(distributed.LAUNCHED_ENV) == "1":
        return  # a worker: its launcher (or rank 0) reports
    _render(res.out, as_json=json)


def _render(out: Path, *, as_json: bool) -> None:
    from compress.core.runs import read_json

    result = read_json(Path(out) / "result.json", what="training result")
    if as_json:
        emit_json(result)
        return
    console.print(f"trained {result['steps']} steps in {result['wall_s']:.0f} s -> {result['supernet']}")
    for r in result.get("val", []):
        console.print(f"  {r['name']:>8}: val top-1 {100 * r['top1']:.2f}%  params {r['params']:,}  MACs {r['macs']:,}")
