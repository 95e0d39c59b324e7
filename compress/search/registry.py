"""The searchers, by name: one signature, registered by the module that implements each.

A searcher takes one :class:`SearchTask` (the gene space, the accuracy estimator, the constraints,
the seeds and the budget of evaluations) and returns an
:class:`~compress.search.evolution.EvolutionResult`. ``compress.search.api.search`` dispatches on
``SEARCHERS.get(name)``; the pipeline config and the CLI validate names against the same registry
(:mod:`compress.search.searchers` imports the built-in ones).

Adding a searcher touches its own module and a test::

    from compress.search.registry import SEARCHERS, SearchTask

    @SEARCHERS.register("my-search")
    def _my_search(task: SearchTask) -> EvolutionResult:
        rng = task.rng(2)             # an independent, reproducible stream per (seed, device)
        ...

plus one import line in :mod:`compress.search.searchers` for a built-in (a plugin module is imported
by its user before calling ``search``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from compress.core.registry import Registry

if TYPE_CHECKING:
    from compress.search.constraints import ConstraintSet
    from compress.search.evolution import EvolutionResult
    from compress.search.protocols import AccuracyEstimator, GeneSpace


@dataclass(frozen=True)
class SearchTask:
    """Everything a searcher may use; same task, same result.

    ``seed`` / ``stream``: the search seed and the index of the device in the request, so each device
    gets its own reproducible random stream (:meth:`rng`). ``anchors``: feasible rows to start from
    (the fastest subnet, so a tight budget never starts empty); searchers may ignore them.
    ``population`` x ``generations`` is the evaluation budget (random search samples that many rows).
    """

    space: GeneSpace
    accuracy: AccuracyEstimator
    constraints: ConstraintSet
    seed: int
    stream: int
    population: int
    generations: int
    anchors: np.ndarray | None = None

    def rng(self, salt: int) -> np.random.Generator:
        """The generator for ``(seed, stream, salt)``: searchers pick a ``salt`` so they do not share draws."""
        return np.random.default_rng([self.seed, self.stream, salt])


Searcher = Callable[[SearchTask], "EvolutionResult"]

SEARCHERS: Registry[Searcher] = Registry("algorithm")
