"""The pipeline YAML, validated (unknown keys get suggestions).

Example (``examples/demo.yaml``)::

    name: demo
    seed: 0
    supernet: default                 # or a checkpoint path; or `model: {timm: NAME, weights: PATH}`
                                      # or `model: {file: my_model.py:build, weights: PATH}`
    data: {name: fashion-mnist, image_size: 28}
    devices:
      - {name: jetson, budget_ms: 1.0}
      - {name: local-cpu, budget_ms: 0.6, profile: true}
    search: {algorithm: evolution, generations: 100}
    prune: {method: updp, device: local-cpu, blocks: 2, epochs: 1}
    quantize: {precision: int8, runtimes: [onnxruntime, openvino], max_drop: 0.5}
    export: {formats: [onnx, openvino, tensorrt], precision: fp32}
    bench: {device: local-cpu, runtimes: [onnxruntime, openvino], iterations: 200}
    gates: {min_top1: 80, max_top1_drop: 1.0, max_parity_err: 1.0e-4, max_latency_ms: {local-cpu: 2.0},
            max_quant_drop: 0.5}
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from compress.core.config import StrictModel, load_model_yaml
from compress.prune.updp.options import shared_field
from compress.search.options import SearchOptions
from compress.train.config import Recipe, TrainConfig

_TRAIN = TrainConfig.model_fields  # the one place training defaults live


class ModelSource(StrictModel):
    """A model you bring, pruned/exported/benchmarked instead of a searched subnet.

    Either a timm architecture (``timm: NAME``) or your own plain-PyTorch file (``file:
    path/to/model.py:factory``, the same reference ``--model`` takes on the command line, resolved by
    ``compress.models.pyfile``); ``weights`` is a ``.safetensors`` state dict (a ``.pth`` state dict
    is read with ``weights_only=True``, never unpickled). Relative paths are from the directory the
    pipeline is run in, as on the command line.
    """

    timm: str | None = None
    file: str | None = None
    weights: str | None = None
    num_classes: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> ModelSource:
        if (self.timm is None) == (self.file is None):
            raise ValueError("give one of `timm: NAME` or `file: path/to/model.py:factory`")
        if self.file is not None:
            from compress.models.pyfile import split_ref

            if split_ref(self.file) is None:
                raise ValueError(
                    f"file: '{self.file}' is not a model reference; write it as path/to/model.py:factory "
                    "(e.g. `file: my_model.py:build`)"
                )
        return self

    @property
    def ref(self) -> str:
        """The reference ``compress.models.load_model`` (and the CLI's ``--model``) takes."""
        return f"timm:{self.timm}" if self.timm is not None else str(self.file)


class DataCfg(StrictModel):
    name: str = "fashion-mnist"
    image_size: int | None = None
    train_limit: int | None = None
    val_size: int | None = None


class DeviceCfg(StrictModel):
    name: str
    budget_ms: float | None = Field(default=None, gt=0)
    runtime: str | None = None
    precision: str | None = None
    batch: int = Field(default=1, ge=1)
    profile: bool = False  # measure a latency table on the spot (local devices, or with remote)
    remote: str | None = None


class TrainCfg(StrictModel):
    """The pipeline's ``train:`` section; family, recipe and batch size default as compress.train.TrainConfig."""

    family: str = _TRAIN["family"].default
    recipe: Recipe = _TRAIN["recipe"].default
    epochs: int = Field(default=2, ge=1)  # a short run: the pipeline's own default (TrainConfig's is 10)
    train_limit: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=_TRAIN["batch_size"].default, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    space: dict = Field(default_factory=dict)  # search-space overrides passed to the family
    options: dict = Field(default_factory=dict)  # any other compress.train.TrainConfig field (validated there)


class ProfilingCfg(StrictModel):
    """How devices with ``profile: true`` get their latency table measured on the spot."""

    iterations: int = Field(default=20, ge=1)
    warmup: int = Field(default=3, ge=0)
    calibrate: int = Field(default=8, ge=0)  # whole subnets measured to calibrate the table (0 = none)
    resolutions: list[int] | None = None  # only blocks of subnets at these resolutions
    threads: int | None = Field(default=None, ge=1)


# the `search:` section is the search's own options model: same fields, defaults and checks as
# `compress search` and compress.search(...); `algorithm` is validated against the searcher registry
SearchCfg = SearchOptions


class PruneCfg(StrictModel):
    method: Literal["updp", "ftwt", "none"] = "updp"
    # UPDP's fields are its options model's own (compress.prune.updp.options.UpdpOptions: one type
    # check and one default for the YAML, `compress prune` and prune_updp)
    device: str | None = shared_field("device")
    blocks: int | None = shared_field("blocks")
    latency_ms: float | None = shared_field("latency_ms")
    epochs: int = shared_field("epochs")
    train_limit: int | None = shared_field("train_limit")  # train on a subset (keeps the demo short)
    max_steps: int | None = shared_field("max_steps")
    timing_iterations: int = shared_field("timing_iterations")  # per block form, when measuring merged forms
    # updp block latencies: measured on `device` (default), or UPDP's MACs estimate (deterministic;
    # for tests and dry runs; reported as `estimate:macs`)
    latency: Literal["measured", "macs-estimate"] = "measured"
    mass: float | None = None  # ftwt: the target mass (fraction of channels kept)


class QuantizeCfg(StrictModel):
    """The ``quantize`` stage, between prune and export: the pruned model quantized for each runtime
    (``compress.quantize``), with accuracy control (``max_drop`` points of top-1 on the test split)."""

    precision: Literal["int8", "fp16"] = "int8"
    runtimes: list[str] = Field(default_factory=lambda: ["onnxruntime"], min_length=1)
    max_drop: float | None = Field(default=0.5, ge=0)  # points; None: report the drop, keep every layer quantized
    calib_images: int = Field(default=512, ge=1)  # from the dataset's calib split
    method: Literal["minmax", "entropy", "percentile"] = "minmax"


class ExportCfg(StrictModel):
    formats: list[str] = Field(default_factory=lambda: ["onnx", "openvino"])
    precision: Literal["fp32", "fp16"] = "fp32"
    batch: Literal["dynamic"] | int = 1
    samples: int = Field(default=64, ge=1)  # images in the parity batch


class BenchCfg(StrictModel):
    device: str = "local-cpu"
    runtimes: list[str] = Field(default_factory=lambda: ["onnxruntime"])
    iterations: int = Field(default=200, ge=1)
    warmup: int = Field(default=20, ge=0)
    rounds: int = Field(default=5, ge=1)
    threads: int | None = Field(default=None, ge=1)
    remote: str | None = None  # user@host: time on the device over SSH (e.g. a Jetson)


class GatesCfg(StrictModel):
    max_latency_ms: dict[str, float] = Field(default_factory=dict)
    min_top1: float | None = None
    max_top1_drop: float | None = None
    max_parity_err: float | None = None
    max_latency_regression_pct: float | None = None
    max_quant_drop: float | None = None  # points of top-1 lost by quantization (worst runtime of the quantize stage)


class PipelineCfg(StrictModel):
    name: str = "pipeline"
    seed: int = 0
    supernet: str | None = None
    model: ModelSource | None = None
    train: TrainCfg | None = None
    data: DataCfg = Field(default_factory=DataCfg)
    devices: list[DeviceCfg] = Field(min_length=1)
    tables: str | None = None  # measured tables for devices not profiled here (copied into the run)
    profiling: ProfilingCfg = Field(default_factory=ProfilingCfg)
    search: SearchCfg = Field(default_factory=SearchCfg)
    prune: PruneCfg = Field(default_factory=PruneCfg)
    quantize: QuantizeCfg | None = None  # no quantize stage unless given
    export: ExportCfg = Field(default_factory=ExportCfg)
    bench: BenchCfg = Field(default_factory=BenchCfg)
    gates: GatesCfg = Field(default_factory=GatesCfg)

    @model_validator(mode="after")
    def _one_source(self) -> PipelineCfg:
        given = [x for x in (self.supernet, self.model, self.train) if x is not None]
        if len(given) > 1:
            raise ValueError("give one of `supernet`, `model` or `train`")
        return self


def load_pipeline(path: str | Path) -> PipelineCfg:
    return load_model_yaml(PipelineCfg, path)
