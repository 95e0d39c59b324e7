"""``compress train``: train a supernet (DεpS by default; OFA-PS, BigNAS; DDP or IST; exact resume).

The body only parses, calls and renders. The options that set :class:`~compress.train.TrainConfig`
fields are the table :data:`FIELD_OPTIONS` (flag and help); their types and defaults come from the
model, which holds every default once (the help shows them); an option not typed is ``None`` and
leaves the ``--config`` file's value or the model's default. :func:`compress.train.options.config_from_options`
turns them into the config, and :func:`compress.train.train` launches torchrun workers and writes
the manifest exactly as it does for a notebook user.
"""

from __future__ import annotations

import inspect
import os
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import typer

from compress.cli.common import JsonOpt, console, emit_json
from compress.cli.main import app
from compress.train.config import TrainConfig
from compress.train.options import OPTION_FIELDS, default

# (option parameter, flag, help): each sets the TrainConfig field of its name (or OPTION_FIELDS's)
FIELD_OPTIONS: list[tuple[str, str, str]] = [
    ("family", "--family", "Supernet family (convnext-small-input, mbv3-small-input, ofa-mbv3, ofa-resnet)."),
    ("data", "--data", "Dataset: fashion-mnist, digits, mnist5k, imagefolder:PATH."),
    ("out", "--out", "Run directory (checkpoints, metrics.jsonl, curves.png, supernet.safetensors)."),
    ("recipe", "--recipe", "deps, ofa-ps or bignas."),
    ("strategy", "--strategy", "ddp (data parallel) or ist (Independent Subnet Training)."),
    ("epochs", "--epochs", "Total epochs."),
    ("seed", "--seed", "Seed for data order, augmentation, sampling and init."),
    ("nproc", "--nproc", "Processes; >1 re-launches under torchrun."),
    ("batch_size", "--batch-size", "Images per step per process."),
    ("image_size", "--image-size", "Input size (default: native if a resolution choice)."),
    ("train_limit", "--train-limit", "Use only this many training images."),
    ("lr", "--lr", "Base LR per process (eta0 = lr x processes)."),
    ("min_lr", "--min-lr", "Cosine floor."),
    ("shrink_start", "--shrink-start", "E_w in epochs (default 150/270 of --epochs)."),
    ("ramp_epochs", "--ramp-epochs", "W_s: epochs of the β ramp (default 5/270 of --epochs)."),
    ("subnets_per_step", "--subnets-per-step", "n of the sandwich step (largest, smallest, n-2 random)."),
    ("aggregation", "--aggregation", "Per-parameter gradient aggregation: sum, avg or sqrt."),
    ("kd", "--kd/--no-kd", "In-place distillation from the largest subnet."),
    ("temperature", "--temperature", "KD temperature."),
    ("reorganize", "--reorganize/--no-reorganize", "Sort hidden channels by importance once at shrink start."),
    ("elastic_kernel", "--elastic-kernel/--fixed-kernel", "Sample kernel sizes (the DεpS paper fixes K = max)."),
    ("sampling", "--sampling", "uniform or compofa."),
    ("accum_steps", "--accum-steps", "Micro-batches per step (gradient accumulation)."),
    ("ist_rounds", "--ist-local-steps", "IST: local steps between repartitions (R)."),
    ("ist_rescale", "--ist-rescale/--no-ist-rescale", "IST: scale hidden-channel sums by S during local steps."),
    ("ist_lr_scale", "--ist-lr-scale", "IST: local LR = --lr x this."),
    ("ist_finetune_epochs", "--ist-finetune-epochs", "IST: last epochs train the full model data-parallel."),
    ("checkpoint_every", "--checkpoint-every", "Steps between checkpoints (also each epoch end)."),
    ("eval_subnets", "--eval-subnets", "Random subnets evaluated besides min/max each epoch."),
    ("fp16", "--fp16", "Store the final supernet in float16."),
    ("max_steps", "--max-steps", "Stop after this many steps."),
    ("device", "--device", "cpu, or cuda (one GPU per process: rank r uses cuda:r; NCCL under --nproc)."),
]

# the options of the run itself (not config fields), with their own defaults
RUN_OPTIONS: dict[str, tuple[Any, Any]] = {
    "max_restarts": (
        Annotated[int, typer.Option("--max-restarts", help="torchrun restarts after a worker failure (with --nproc).")],
        3,
    ),
    "threads": (Annotated[int | None, typer.Option("--threads", help="torch intra-op threads per process.")], None),
    "config": (
        Annotated[
            Path | None, typer.Option("--config", help="YAML with TrainConfig fields (options given here override it).")
        ],
        None,
    ),
    "resume": (
        Annotated[bool, typer.Option("--resume", help="Continue from the run directory's latest checkpoint.")],
        False,
    ),
    "json": (JsonOpt, False),
}


def train_cmd(ctx: typer.Context, **params: Any) -> None:
    """Train a weight-sharing supernet; writes supernet.safetensors, metrics and a manifest to --out."""
    from compress.train import distributed, train
    from compress.train.options import config_from_options

    options = {k: v for k, v in params.items() if k not in RUN_OPTIONS}
    cfg = config_from_options(options, config_file=params["config"])
    if cfg.nproc > 1 and not distributed.under_torchrun():
        console.print(f"launching {cfg.nproc} processes under torchrun (max restarts {params['max_restarts']})")
    res = train(cfg, resume=params["resume"], max_restarts=params["max_restarts"], threads=params["threads"])
    if int(os.environ.get("RANK", "0") or 0) != 0 or os.environ.get(distributed.LAUNCHED_ENV) == "1":
        return  # a worker: its launcher (or rank 0) reports
    _render(res.out, as_json=params["json"])


def _render(out: Path, *, as_json: bool) -> None:
    from compress.core.runs import read_json

    result = read_json(Path(out) / "result.json", what="training result")
    if as_json:
        emit_json(result)
        return
    console.print(f"trained {result['steps']} steps in {result['wall_s']:.0f} s -> {result['supernet']}")
    for r in result.get("val", []):
        console.print(f"  {r['name']:>8}: val top-1 {100 * r['top1']:.2f}%  params {r['params']:,}  MACs {r['macs']:,}")


def _option_type(name: str) -> Any:
    """``X | None`` for the field's type X (a Literal reads as str: the model names the choices in its error)."""
    if name == "fp16":
        return bool | None
    ann = TrainConfig.model_fields[OPTION_FIELDS.get(name, name)].annotation
    if get_origin(ann) in (Union, types.UnionType):
        ann = next(a for a in get_args(ann) if a is not type(None))
    return (str if get_origin(ann) is Literal else ann) | None


def _signature() -> inspect.Signature:
    """``train_cmd``'s parameters as typer reads them: the field options (None = not given), then the run's."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter("ctx", kind, annotation=typer.Context)]
    for name, flag, text in FIELD_OPTIONS:
        d = default(name) if name != "fp16" else None
        help_ = text if d is None or "(default" in text else f"{text} (default: {d})"
        ann = Annotated[_option_type(name), typer.Option(flag, help=help_)]
        params.append(inspect.Parameter(name, kind, default=None, annotation=ann))
    params += [inspect.Parameter(n, kind, default=d, annotation=a) for n, (a, d) in RUN_OPTIONS.items()]
    return inspect.Signature(params, return_annotation=None)


train_cmd.__signature__ = _signature()  # type: ignore[attr-defined]
app.command("train")(train_cmd)
