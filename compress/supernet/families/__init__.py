"""Supernet families, registered in one :data:`FAMILIES` registry (one module per family).

A family is a named search-space builder; every family uses the generic
:class:`~compress.supernet.base.Supernet`. Options are keyword arguments of the builder
(``num_classes``, ``in_channels``, and family-specific ones such as ``width_mult`` for ofa-mbv3).
"""

from __future__ import annotations

# The registry lives in .registry; it is filled here, from the package __init__: importing a family
# module registers it.
from compress.supernet.families import convnext_small, mbv3_small, ofa_mbv3, ofa_resnet  # noqa: F401
from compress.supernet.families.registry import FAMILIES, Family, family_names, get_space, register_family

__all__ = ["FAMILIES", "Family", "family_names", "get_space", "register_family"]
