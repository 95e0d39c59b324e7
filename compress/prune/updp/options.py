"""UPDP's options, each default held once: ``compress prune --method updp``, the pipeline's ``prune:``
section and :func:`compress.prune.updp.api.prune_updp` all read them here.

:class:`UpdpOptions` is *how* to prune (the target, the selection, the training recipe, timing);
what to prune (the model, its weights or subnet, the dataset), the seed and where to write are the
call's own arguments. The pipeline's ``PruneCfg`` takes its UPDP fields from this model
(:func:`shared_field`), so a default changed here changes everywhere.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic.fields import FieldInfo

from compress.core.config import StrictModel, validate


class UpdpOptions(StrictModel):
    """How UPDP prunes. Exactly one of ``blocks`` and ``latency_ms`` is required when pruning
    (checked by :func:`compress.prune.updp.api.check_options`, not here: the pipeline's section may
    leave both unset and means one block)."""

    blocks: int | None = Field(default=None, ge=1)  # prune exactly this many blocks
    latency_ms: float | None = Field(default=None, gt=0)  # or meet this latency on `device`
    epochs: int = Field(default=1, ge=0)  # progressive fine-tuning epochs
    device: str | None = None  # latency target (None: this machine, local-cpu, measured here)
    runtime: str | None = None  # runtime on the device (None: the device's first)
    teacher: str | None = None  # KD teacher (None: the unpruned model)
    selection: Literal["proxy", "supernet"] = "proxy"  # block scorer
    selection_steps: int = Field(default=200, ge=1)  # weight-sharing training steps (selection="supernet")
    score_images: int = Field(default=512, ge=1)  # held-out images the scorer compares logits on
    min_gain: float = Field(default=0.03, ge=0)  # a merged form must be this much faster (noise guard)
    image_size: int | None = Field(default=None, ge=8)  # None: the model's / dataset's own
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    ramp_share: float = Field(default=0.4, ge=0, le=1)  # share of the steps over which λ rises to 1
    schedule: str = "linear"  # λ schedule: linear, cosine, step, constant
    kd_weight: float = Field(default=0.5, ge=0, le=1)
    train_limit: int | None = Field(default=None, ge=1)  # train on a subset (keeps demos short)
    max_steps: int | None = Field(default=None, ge=1)
    timing_iterations: int = Field(default=60, ge=1)  # per block form, when measuring merged forms
    threads: int | None = Field(default=1, ge=1)  # intra-op threads when timing blocks (None: runtime's)


def shared_field(name: str) -> Any:
    """A copy of :class:`UpdpOptions`' field ``name`` (type checks and default), for another model."""
    info: FieldInfo = UpdpOptions.model_fields[name]
    return FieldInfo.merge_field_infos(info)


def options_from(options: UpdpOptions | None, fields: dict[str, Any]) -> UpdpOptions:
    """``options`` itself, or one built from flat keywords (``blocks=2, epochs=1``), or ``options``
    updated by them. Unknown keywords are one-line usage errors with a close match, as in the YAML."""
    from compress.core.errors import UsageError, suggest

    known = set(UpdpOptions.model_fields)
    for key in fields:
        if key not in known:
            raise UsageError(
                f"prune_updp: unknown option '{key}'{suggest(key, known)}; allowed: {', '.join(sorted(known))}"
            )
    base = options.model_dump() if options is not None else {}
    return validate(UpdpOptions, {**base, **fields}, source="prune_updp")
