"""Regularised evolution (OFA's EvolutionFinder), fully batched over gene arrays.

OFA defaults (ALGORITHMS.md §5.3): population 100, 500 generations, parent ratio 0.25, mutation
ratio 0.5 (50 children by mutation, 50 by uniform crossover), per-gene mutation probability 0.1.
Each generation keeps the top 25 by predicted accuracy and adds 100 children; children are
rejection-sampled against the constraints with a bounded number of retries (rows still infeasible
after ``max_retries`` batched rounds become a copy of a feasible parent), so the search never hangs.

>>> import numpy as np
>>> from compress.search.protocols import GeneSpace
>>> from compress.search.constraints import ConstraintSet
>>> gs = GeneSpace(sizes=np.array([3] * 8))
>>> cs = ConstraintSet({"latency_ms": lambda g: g.sum(1).astype(float)}, {"latency_ms": 8})
>>> class Acc:
...     def predict_genes(self, g): return (g * np.arange(8)).sum(1) / 100.0
>>> r = evolve(gs, Acc(), cs, rng=np.random.default_rng(0), generations=30)
>>> bool(r.values["latency_ms"][0] <= 8)
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from compress.search.constraints import ConstraintSet, concat, take
from compress.search.protocols import AccuracyEstimator, GeneSpace
from compress.search.registry import SEARCHERS, SearchTask


class InfeasibleError(Exception):
    """No candidate meets the constraints; ``best`` holds the least-violating row found."""

    def __init__(self, message: str, genes: np.ndarray | None = None, values: dict | None = None) -> None:
        super().__init__(message)
        self.genes = genes
        self.values = values or {}


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """Run small batched matmuls on one BLAS thread: on busy 2-core machines OpenBLAS's thread pool
    made a 100x400x400 product 5-10x slower than one thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


