"""Subnet search against device latency budgets (OFA-style evolution, NSGA-II, random).

Searchers work on integer gene arrays and depend only on two protocols
(:mod:`compress.search.protocols`): a latency estimator and an accuracy estimator, each with
``predict_genes(G) -> (N,) array``. The public entry point is :func:`compress.search.api.search`.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    """``compress.search`` is both this package and the public function: importing a submodule
    (``compress.search.api``) rebinds the attribute ``compress.search`` to the package, so the
    package forwards calls to :func:`compress.search.api.search` (module ``__class__`` assignment is
    the documented way to customise a module)."""

    def __call__(self, **kwargs: Any) -> Any:
        from compress.search.api import search

        return search(**kwargs)


sys.modules[__name__].__class__ = _CallableModule
