"""compress: hardware-aware compression and export of vision models.

The public API is a set of plain functions with keyword-only options; the CLI is a thin
layer over them. Heavy libraries (torch, onnxruntime, openvino) are imported lazily, so
``import compress`` is cheap.

>>> import compress
>>> [d.name for d in compress.devices()][:1]  # doctest: +SKIP
['arm-cortex-a76']
"""

from __future__ import annotations

from typing import Any

# ``compress.search`` and ``compress.quantize`` are both a subpackage and a public function. Python
# sets the attribute ``compress.<sub>`` to the subpackage the first time the subpackage is imported,
# so both (light: a docstring each) are imported here, first; the functions defined below then keep
# the names for good. Import their submodules with ``from compress.search import api`` (``import
# compress.search.api as api`` resolves through the attribute and finds the function).
from compress import (
    quantize as _quantize_package,  # noqa: F401
    search as _search_package,  # noqa: F401
)
from compress.core.lazy import lazy_attributes, resolve

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
    "prune_ftwt": "compress.prune.ftwt.api:prune_ftwt",
    "train_supernet": "compress.train:train",
    "TrainConfig": "compress.train.config:TrainConfig",
    "evaluate_supernet": "compress.train.evaluate:evaluate_supernet",
}

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


def search(*args: Any, **kwargs: Any) -> Any:
    """Search subnets under device latency budgets: :func:`compress.search.api.search` (same options)."""
    return resolve("compress.search.api:search")(*args, **kwargs)


def quantize(*args: Any, **kwargs: Any) -> Any:
    """Post-training INT8/FP16 quantization: :func:`compress.quantize.api.quantize` (same options)."""
    return resolve("compress.quantize.api:quantize")(*args, **kwargs)
