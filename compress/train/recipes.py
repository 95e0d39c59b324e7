"""Every training recipe, registered: :func:`get_recipe` looks one up by name.

The recipe modules (:mod:`.deps`, :mod:`.ofa_ps`, :mod:`.bignas`) build on :mod:`.recipe` (the
base class and the :data:`~compress.train.recipe.RECIPES` registry) and register themselves when
imported; this module sits above them and imports them all, so ``recipe.py`` never imports a recipe.
"""

from __future__ import annotations

from compress.train import bignas, deps, ofa_ps  # noqa: F401  (registers each recipe)
from compress.train.recipe import RECIPES, Recipe


def get_recipe(name: str) -> type[Recipe]:
    """The recipe class registered as ``name`` (one-line error with close matches otherwise)."""
    return RECIPES.get(name)
