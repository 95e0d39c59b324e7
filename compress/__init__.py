"""compress: hardware-aware compression and export of vision models.

The public API is a set of plain functions with keyword-only options; the CLI is a thin
layer over them. Heavy libraries (torch, onnxruntime, openvino) are imported lazily, so
``import compress`` is cheap.

>>> import compress
>>> [d.name for d in compress.devices()][:1]  # doctest: +SKIP
['arm-cortex-a76']
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> "module:attribute"; resolved on first access so that importing compress stays light.
_LAZY: dict[str, str] = {
    "devices": "compress.hardware.profile:devices",
    "get_space": "compress.supernet:get_space",
    "build_supernet": "compress.supernet:build_supernet",
    "load_checkpoint": "compress.supernet:load_checkpoint",
    "get_profile": "compress.hardware.profile:get_profile",
    "load_dataset": "compress.data:load_dataset",
    "dataset_names": "compress.data:dataset_names",
    "export_model": "compress.export.api:export_model",
    "LatencyModel": "compress.latency.predict:LatencyModel",
    "profile_table": "compress.latency.profile:profile_table",
    "validate_latency": "compress.latency.validate:validate",
    "measure_block": "compress.latency.measure:measure_block",
    "bench": "compress.bench.api:bench",
    "search": "compress.search.api:search",
    "prune_ftwt": "compress.prune.ftwt.api:prune_ftwt",
    "train_supernet": "compress.train:train",
    "TrainConfig": "compress.train.config:TrainConfig",
    "evaluate_supernet": "compress.train.evaluate:evaluate_supernet",
    "quantize": "compress.quantize.api:quantize",
}


def _register_lazy(name: str, target: str) -> None:
    _LAZY[name] = target


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'compress' has no attribute '{name}'")
    mod, _, attr = target.partition(":")
    value = getattr(importlib.import_module(mod), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
