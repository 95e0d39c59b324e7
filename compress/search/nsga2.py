"""NSGA-II (pymoo) for the accuracy/latency Pareto front, with our batched gene operators.

Objectives: minimise latency, maximise predicted accuracy. Every limited metric of the
:class:`ConstraintSet` becomes a pymoo inequality constraint (``value - limit <= 0``), so the
front holds feasible rows only. pymoo's seeded ``random_state`` drives every operator: same seed,
same front.
"""

from __future__ import annotations

import numpy as np

from compress.search.constraints import ConstraintSet, take
from compress.search.evolution import EvolutionResult, InfeasibleError, crossover, mutate
from compress.search.pareto import front_indices
from compress.search.protocols import AccuracyEstimator, GeneSpace
from compress.search.registry import SEARCHERS, SearchTask


def nsga2_search(
    space: GeneSpace,
    accuracy: AccuracyEstimator,
    constraints: ConstraintSet,
    *,
    latency_metric: str = "latency_ms",
    seed: int = 0,
    population: int = 100,
    generations: int = 200,
) -> EvolutionResult:
    """Run NSGA-II; the result's rows are the feasible non-dominated front (sorted by accuracy desc)."""
    from compress.core.extras import require

    require("pymoo", what="NSGA-II search (the Pareto front without a latency budget)")
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.crossover import Crossover
    from pymoo.core.mutation import Mutation
    from pymoo.core.problem import Problem
    from pymoo.core.sampling import Sampling
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.optimize import minimize

    limited = [k for k, v in constraints.limits.items() if v is not None]
    seen_g: list[np.ndarray] = []
    seen_s: list[np.ndarray] = []
    seen_v: list[dict[str, np.ndarray]] = []

    class _Problem(Problem):
        def __init__(self) -> None:
            super().__init__(
                n_var=space.n_genes,
                n_obj=2,
                n_ieq_constr=len(limited),
                xl=np.zeros(space.n_genes),
                xu=(space.sizes - 1).astype(float),
                vtype=int,
            )

        def _evaluate(self, x, out, *args, **kwargs):  # noqa: ANN001 - pymoo signature
            g = np.rint(x).astype(np.int64)
            vals = constraints.evaluate(g)
            acc = np.asarray(accuracy.predict_genes(g), dtype=np.float64).reshape(-1)
            seen_g.append(g)
            seen_s.append(acc)
            seen_v.append(vals)
            out["F"] = np.column_stack([vals[latency_metric], -acc])
            if limited:
                out["G"] = np.column_stack([vals[k] - constraints.limits[k] for k in limited])

    class _Sampling(Sampling):
        def _do(self, problem, n_samples, *args, random_state=None, **kwargs):  # noqa: ANN001
            return space.sample(random_state, n_samples).astype(float)

    class _Crossover(Crossover):
        def __init__(self) -> None:
            super().__init__(2, 2)

        def _do(self, problem, X, *args, random_state=None, **kwargs):  # noqa: ANN001, N803
            a, b = X[0].astype(np.int64), X[1].astype(np.int64)
            mask = random_state.random(a.shape) < 0.5
            return np.stack([np.where(mask, a, b), np.where(mask, b, a)]).astype(float)

    class _Mutation(Mutation):
        def _do(self, problem, X, *args, random_state=None, **kwargs):  # noqa: ANN001, N803
            return mutate(space, X.astype(np.int64), random_state).astype(float)

    algo = NSGA2(
        pop_size=population,
        sampling=_Sampling(),
        crossover=_Crossover(),
        mutation=_Mutation(),
        repair=RoundingRepair(),
        eliminate_duplicates=True,
    )
    minimize(_Problem(), algo, ("n_gen", generations), seed=seed, verbose=False)
    g = np.concatenate(seen_g)
    s = np.concatenate(seen_s)
    v = {k: np.concatenate([sv[k] for sv in seen_v]) for k in seen_v[0]}
    ok = constraints.feasible(v)
    if not ok.any():
        raise InfeasibleError("no candidate evaluated by NSGA-II meets the constraints")
    fi = np.flatnonzero(ok)
    front = fi[front_indices(v[latency_metric][fi], s[fi])]
    order = front[np.argsort(-s[front], kind="stable")]
    return EvolutionResult(
        genes=g[order],
        scores=s[order],
        values=take(v, order),
        history=np.array([s[ok].max()]),
        archive_genes=g[fi],
        archive_scores=s[fi],
        archive_values=take(v, fi),
        evaluations=int(g.shape[0]),
    )


@SEARCHERS.register("nsga2")
def _nsga2_searcher(task: SearchTask) -> EvolutionResult:
    """NSGA-II seeded from the task's stream (salt 1) through pymoo's integer seed."""
    return nsga2_search(
        task.space,
        task.accuracy,
        task.constraints,
        seed=int(task.rng(1).integers(2**31 - 1)),
        population=task.population,
        generations=task.generations,
    )


__all__ = ["nsga2_search", "crossover"]
