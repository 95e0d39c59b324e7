"""``compress train``: train a supernet (DεpS by default; OFA-PS, BigNAS; DDP or IST; exact resume)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from compress.cli.common import JsonOpt, command_line, console, emit_json
from compress.cli.main import app
from compress.core.runs import claim_run_dir

Opt = typer.Option


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    family: Annotated[
        str, Opt("--family", help="Supernet family (convnext-small-input, mbv3-small-input, ofa-mbv3, ofa-resnet).")
    ] = "convnext-small-input",
    data: Annotated[
        str, Opt("--data", help="Dataset: fashion-mnist, digits, mnist5k, imagefolder:PATH.")
    ] = "fashion-mnist",
    out: Annotated[
        Path | None, Opt("--out", help="Run directory (checkpoints, metrics.jsonl, curves.png, supernet.safetensors).")
    ] = None,
    recipe: Annotated[str, Opt("--recipe", help="deps (default), ofa-ps or bignas.")] = "deps",
    strategy: Annotated[
        str, Opt("--strategy", help="ddp (data parallel) or ist (Independent Subnet Training).")
    ] = "ddp",
    epochs: Annotated[int, Opt("--epochs", help="Total epochs.")] = 10,
    seed: Annotated[int, Opt("--seed", help="Seed for data order, augmentation, sampling and init.")] = 0,
    nproc: Annotated[int, Opt("--nproc", help="Processes; >1 re-launches under torchrun.")] = 1,
    max_restarts: Annotated[
        int, Opt("--max-restarts", help="torchrun restarts after a worker failure (with --nproc).")
    ] = 3,
    batch_size: Annotated[int, Opt("--batch-size", help="Images per step per process.")] = 128,
    image_size: Annotated[
        int | None, Opt("--image-size", help="Input size (default: native if a resolution choice).")
    ] = None,
    train_limit: Annotated[int | None, Opt("--train-limit", help="Use only this many training images.")] = None,
    lr: Annotated[float, Opt("--lr", help="Base LR per process (eta0 = lr x processes).")] = 0.1625,
    min_lr: Annotated[float, Opt("--min-lr", help="Cosine floor.")] = 2.5e-3,
    shrink_start: Annotated[
        float | None, Opt("--shrink-start", help="E_w in epochs (default 150/270 of --epochs).")
    ] = None,
    ramp_epochs: Annotated[
        float | None, Opt("--ramp-epochs", help="W_s: epochs of the β ramp (default 5/270 of --epochs).")
    ] = None,
    subnets_per_step: Annotated[
        int, Opt("--subnets-per-step", help="n of the sandwich step (largest, smallest, n-2 random).")
    ] = 4,
    aggregation: Annotated[
        str, Opt("--aggregation", help="Per-parameter gradient aggregation: sum, avg or sqrt.")
    ] = "sum",
    kd: Annotated[bool, Opt("--kd/--no-kd", help="In-place distillation from the largest subnet.")] = True,
    temperature: Annotated[float, Opt("--temperature", help="KD temperature.")] = 1.0,
    reorganize: Annotated[
        bool, Opt("--reorganize/--no-reorganize", help="Sort hidden channels by importance once at shrink start.")
    ] = True,
    elastic_kernel: Annotated[
        bool, Opt("--elastic-kernel/--fixed-kernel", help="Sample kernel sizes (the DεpS paper fixes K = max).")
    ] = False,
    sampling: Annotated[str, Opt("--sampling", help="uniform or compofa.")] = "uniform",
    accum_steps: Annotated[int, Opt("--accum-steps", help="Micro-batches per step (gradient accumulation).")] = 1,
    ist_rounds: Annotated[int, Opt("--ist-local-steps", help="IST: local steps between repartitions (R).")] = 20,
    ist_rescale: Annotated[
        bool, Opt("--ist-rescale/--no-ist-rescale", help="IST: scale hidden-channel sums by S during local steps.")
    ] = True,
    ist_lr_scale: Annotated[float, Opt("--ist-lr-scale", help="IST: local LR = --lr x this.")] = 1.0,
    ist_finetune_epochs: Annotated[
        float, Opt("--ist-finetune-epochs", help="IST: last epochs train the full model data-parallel.")
    ] = 0.0,
    checkpoint_every: Annotated[
        int, Opt("--checkpoint-every", help="Steps between checkpoints (also each epoch end).")
    ] = 200,
    eval_subnets: Annotated[
        int, Opt("--eval-subnets", help="Random subnets evaluated besides min/max each epoch.")
    ] = 0,
    fp16: Annotated[bool, Opt("--fp16", help="Store the final supernet in float16.")] = False,
    max_steps: Annotated[int | None, Opt("--max-steps", help="Stop after this many steps.")] = None,
    threads: Annotated[int | None, Opt("--threads", help="torch intra-op threads per process.")] = None,
    device: Annotated[
        str, Opt("--device", help="cpu, or cuda (one GPU per process: rank r uses cuda:r; NCCL under --nproc).")
    ] = "cpu",
    config: Annotated[
        Path | None, Opt("--config", help="YAML with TrainConfig fields (options given here override it).")
    ] = None,
    resume: Annotated[bool, Opt("--resume", help="Continue from the run directory's latest checkpoint.")] = False,
    json: JsonOpt = False,
) -> None:
    """Train a weight-sharing supernet; writes supernet.safetensors, metrics and a manifest to --out."""
    from compress.core.config import load_yaml, validate
    from compress.core.errors import UsageError
    from compress.train.config import TrainConfig

    if epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {epochs}")
    if out is None:
        raise UsageError("--out is required: the run directory for checkpoints and the trained supernet")
    names = dict(
        family="family",
        data="data",
        out="out",
        recipe="recipe",
        strategy="strategy",
        epochs="epochs",
        seed="seed",
        nproc="nproc",
        batch_size="batch_size",
        image_size="image_size",
        train_limit="train_limit",
        base_lr="lr",
        min_lr="min_lr",
        shrink_start="shrink_start",
        ramp_epochs="ramp_epochs",
        dynamic_batch_size="subnets_per_step",
        aggregation="aggregation",
        inplace_distillation="kd",
        temperature="temperature",
        reorganize_weights="reorganize",
        elastic_kernel="elastic_kernel",
        sampling="sampling",
        accum_steps="accum_steps",
        ist_rounds_iters="ist_rounds",
        ist_rescale="ist_rescale",
        ist_lr_scale="ist_lr_scale",
        ist_finetune_epochs="ist_finetune_epochs",
        checkpoint_every="checkpoint_every",
        eval_subnets="eval_subnets",
        save_dtype="fp16",
        max_steps="max_steps",
        device="device",
    )
    opts = dict(
        family=family,
        data=data,
        out=str(out),
        recipe=recipe,
        strategy=strategy,
        epochs=epochs,
        seed=seed,
        nproc=nproc,
        batch_size=batch_size,
        image_size=image_size,
        train_limit=train_limit,
        base_lr=lr,
        min_lr=min_lr,
        shrink_start=shrink_start,
        ramp_epochs=ramp_epochs,
        dynamic_batch_size=subnets_per_step,
        aggregation=aggregation,
        inplace_distillation=kd,
        temperature=temperature,
        reorganize_weights=reorganize,
        elastic_kernel=elastic_kernel,
        sampling=sampling,
        accum_steps=accum_steps,
        ist_rounds_iters=ist_rounds,
        ist_rescale=ist_rescale,
        ist_lr_scale=ist_lr_scale,
        ist_finetune_epochs=ist_finetune_epochs,
        checkpoint_every=checkpoint_every,
        eval_subnets=eval_subnets,
        save_dtype="float16" if fp16 else "float32",
        max_steps=max_steps,
        device=device,
    )
    base = {}
    if config is not None:
        base = load_yaml(config) or {}
        if not isinstance(base, dict):
            raise UsageError(f"{config}: expected a mapping of TrainConfig fields")
    from compress.cli.main import click as _click

    ParameterSource = _click.core.ParameterSource

    def given(key: str) -> bool:  # with --config, only options typed on the command line override it
        src = ctx.get_parameter_source(names[key])
        return config is None or src is None or src not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)

    defaults = {k: v for k, v in opts.items() if v is not None}
    merged = {**defaults, **base, **{k: v for k, v in defaults.items() if given(k)}}
    cfg = validate(TrainConfig, merged, source=f"{config}" if config else "train options")
    if threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    from compress.train import distributed

    if nproc > 1 and not distributed.under_torchrun():
        from compress.train.loop import check_inputs

        check_inputs(cfg)
        claim_run_dir(cfg.out, command=command_line(), for_children=True)  # the launcher holds it for its workers
        args = sys.argv[sys.argv.index("train") + 1 :] if "train" in sys.argv else []
        console.print(f"launching {nproc} processes under torchrun (max restarts {max_restarts})")
        rc = distributed.launch(nproc, args, max_restarts=max_restarts)
        if rc != 0:
            from compress.core.errors import Failure

            raise Failure(f"distributed training failed (exit code {rc}); see the log above; rerun with --resume")
        _finish(cfg, json, launched=True)
        return
    import torch

    if threads:
        torch.set_num_threads(threads)
    from compress.train import train

    train(cfg, resume=resume)
    if distributed.under_torchrun() and int(os.environ.get("RANK", "0")) != 0:
        return
    # a worker started by `compress train --nproc K` writes the manifest; the launcher prints
    quiet = os.environ.get(distributed.LAUNCHED_ENV) == "1"
    _finish(cfg, json and not quiet, launched=False, quiet=quiet)


def _finish(cfg, as_json: bool, *, launched: bool, quiet: bool = False) -> None:
    from compress.core.runs import RunDir, read_json

    out = Path(cfg.out)
    result = read_json(out / "result.json", what="training result")
    if not launched:
        run = RunDir(out, command="train", seeds={"seed": cfg.seed})
        run.add_input("config", value=cfg.model_dump(mode="json"))
        for name in ("supernet.safetensors", "metrics.jsonl", "curves.png", "result.json"):
            if (out / name).is_file():
                run.add_output(out / name)
        run.save_manifest()
    if quiet:
        return
    if as_json:
        emit_json(result)
        return
    console.print(f"trained {result['steps']} steps in {result['wall_s']:.0f} s -> {result['supernet']}")
    for r in result.get("val", []):
        console.print(f"  {r['name']:>8}: val top-1 {100 * r['top1']:.2f}%  params {r['params']:,}  MACs {r['macs']:,}")
