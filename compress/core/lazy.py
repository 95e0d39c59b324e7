"""Lazy package attributes (PEP 562), written once for every package that wants them.

A package keeps ``import`` cheap by naming its heavy attributes in a table and resolving each on
first access; the resolved value is cached in the package's namespace, so ``__getattr__`` runs
once per name. ``compress``, ``compress.supernet`` and ``compress.export`` use it::

    __getattr__, __dir__ = lazy_attributes(__name__, {"export_model": "compress.export.api:export_model"})

A target is ``"module:attribute"``; a bare ``"module"`` means the attribute of the same name.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def resolve(target: str, name: str = "") -> Any:
    """The object named by ``"module:attribute"`` (or ``"module"`` and ``name``), imported now."""
    mod, _, attr = target.partition(":")
    return getattr(importlib.import_module(mod), attr or name)


def lazy_attributes(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the module ``package`` resolving the names of ``table``."""

    def __getattr__(name: str) -> Any:
        target = table.get(name)
        if target is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = resolve(target, name)
        setattr(sys.modules[package], name, value)  # cached: the next access never gets here
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *table})

    return __getattr__, __dir__
