"""Training options as the CLI, a YAML file or a notebook give them -> one validated :class:`TrainConfig`.

:class:`~compress.train.config.TrainConfig` holds every default once. ``compress train`` declares
its options without defaults (``None`` = not given), so an option typed on the command line
overrides the ``--config`` file, and a value given nowhere takes the model's default. The CLI
spells a few fields differently; :data:`OPTION_FIELDS` is the only table of those names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.train.config import TrainConfig

# CLI option (parameter name) -> TrainConfig field, where they differ; every other option is its field
OPTION_FIELDS: dict[str, str] = {
    "lr": "base_lr",
    "subnets_per_step": "dynamic_batch_size",
    "kd": "inplace_distillation",
    "reorganize": "reorganize_weights",
    "ist_rounds": "ist_rounds_iters",
    "fp16": "save_dtype",
}


def default(name: str) -> Any:
    """The model's default of a CLI option or field (for help texts); None for a required field."""
    f = TrainConfig.model_fields[OPTION_FIELDS.get(name, name)]
    if f.is_required():
        return None
    return f.default if f.default_factory is None else f.default_factory()  # type: ignore[call-arg]


def config_from_options(options: Mapping[str, Any], *, config_file: str | Path | None = None) -> TrainConfig:
    """A validated :class:`TrainConfig` from ``options`` (CLI names or field names; ``None`` = not given)
    over the fields of ``config_file`` (YAML), over the model's defaults.

    Raises a one-line :class:`UsageError` for bad values (``--epochs 0``, a missing ``--out``, a
    misspelt recipe, a file that is not a mapping of fields).
    """
    given = {OPTION_FIELDS.get(k, k): v for k, v in options.items() if v is not None}
    if isinstance(given.get("save_dtype"), bool):
        given["save_dtype"] = "float16" if given["save_dtype"] else "float32"
    if "epochs" in given and given["epochs"] < 1:
        raise UsageError(f"--epochs must be at least 1, got {given['epochs']}")
    if given.get("out") is None:
        raise UsageError("--out is required: the run directory for checkpoints and the trained supernet")
    given["out"] = str(given["out"])
    base: Any = {}
    if config_file is not None:
        from compress.core.config import load_yaml

        base = load_yaml(config_file) or {}
        if not isinstance(base, dict):
            raise UsageError(f"{config_file}: expected a mapping of TrainConfig fields")
    from compress.core.config import validate

    return validate(TrainConfig, {**base, **given}, source=f"{config_file}" if config_file else "train options")
