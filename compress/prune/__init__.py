"""Pruning methods, dispatched by name: ``updp`` (depth pruning with block merging) and ``ftwt``
(dynamic channel gating). Each method module registers a function in :data:`METHODS` that takes
keyword-only options and returns a JSON-able result dict.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from compress.core.registry import Registry

METHODS: Registry[Callable[..., dict[str, Any]]] = Registry("pruning method")

_METHOD_MODULES = {"updp": "compress.prune.updp.api", "ftwt": "compress.prune.ftwt.api"}


def prune(*, method: str, **options: Any) -> dict[str, Any]:
    """Run a pruning method by name (``updp`` or ``ftwt``); see each method's API for options."""
    from compress.core.errors import unknown

    if method not in _METHOD_MODULES:
        raise unknown("pruning method", method, _METHOD_MODULES)
    importlib.import_module(_METHOD_MODULES[method])
    return METHODS.get(method)(**options)