# ---------------------------------------------------------------------------- genetic operators
def mutate(space: GeneSpace, parents: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Resample each mutation group of each row with its probability (batched, one call)."""
    n = parents.shape[0]
    flips = rng.random((n, space.n_groups)) < space.mutate_prob[None, :]  # type: ignore[index]
    mask = flips[:, space.groups]  # type: ignore[index]
    fresh = space.sample(rng, n)
    return np.where(mask, fresh, parents)


def crossover(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform crossover: each gene from either parent with probability 1/2 (batched)."""
    return np.where(rng.random(a.shape) < 0.5, a, b)


def sample_feasible(
    space: GeneSpace,
    constraints: ConstraintSet,
    rng: np.random.Generator,
    n: int,
    *,
    batch: int = 1024,
    max_rounds: int = 50,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Up to ``n`` uniformly sampled feasible rows, from at most ``max_rounds`` batches (may return fewer)."""
    got: list[np.ndarray] = []
    vals: list[dict[str, np.ndarray]] = []
    have = 0
    for _ in range(max_rounds):
        cand = space.sample(rng, max(batch, 2 * (n - have)))
        ok, v = constraints.check(cand)
        idx = np.flatnonzero(ok)[: n - have]
        if idx.size:
            got.append(cand[idx])
            vals.append(take(v, idx))
            have += idx.size
        if have >= n:
            break
    if not got:
        return np.empty((0, space.n_genes), dtype=np.int64), {k: np.empty(0) for k in constraints.metrics}
    out_v = vals[0]
    for v in vals[1:]:
        out_v = concat(out_v, v)
    return np.concatenate(got), out_v


def make_children(
    space: GeneSpace,
    parents: np.ndarray,
    constraints: ConstraintSet,
    rng: np.random.Generator,
    *,
    n_mutation: int,
    n_crossover: int,
    max_retries: int = 20,
    oversample: float = 2.0,
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """``n_mutation`` mutants and ``n_crossover`` crossovers of ``parents`` (all feasible).

    Rejection sampling, batched: each round proposes ``oversample`` x (still missing) children of
    each kind from fresh random parents, scores them in one call, and fills the missing slots with
    the feasible ones in proposal order (each child is the first feasible proposal of an i.i.d.
    stream, exactly as OFA's per-child ``while True`` loop, but bounded). ``oversample`` adapts to
    the acceptance rate seen. After ``max_retries`` extra rounds the slots still missing become a
    copy of a random (feasible) parent. Returns (children, their metric values, number of fallbacks).
    """
    k = parents.shape[0]
    need = {"mut": n_mutation, "cross": n_crossover}
    got_g: dict[str, list[np.ndarray]] = {"mut": [], "cross": []}
    got_v: dict[str, list[dict[str, np.ndarray]]] = {"mut": [], "cross": []}
    factor = max(1.0, float(oversample))
    for _ in range(max_retries + 1):
        nm = int(np.ceil(need["mut"] * factor)) if need["mut"] else 0
        nc = int(np.ceil(need["cross"] * factor)) if need["cross"] else 0
        if nm + nc == 0:
            break
        cm = mutate(space, parents[rng.integers(0, k, size=nm)], rng)
        cc = crossover(parents[rng.integers(0, k, size=nc)], parents[rng.integers(0, k, size=nc)], rng)
        cand = np.concatenate([cm, cc])
        ok, vals = constraints.check(cand)
        rate = max(float(ok.mean()), 1e-3)
        for kind, lo, hi in (("mut", 0, nm), ("cross", nm, nm + nc)):
            idx = lo + np.flatnonzero(ok[lo:hi])[: need[kind]]
            if idx.size:
                got_g[kind].append(cand[idx])
                got_v[kind].append(take(vals, idx))
                need[kind] -= idx.size
        factor = float(np.clip(1.2 / rate, 1.0, 16.0))
    fallbacks = need["mut"] + need["cross"]
    for kind in ("mut", "cross"):
        if need[kind]:
            fb = parents[rng.integers(0, k, size=need[kind])]
            got_g[kind].append(fb)
            got_v[kind].append(constraints.evaluate(fb))
    parts_g = got_g["mut"] + got_g["cross"]
    parts_v = got_v["mut"] + got_v["cross"]
    if not parts_g:
        return np.empty((0, space.n_genes), dtype=np.int64), {m: np.empty(0) for m in constraints.metrics}, 0
    out_v = {m: np.concatenate([v[m] for v in parts_v]) for m in constraints.metrics}
    return np.concatenate(parts_g), out_v, int(fallbacks)


# ---------------------------------------------------------------------------- the search
@dataclass
class EvolutionResult:
    """Final population sorted by score (best first) and the archive of every evaluated child."""

    genes: np.ndarray
    scores: np.ndarray
    values: dict[str, np.ndarray]
    history: np.ndarray  # best score after each generation
    archive_genes: np.ndarray
    archive_scores: np.ndarray
    archive_values: dict[str, np.ndarray]
    fallbacks: int = 0
    evaluations: int = 0
    info: dict = field(default_factory=dict)


def evolve(
    space: GeneSpace,
    accuracy: AccuracyEstimator,
    constraints: ConstraintSet,
    *,
    rng: np.random.Generator,
    population: int = 100,
    generations: int = 500,
    parent_ratio: float = 0.25,
    mutation_ratio: float = 0.5,
    max_retries: int = 20,
    seeds: np.ndarray | None = None,
    keep_archive: bool = True,
    distinct_parents: bool = False,
) -> EvolutionResult:
    """Maximise ``accuracy.predict_genes`` subject to ``constraints`` (OFA's regularised evolution).

    ``seeds``: optional feasible rows to put in the initial population (e.g. the minimum-latency
    config when random samples are rarely feasible). ``distinct_parents``: parents are the best
    *distinct* rows (OFA keeps copies; in small spaces, such as UPDP's block masks, copies of the
    best row crowd the parents out and the search stalls). Raises :class:`InfeasibleError` when no
    feasible row is found.
    """
    if population < 2 or generations < 0:
        raise ValueError("population must be >= 2 and generations >= 0")
    with single_thread_blas():
        return _evolve(
            space,
            accuracy,
            constraints,
            rng=rng,
            population=population,
            generations=generations,
            parent_ratio=parent_ratio,
            mutation_ratio=mutation_ratio,
            max_retries=max_retries,
            seeds=seeds,
            keep_archive=keep_archive,
            distinct_parents=distinct_parents,
        )


def _evolve(
    space: GeneSpace,
    accuracy: AccuracyEstimator,
    constraints: ConstraintSet,
    *,
    rng: np.random.Generator,
    population: int,
    generations: int,
    parent_ratio: float,
    mutation_ratio: float,
    max_retries: int,
    seeds: np.ndarray | None,
    keep_archive: bool,
    distinct_parents: bool = False,
) -> EvolutionResult:
    n_parents = max(1, int(round(parent_ratio * population)))
    n_mut = int(round(mutation_ratio * population))
    n_cross = population - n_mut

    pop, vals = sample_feasible(space, constraints, rng, population)
    if seeds is not None and len(seeds):
        s = space.check(seeds)
        ok, sv = constraints.check(s)
        if ok.any():
            pop, vals = (
                np.concatenate([s[ok], pop])[:population],
                {k: np.concatenate([sv[k][ok], vals[k]])[:population] for k in vals},
            )
    if pop.shape[0] == 0:
        raise InfeasibleError("no random candidate meets the constraints")
    fallbacks = 0
    if pop.shape[0] < population:  # few feasible random rows: fill with their feasible offspring
        kids, kv, fb = make_children(
            space, pop, constraints, rng, n_mutation=population - pop.shape[0], n_crossover=0, max_retries=max_retries
        )
        pop, vals, fallbacks = np.concatenate([pop, kids]), concat(vals, kv), fallbacks + fb
    scores = np.asarray(accuracy.predict_genes(pop), dtype=np.float64).reshape(-1)
    evaluations = pop.shape[0]
    history = np.empty(generations)
    cap = population * generations if keep_archive else 0
    a_genes = np.empty((cap + pop.shape[0], space.n_genes), dtype=np.int16 if space.sizes.max() < 32000 else np.int64)
    a_scores = np.empty(cap + pop.shape[0])
    a_vals = {k: np.empty(cap + pop.shape[0]) for k in vals}
    fill = 0
    if keep_archive:
        a_genes[: pop.shape[0]] = pop
        a_scores[: pop.shape[0]] = scores
        for k in a_vals:
            a_vals[k][: pop.shape[0]] = vals[k]
        fill = pop.shape[0]
    for gen in range(generations):
        order = np.argsort(-scores, kind="stable")
        if distinct_parents:  # first (best) occurrence of each row, still best first
            _, first = np.unique(pop[order], axis=0, return_index=True)
            order = order[np.sort(first)]
        order = order[:n_parents]
        parents, p_scores, p_vals = pop[order], scores[order], take(vals, order)
        history[gen] = p_scores[0]
        kids, kv, fb = make_children(
            space, parents, constraints, rng, n_mutation=n_mut, n_crossover=n_cross, max_retries=max_retries
        )
        fallbacks += fb
        ks = np.asarray(accuracy.predict_genes(kids), dtype=np.float64).reshape(-1)
        evaluations += kids.shape[0]
        if keep_archive:
            a_genes[fill : fill + population] = kids
            a_scores[fill : fill + population] = ks
            for k in a_vals:
                a_vals[k][fill : fill + population] = kv[k]
            fill += population
        pop = np.concatenate([parents, kids])
        scores = np.concatenate([p_scores, ks])
        vals = concat(p_vals, kv)
    order = np.argsort(-scores, kind="stable")
    if generations:
        history[-1] = max(history[-1], scores[order[0]])
    return EvolutionResult(
        genes=pop[order],
        scores=scores[order],
        values=take(vals, order),
        history=history,
        archive_genes=a_genes[:fill].astype(np.int64),
        archive_scores=a_scores[:fill],
        archive_values={k: v[:fill] for k, v in a_vals.items()},
        fallbacks=fallbacks,
        evaluations=evaluations,
    )


def minimise_metric(
    space: GeneSpace,
    constraints: ConstraintSet,
    metric: str,
    *,
    rng: np.random.Generator,
    population: int = 100,
    generations: int = 60,
    seeds: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The row with the smallest ``metric`` (e.g. latency) meeting every *other* limit, by a short evolution.

    Used to report the smallest reachable latency when a budget is infeasible.
    """
    relaxed = constraints.with_limits(**{metric: None})

    class _Neg:
        def predict_genes(self, g: np.ndarray) -> np.ndarray:
            return -constraints.metrics[metric](g)

    res = evolve(
        space, _Neg(), relaxed, rng=rng, population=population, generations=generations, seeds=seeds, keep_archive=False
    )
    return res.genes[0], take(res.values, np.array([0]))


@SEARCHERS.register("evolution")
def _evolution_searcher(task: SearchTask) -> EvolutionResult:
    """OFA's regularised evolution from the task's anchors (random stream salt 2)."""
    return evolve(
        task.space,
        task.accuracy,
        task.constraints,
        rng=task.rng(2),
        population=task.population,
        generations=task.generations,
        seeds=task.anchors,
    )
