"""Export and verification: ONNX, OpenVINO IR and TensorRT engines, with preflight and parity.

Public functions (keyword-only options; heavy libraries are imported when called)::

    from compress.export import export_model, to_onnx, to_openvino, to_tensorrt, preflight, check_parity
    res = export_model("timm:resnet18", out="runs/r18", formats=["onnx", "openvino"])
    res.formats[1]["max_rel_err"], res.passed

Runtimes shared with profiling and benchmarking live in :mod:`compress.export.runtimes`.
"""

from __future__ import annotations

from compress.core.lazy import lazy_attributes

_LAZY = {
    "export_model": "compress.export.api:export_model",
    "ExportResult": "compress.export.api:ExportResult",
    "ExportConfig": "compress.export.context:ExportConfig",
    "to_onnx": "compress.export.onnx:to_onnx",
    "to_openvino": "compress.export.openvino:to_openvino",
    "to_tensorrt": "compress.export.tensorrt:to_tensorrt",
    "write_bundle": "compress.export.tensorrt:write_bundle",
    "preflight": "compress.export.preflight:preflight",
    "check_parity": "compress.export.parity:check_parity",
    "THRESHOLDS": "compress.export.parity:THRESHOLDS",
    "resolve_formats": "compress.export.formats:resolve_formats",
    "format_table": "compress.export.formats:format_table",
    "FORMATS": "compress.export.formats:FORMATS",
    "get_runner": "compress.export.runtimes:get_runner",
}

__all__ = sorted(_LAZY)

# The format registry (compress.export.formats) is filled here: each format module registers itself
# on import. None of them imports torch, onnx or openvino at module level.
from compress.export import onnx, openvino, tensorrt  # noqa: E402,F401

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
