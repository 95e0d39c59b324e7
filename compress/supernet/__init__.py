"""Supernet layer: search spaces as data, elastic supernets, static export, checkpoints.

Light imports only here (no torch): ``SearchSpace``, ``SubnetConfig``, ``BlockSpec``, the
family registry. Torch-side names are loaded lazily on first access.

>>> from compress.supernet import get_space, family_names
>>> sorted(family_names())
['convnext-small-input', 'mbv3-small-input', 'ofa-mbv3', 'ofa-resnet']
"""

from __future__ import annotations

from compress.core.lazy import lazy_attributes
from compress.supernet.families import FAMILIES, Family, family_names, get_space
from compress.supernet.space import BlockSpec, Cost, SearchSpace, SubnetConfig, make_divisible

_LAZY = {
    "Supernet": "compress.supernet.base",
    "resize_input": "compress.supernet.base",
    "front_permutation": "compress.supernet.base",
    "build_supernet": "compress.supernet.build",
    "build_static": "compress.supernet.static",
    "build_block_module": "compress.supernet.static",
    "StaticNet": "compress.supernet.static",
    "save_checkpoint": "compress.supernet.checkpoint",
    "load_checkpoint": "compress.supernet.checkpoint",
    "read_checkpoint_header": "compress.supernet.checkpoint",
    "checkpoint_info": "compress.supernet.checkpoint",
    "default_checkpoint_path": "compress.supernet.checkpoint",
    "recalibrate_bn": "compress.supernet.bn",
    "import_ofa": "compress.supernet.ofa_import",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "FAMILIES",
    "Family",
    "family_names",
    "get_space",
    "BlockSpec",
    "Cost",
    "SearchSpace",
    "SubnetConfig",
    "make_divisible",
    *_LAZY,
]
