"""The export config (shared by the CLI, the Python API and pipeline YAML) and the values that
flow between the export steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from compress.core.config import StrictModel

Precision = Literal["fp32", "fp16", "bf16", "int8"]


class ExportConfig(StrictModel):
    """Everything ``compress export`` does; the defaults are the CLI's defaults."""

    formats: list[str] = Field(
        default_factory=lambda: ["onnx"], description="onnx, openvino (ov), tensorrt (trt, engine)"
    )
    precision: Precision = "fp32"
    batch: int | Literal["dynamic"] = 1
    max_batch: int = Field(32, ge=1, description="largest batch of a dynamic TensorRT profile")
    opset: int | None = Field(None, ge=9, le=23)
    exporter: Literal["auto", "dynamo", "legacy"] = "auto"
    simplify: bool = True
    data: str | None = Field(None, description="dataset for the top-1 agreement batch (default: the model's own)")
    samples: int = Field(64, ge=1, le=4096, description="images in the parity batch")
    parity: bool = True
    preflight: bool = True
    threads: int | None = Field(None, ge=1)
    remote: str | None = Field(None, description="user@host: build the TensorRT bundle there over SSH")
    trt_version: str | None = Field(None, description="TensorRT version to preflight against when none is installed")
    dla_core: int | None = Field(None, ge=0, description="build the TensorRT engine for this DLA core")
    dla_gpu_fallback: bool = Field(False, description="let layers the DLA cannot run fall back to the GPU")
    workspace_mb: int = Field(2048, ge=64)
    seed: int = 0

    @field_validator("batch", mode="before")
    @classmethod
    def _batch(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() != "dynamic":
            try:
                return int(v)
            except ValueError:
                raise ValueError("batch must be a positive integer or 'dynamic'") from None
        return v

    @field_validator("batch")
    @classmethod
    def _batch_pos(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 1:
            raise ValueError("batch must be a positive integer or 'dynamic'")
        return v

    @property
    def dynamic(self) -> bool:
        return self.batch == "dynamic"


@dataclass
class FormatArtifact:
    """What one format's build produced."""

    format: str
    kind: str  # onnx | openvino-ir | tensorrt-engine | tensorrt-bundle
    path: Path  # the main artefact (file, or the bundle directory)
    files: list[Path] = field(default_factory=list)  # every file written, for the manifest
    verified: list[str] = field(default_factory=list)  # e.g. ["compiled on CPU"]
    parity_runtime: str | None = None  # runner for parity here; None = not runnable here
    precision: str = "fp32"
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportContext:
    """Inputs every format's ``build`` receives."""

    model: Any  # compress.models.LoadedModel
    config: ExportConfig
    out: Path
    onnx: Any  # compress.export.onnx.OnnxExport (the fp32 ONNX every format starts from)
    metadata: dict[str, str]
    parity_inputs: Any = None  # np.ndarray used for parity (also shipped in TensorRT bundles)
    parity_reference: Any = None  # torch outputs for parity_inputs
    calib_inputs: Any = None  # np.ndarray for int8 calibration (TensorRT)
