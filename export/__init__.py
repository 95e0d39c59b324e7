"""Export and verification: ONNX, OpenVINO IR and TensorRT engines, with preflight and parity.

Public functions (keyword-only options; heavy libraries are imported when called)::

    from export import export_model, to_onnx, to_openvino, to_tensorrt, preflight, check_parity
    res = export_model("timm:resnet18", out="runs/r18", formats=["onnx", "openvino"])
    res.formats[1]["max_rel_err"], res.passed

Runtimes shared with profiling and benchmarking live in :mod:`export.runtimes`.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_model": "export.api:export_model",
    "ExportResult": "export.api:ExportResult",
    "ExportConfig": "export.context:ExportConfig",
    "to_onnx": "export.onnx:to_onnx",
    "to_openvino": "export.openvino:to_openvino",
    "to_tensorrt": "export.tensorrt:to_tensorrt",
    "write_bundle": "export.tensorrt:write_bundle",
    "preflight": "export.preflight:preflight",
    "check_parity": "export.parity:check_parity",
    "THRESHOLDS": "export.parity:THRESHOLDS",
    "resolve_formats": "export.formats:resolve_formats",
    "format_table": "export.formats:format_table",
    "FORMATS": "export.formats:FORMATS",
    "get_runner": "export.runtimes:get_runner",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'export' has no attribute '{name}'")
    mod, _, attr = target.partition(":")
    value = getattr(importlib.import_module(mod), attr)
    if name == "FORMATS":
        importlib.import_module("export.formats")._ensure()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
