"""The built-in searchers, registered into :data:`compress.search.registry.SEARCHERS` on import.

Import this module (not the registry alone) wherever a searcher is looked up by name: the search
API, the CLI's ``--algorithm`` and the pipeline's ``search.algorithm``.
"""

from __future__ import annotations

from compress.search import evolution as evolution, nsga2 as nsga2, random as random  # each registers itself
from compress.search.registry import SEARCHERS as SEARCHERS, SearchTask as SearchTask


def algorithm_names() -> list[str]:
    """Registered searcher names, in registration order (``evolution`` first: the default)."""
    return SEARCHERS.names()
