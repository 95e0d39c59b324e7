"""Shared CLI pieces: stderr console, JSON output, common options."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from compress.core.runs import dumps


def _make_console() -> Console:
    """The stderr console. Off a terminal (CI logs, pipes) rich would wrap everything at 80 columns and
    fold table cells (a device name broken over four lines): there, lines keep their full width
    (tables take the width of their content) unless COLUMNS says otherwise. --json output is unaffected."""
    import os

    c = Console(stderr=True, highlight=False)
    if not c.is_terminal and not os.environ.get("COLUMNS"):
        c = Console(stderr=True, highlight=False, width=OFF_TTY_WIDTH)
    return c


OFF_TTY_WIDTH = 4000
console = _make_console()

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the machine-readable result on stdout (logs go to stderr).")
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Run directory for results and manifest.json.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice.")]
ProfilesOpt = Annotated[
    Path | None, typer.Option("--profiles", help="Extra directory of device profile YAMLs (also COMPRESS_PROFILES).")
]
TablesOpt = Annotated[
    Path | None,
    typer.Option("--tables", help="Latency-table directory (default: the per-user cache, or COMPRESS_TABLES)."),
]

# how a MODEL argument given as timm:NAME is built (compress export, compress quantize): one definition
NumClassesOpt = Annotated[int | None, typer.Option("--num-classes", help="timm:NAME only: classifier size.")]
ImageSizeOpt = Annotated[int | None, typer.Option("--image-size", help="timm:NAME only: input resolution.")]
InChansOpt = Annotated[int | None, typer.Option("--in-chans", help="timm:NAME only: input channels.")]
ModelWeightsOpt = Annotated[
    Path | None,
    typer.Option("--weights", help="timm:NAME only: weights (.safetensors or a weights_only torch file)."),
]


def model_options(
    *, num_classes: int | None, image_size: int | None, in_chans: int | None, weights: Path | None
) -> dict[str, Any]:
    """The MODEL options given (for ``compress.models.load_model``); unset ones are left to the model."""
    given = {"num_classes": num_classes, "image_size": image_size, "in_chans": in_chans, "weights": weights}
    return {k: v for k, v in given.items() if v is not None}


def default_run_dir(command: str, model: str, *suffix: str) -> Path:
    """``runs/COMMAND-SLUG[-SUFFIX...]``: the run directory when --out is not given (slug from MODEL)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(model.rstrip("/")).name or model).strip("-") or "model"
    return Path("runs") / "-".join([f"{command}-{slug}", *suffix])


def emit_json(obj: Any) -> None:
    """Write a result as JSON on stdout (nothing else goes to stdout when --json is given)."""
    sys.stdout.write(dumps(obj))
    sys.stdout.flush()


def command_line() -> str:
    return " ".join(["compress", *sys.argv[1:]])
