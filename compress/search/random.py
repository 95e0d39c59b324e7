"""Random search: the baseline every other searcher must beat (batched sampling, bounded)."""

from __future__ import annotations

import numpy as np

from compress.search.constraints import ConstraintSet, take
from compress.search.evolution import EvolutionResult, InfeasibleError, sample_feasible
from compress.search.protocols import AccuracyEstimator, GeneSpace
from compress.search.registry import SEARCHERS, SearchTask


def random_search(
    space: GeneSpace,
    accuracy: AccuracyEstimator,
    constraints: ConstraintSet,
    *,
    rng: np.random.Generator,
    samples: int = 10_000,
    batch: int = 4096,
    max_rounds: int = 200,
) -> EvolutionResult:
    """Score ``samples`` uniformly random feasible rows (at most ``max_rounds`` sampling batches)."""
    genes, vals = sample_feasible(space, constraints, rng, samples, batch=batch, max_rounds=max_rounds)
    if genes.shape[0] == 0:
        raise InfeasibleError("no random candidate meets the constraints")
    scores = np.asarray(accuracy.predict_genes(genes), dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    return EvolutionResult(
        genes=genes[order],
        scores=scores[order],
        values=take(vals, order),
        history=np.maximum.accumulate(scores),
        archive_genes=genes,
        archive_scores=scores,
        archive_values=vals,
        evaluations=int(genes.shape[0]),
    )


@SEARCHERS.register("random")
def _random_searcher(task: SearchTask) -> EvolutionResult:
    """``population x generations`` random feasible rows (the same evaluation budget as evolution; salt 2)."""
    return random_search(
        task.space, task.accuracy, task.constraints, rng=task.rng(2), samples=task.population * task.generations
    )
