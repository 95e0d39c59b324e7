"""Training configuration: every DεpS knob of ALGORITHMS.md §2.3-2.5 with the paper's defaults.

Epoch counts default to the paper's *fractions* (shrink start at ~0.55 of the epochs, a ramp of
5/270 epochs) scaled to ``epochs``; set ``shrink_start`` / ``ramp_epochs`` explicitly to override.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from compress.core.config import StrictModel

Aggregation = Literal["sum", "avg", "sqrt"]
Recipe = Literal["deps", "ofa-ps", "bignas"]
Strategy = Literal["ddp", "ist"]


class TrainConfig(StrictModel):
    """One training run. Validated; the CLI and YAML files build it through
    :func:`compress.train.options.config_from_options`, the API takes it directly. Every default
    lives here and only here."""

    family: str = Field("convnext-small-input", description="supernet family (compress.supernet registry)")
    data: str = Field("fashion-mnist", description="dataset name (compress.data.load_dataset)")
    out: Path = Field(description="run directory")
    recipe: Recipe = "deps"
    strategy: Strategy = "ddp"
    epochs: int = Field(10, ge=1)
    seed: int = 0
    nproc: int = Field(1, ge=1)
    # data
    batch_size: int = Field(128, ge=1, description="per-process batch size")
    image_size: int | None = None
    train_limit: int | None = Field(None, ge=1, description="use only this many training images")
    augment: bool = True
    calib_size: int = Field(1024, ge=1)
    # optimiser (§2.6): SGD Nesterov 0.9, cosine per iteration with a floor
    base_lr: float = Field(0.1625, gt=0, description="per-process LR; eta0 = base_lr x world size")
    min_lr: float = Field(2.5e-3, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0, description="not applied to BN and biases")
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    warmup_epochs: float = Field(0.0, ge=0, description="linear LR warm-up (0 in the DεpS run)")
    # DεpS schedule (§2.3) / heuristic (§2.4) / step (§2.5)
    shrink_start: float | None = Field(
        None, ge=0, description="E_w in epochs (teacher_warmup); default 150/270 of epochs"
    )
    ramp_epochs: float | None = Field(
        None, ge=0, description="W_s in epochs (smallnet_warmup); default 5/270 of epochs"
    )
    dynamic_batch_size: int = Field(4, ge=1, description="n: subnets per sandwich step (largest, smallest, n-2 random)")
    max_multiplier: float = 1.0
    min_multiplier: float = 1.0
    other_multiplier: float = 1.0
    aggregation: Aggregation = "sum"
    inplace_distillation: bool = True
    temperature: float = Field(1.0, gt=0)
    reorganize_weights: bool = True
    sampling: Literal["uniform", "compofa"] = "uniform"
    elastic_kernel: bool = Field(False, description="sample kernel sizes too (the paper fixes K = max)")
    accum_steps: int = Field(1, ge=1, description="micro-batches per step per process (gradient accumulation)")
    # OFA-PS (§5.5): fractions of the epoch budget per phase (full, kernel, depth1, depth2, expand1, expand2)
    ofa_phase_fractions: tuple[float, ...] = (180 / 605, 120 / 605, 25 / 605, 120 / 605, 40 / 605, 120 / 605)
    kd_ratio: float = Field(1.0, ge=0, description="OFA-PS soft-CE weight from the trained full model")
    # IST (§3)
    ist_rounds_iters: int = Field(20, ge=1, description="R: local iterations between repartitions")
    ist_rescale: bool = Field(True, description="scale hidden-channel consumers' input by S during local steps")
    ist_lr_scale: float = Field(1.0, gt=0, description="IST local LR = base_lr x this (per subnet)")
    ist_finetune_epochs: float = Field(0.0, ge=0, description="last epochs: full model, data parallel (ResIST-style)")
    # checkpointing / logging
    checkpoint_every: int = Field(200, ge=1, description="steps between checkpoints (also at each epoch end)")
    keep_checkpoints: int = Field(2, ge=1)
    log_every: int = Field(10, ge=1)
    eval_every_epochs: int = Field(1, ge=0, description="0 = only at the end")
    eval_subnets: int = Field(0, ge=0, description="random subnets evaluated besides min/max at each eval")
    save_dtype: Literal["float32", "float16"] = "float32"
    device: str = "cpu"
    deterministic: bool = Field(
        True, description="on CUDA: deterministic kernels, so --resume is exact (a little slower)"
    )
    space: dict = Field(default_factory=dict, description="search-space overrides passed to the family")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps (tests, benchmarks)")

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if self.shrink_start is not None and self.shrink_start > self.epochs:
            raise ValueError(f"shrink_start ({self.shrink_start}) exceeds epochs ({self.epochs})")
        if self.dynamic_batch_size < 2 and self.recipe in ("deps", "bignas"):
            raise ValueError("dynamic_batch_size must be >= 2 for sandwich recipes (largest + smallest)")
        if self.ist_finetune_epochs > self.epochs:
            raise ValueError(f"ist_finetune_epochs ({self.ist_finetune_epochs}) exceeds epochs ({self.epochs})")
        if len(self.ofa_phase_fractions) != 6 or any(f < 0 for f in self.ofa_phase_fractions):
            raise ValueError("ofa_phase_fractions needs 6 non-negative numbers")
        return self

    # derived schedule values, in epochs
    @property
    def e_w(self) -> float:
        return float(self.shrink_start) if self.shrink_start is not None else self.epochs * 150 / 270

    @property
    def w_s(self) -> float:
        w = float(self.ramp_epochs) if self.ramp_epochs is not None else self.epochs * 5 / 270
        return min(w, self.e_w)
