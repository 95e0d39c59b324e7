"""Quantized blocks for latency tables at ``int8``: each block as the quantizer places it.

A table at int8 times every block the way the whole quantized model runs it: the block is exported
alone to ONNX, then quantized by the same function that quantizes whole models
(``compress.quantize.onnxruntime.quantize_onnx_int8``: ``quant_pre_process`` + ``quantize_static``,
QDQ, per-channel weights, U8S8 on VNNI CPUs), calibrated on a handful of activations of the block's input shape. So the
Q/DQ nodes inside the block sit where they sit in the whole model, and the runtime fuses them the
same way (ORT: DQ -> Conv -> Q into ``QLinearConv``; OpenVINO: low-precision transformations).

What a block alone cannot show: in a whole model the tensor between two quantized blocks stays
8-bit (block i ends in Q, block i+1 starts with DQ and the pair is fused away), while a block alone
also pays a QuantizeLinear of its float input and a DequantizeLinear of its output. That cost grows
with the tensor sizes at the borders; the table's calibration (``compress.latency.calibrate``) is
what removes it, together with the per-call overhead (see docs/quantization.md for what the INT8
table predicts and what it does not).

The calibration activations are seeded standard-normal tensors of the block's input shape: inside
these networks a block's input follows a normalisation layer (LayerNorm/BatchNorm) or the
normalised image, so that is the range the real data gives it; latency does not depend on the
values beyond their range (zero points and scales are per-tensor constants).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError

#: precisions a table can be measured at by quantizing each block before timing it
QUANTIZED_PRECISIONS: tuple[str, ...] = ("int8",)
#: runtimes that run a QDQ ONNX file as it is (the graph carries the int8; the runner loads it at fp32)
QDQ_RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")
#: calibration activations per block: a handful is enough for ranges of random-weight blocks
CALIB_SAMPLES = 8


def is_quantized(precision: str | None) -> bool:
    return str(precision or "").lower() in QUANTIZED_PRECISIONS


def load_precision(runtime: str, precision: str) -> str:
    """The precision a runner loads an artefact at: a QDQ model carries its int8 in the graph, so
    ONNX Runtime and OpenVINO load it with fp32 for whatever stays unquantized (OpenVINO: an explicit
    f32 inference hint, so the rest is not silently bf16 on CPUs that have it)."""
    if is_quantized(precision) and _canonical(runtime) in QDQ_RUNTIMES:
        return "fp32"
    return precision


def _canonical(runtime: str) -> str:
    from compress.export.runtimes import get_runner

    try:
        return str(get_runner(runtime).name)
    except UsageError:
        return runtime


def check_quantizable(runtime: str, precision: str) -> None:
    """Refuse an int8 table on a runtime whose blocks cannot be quantized here, with the fix."""
    if is_quantized(precision) and _canonical(runtime) not in (*QDQ_RUNTIMES, "tensorrt"):
        raise UsageError(
            f"an {precision} latency table needs quantized blocks, which {runtime} cannot run here; "
            f"use --runtime onnxruntime or openvino (QDQ ONNX), or tensorrt on the device"
        )


def calib_activations(
    input_shape: tuple[int, ...], *, batch: int = 1, n: int = CALIB_SAMPLES, seed: int = 0
) -> list[np.ndarray]:
    """``n`` seeded activations of shape ``(batch, *input_shape)`` (module docstring: why normal)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, *input_shape)).astype(np.float32) for _ in range(max(1, n))]


def quantize_block(
    onnx: Path, input_shape: tuple[int, ...], out: Path, *, batch: int = 1, seed: int = 0, n_calib: int = CALIB_SAMPLES
) -> Path:
    """Quantize one exported block (ONNX, fixed input shape) to a QDQ ONNX at ``out``."""
    try:
        from compress.quantize.onnxruntime import quantize_onnx_int8
    except ImportError as err:  # the quantization core is a separate package of this project
        from compress.core.errors import MissingDependency

        raise MissingDependency(
            f"int8 latency tables need compress.quantize ({err}); "
            "pip install onnxruntime (its quantization tools) and reinstall compress"
        ) from None
    calib = calib_activations(tuple(input_shape), batch=batch, n=n_calib, seed=seed)
    with _quiet_axis_warnings():
        return Path(
            quantize_onnx_int8(
                Path(onnx), Path(out), calib=calib, input_name="input", per_channel=True, method="minmax", seed=seed
            )
        )


class _quiet_axis_warnings:
    """Drop ONNX Runtime's "Axis 1 is out-of-range for weight '...' with rank 1" root-logger warning
    while blocks are quantized: per-channel quantization of a 1-D weight (a norm's scale) falls back
    to one range, which is what it should do; a table of a hundred blocks printed it hundreds of
    times. Every other log record passes."""

    @staticmethod
    def _keep(record: Any) -> bool:
        msg = str(record.getMessage())
        return not (msg.startswith("Axis ") and "is out-of-range for weight" in msg)

    def __enter__(self) -> None:
        import logging

        logging.getLogger().addFilter(self._keep)

    def __exit__(self, *exc: object) -> None:
        import logging

        logging.getLogger().removeFilter(self._keep)


def has_weighted_ops(onnx: Path) -> bool:
    """Whether the quantizer has anything to quantize in ``onnx`` (a Conv/ConvTranspose/Gemm/MatMul)."""
    import onnx as onnx_lib

    from compress.quantize.onnxruntime import WEIGHTED_OPS

    return any(n.op_type in WEIGHTED_OPS for n in onnx_lib.load(str(onnx)).graph.node)


def quantized_artifact(onnx: Path, input_shape: tuple[int, ...], *, batch: int, seed: int) -> Any:
    """The QDQ file beside ``onnx`` (``<name>.int8.onnx``); ``onnx`` itself for a block without
    weighted layers (a pooling or normalisation block alone): the quantizer leaves those in float,
    so the table times them as they are, and the calibration accounts for how they run between
    quantized neighbours in a whole model."""
    if not has_weighted_ops(Path(onnx)):
        return Path(onnx)
    out = Path(onnx).with_name(Path(onnx).stem + ".int8.onnx")
    return quantize_block(Path(onnx), tuple(input_shape), out, batch=batch, seed=seed)
