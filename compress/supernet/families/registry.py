"""The supernet family registry: :data:`FAMILIES`, :func:`register_family`, :func:`get_space`.

The lowest module of ``compress.supernet.families``: each family module registers itself here,
and the package ``__init__`` imports every family module, so the registry is full whenever the
package is imported (and no family module imports the package).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compress.core.errors import UsageError
from compress.core.registry import Registry
from compress.supernet.space import SearchSpace


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    build_space: Callable[..., SearchSpace]

    def options(self) -> dict[str, Any]:
        return {k: p.default for k, p in inspect.signature(self.build_space).parameters.items()}


FAMILIES: Registry[Family] = Registry("supernet family")


def register_family(name: str, description: str) -> Callable[[Callable[..., SearchSpace]], Callable[..., SearchSpace]]:
    def deco(fn: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
        FAMILIES.add(name, Family(name, description, fn))
        return fn

    return deco


def get_space(family: str, **options: Any) -> SearchSpace:
    """The search space of a registered family (options are validated against the builder)."""
    fam = FAMILIES.get(family)
    allowed = fam.options()
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise UsageError(f"unknown option(s) {bad} for family '{fam.name}'; allowed: {sorted(allowed)}")
    return fam.build_space(**options)


def family_names() -> list[str]:
    return FAMILIES.names()
