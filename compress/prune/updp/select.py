"""UPDP stage 2: per-block decisions (latency) and block selection (accuracy proxy + latency).

**Per-block decision.** For every candidate the original block and each merged form are timed
(:class:`~compress.prune.updp.latency.BlockLatency`); the fastest merged form is the block's form,
and the block is *eligible* only if that form is faster than the original by at least
``min_gain`` (default 3 %, a guard against timing noise). So pruning never makes a block slower on
its target, and the report shows each decision with the numbers behind it.

**Predicted model latency** of a mask = measured/estimated latency of the whole unpruned model
minus the sum of the chosen blocks' savings (additive per-block model [R]).

**Selection.** Masks over eligible blocks are scored by ``score(mask)`` (higher is better; the API
uses an accuracy proxy, see :mod:`compress.prune.updp.api`). With a block count K: all
C(n, K) masks are enumerated when there are at most ``max_enumerate``; otherwise the search
package's OFA-style evolution (:func:`compress.search.evolution.evolve`) runs for ``generations``
rounds on the block set as a :class:`~compress.search.protocols.GeneSpace` (one binary gene per
eligible block, :class:`MaskSpace`), the score as its accuracy estimator and "exactly K blocks" plus
the latency budget as a :class:`~compress.search.constraints.ConstraintSet` (population 100, 25 %
parents, mutation ratio 0.5, per-gene resample probability 0.1; ALGORITHMS §1.6), its parents
distinct masks as the replaced selector's were. Its initial
population is random K-block masks (repaired to meet a budget); children are rejection-sampled
with the engine's bounded retries. The seed is the caller's. With a latency budget: the smallest K
whose best savings can meet the budget is found, and masks of that K and K+1 that meet the budget
are searched the same way (infeasible masks are never chosen).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import numpy as np

from compress.core.errors import UsageError
from compress.search.constraints import ConstraintSet
from compress.search.evolution import evolve
from compress.search.protocols import GeneSpace

Mask = tuple[str, ...]


@dataclass
class BlockDecision:
    name: str
    kind: str
    original_ms: float
    forms_ms: dict[str, float]
    form: str | None  # best merged form, None when no form applies
    saving_ms: float
    eligible: bool
    reason: str
    selected: bool = False

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "original_ms": round(self.original_ms, 5),
            "forms_ms": {k: round(v, 5) for k, v in self.forms_ms.items()},
            "form": self.form,
            "saving_ms": round(self.saving_ms, 5),
            "eligible": self.eligible,
            "selected": self.selected,
            "reason": self.reason,
        }


def decide(
    name: str, kind: str, original_ms: float, forms_ms: dict[str, float], *, min_gain: float = 0.03
) -> BlockDecision:
    """Choose the fastest merged form; eligible only if it beats the original by ``min_gain``."""
    if not forms_ms:
        return BlockDecision(name, kind, original_ms, {}, None, 0.0, False, "no merged form applies")
    form = min(forms_ms, key=forms_ms.__getitem__)
    best = forms_ms[form]
    saving = original_ms - best
    ok = best <= original_ms * (1.0 - min_gain)
    detail = ", ".join(f"{f} {ms:.4f} ms" for f, ms in forms_ms.items())
    if ok:
        reason = f"{form} {best:.4f} ms < original {original_ms:.4f} ms ({original_ms / best:.2f}x)"
    else:
        reason = f"not faster: original {original_ms:.4f} ms vs {detail} (needs >= {min_gain:.0%} gain)"
    return BlockDecision(name, kind, original_ms, dict(forms_ms), form, saving, ok, reason)


@dataclass
class SearchConfig:
    """Selection settings. Above ``max_enumerate`` masks of one K, the search package's regularised
    evolution (:func:`compress.search.evolution.evolve`) runs with these OFA settings; its bounded
    retries (``max_retries`` batched rounds, then a copy of a feasible parent) mean it never hangs.
    There is no seed here: :func:`select_blocks` takes the caller's."""

    max_enumerate: int = 256
    population: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    generations: int = 30
    max_retries: int = 20


@dataclass
class Selection:
    mask: Mask
    score: float
    predicted_ms: float
    evaluated: int
    method: str
    history: list[dict] = field(default_factory=list)


def predicted_latency(base_ms: float, decisions: dict[str, BlockDecision], mask: Sequence[str]) -> float:
    return base_ms - sum(decisions[n].saving_ms for n in mask)


class MaskSpace:
    """The eligible blocks as a :class:`~compress.search.protocols.GeneSpace`: one binary gene per
    block (1 = pruned), in ``pool`` order, so a gene row *is* a mask and no two rows name one mask."""

    def __init__(self, pool: Sequence[str], *, mutate_prob: float) -> None:
        self.pool = list(pool)
        self.genes = GeneSpace(sizes=np.full(len(self.pool), 2), mutate_prob=mutate_prob, names=tuple(self.pool))

    def mask(self, row: np.ndarray) -> Mask:
        return tuple(self.pool[j] for j in np.flatnonzero(row))

    def rows(self, masks: Sequence[Sequence[str]]) -> np.ndarray:
        out = np.zeros((len(masks), len(self.pool)), dtype=np.int64)
        for i, m in enumerate(masks):
            out[i, [self.pool.index(n) for n in m]] = 1
        return out


class MaskScore:
    """``score(mask)`` as an :class:`~compress.search.protocols.AccuracyEstimator` over mask rows,
    memoised per mask (a proxy score costs a BN recalibration and a forward pass)."""

    def __init__(self, space: MaskSpace, score: Callable[[Mask], float], cache: dict[Mask, float]) -> None:
        self.space, self.score, self.cache = space, score, cache

    def __call__(self, mask: Mask) -> float:
        if mask not in self.cache:
            self.cache[mask] = float(self.score(mask))
        return self.cache[mask]

    def predict_genes(self, genes: np.ndarray) -> np.ndarray:
        return np.array([self(self.space.mask(r)) for r in np.atleast_2d(genes)], dtype=np.float64)


def mask_constraints(
    space: MaskSpace, k: int, *, base_ms: float, decisions: dict[str, BlockDecision], latency_ms: float | None
) -> ConstraintSet:
    """Exactly ``k`` blocks (``k_error`` = |blocks − k| <= 0) and the predicted latency (the additive
    per-block model, summed exactly as :func:`predicted_latency` does) within ``latency_ms``."""
    metrics = {
        "k_error": lambda g: np.abs(np.atleast_2d(g).sum(1) - k).astype(np.float64),
        "latency_ms": lambda g: np.array([predicted_latency(base_ms, decisions, space.mask(r)) for r in g]),
    }
    return ConstraintSet(metrics, {"k_error": 0.0, "latency_ms": latency_ms})


def _random_masks(
    pool: list[str], k: int, n: int, rng: np.random.Generator, feasible: Callable[[Mask], bool], saving
) -> list[Mask]:
    """``n`` random K-block masks for the initial population; under a latency budget each one that
    misses it is repaired (its smallest-saving block swapped for the largest unchosen one until it
    fits: a tight budget leaves few feasible masks, which random draws miss; K >= the smallest
    feasible K, so the top-K-savings mask always fits)."""
    out = []
    for _ in range(n):
        m = tuple(pool[j] for j in sorted(rng.choice(len(pool), size=k, replace=False)))
        if not feasible(m) and saving is not None:
            chosen = sorted(m, key=saving)
            rest = sorted((p for p in pool if p not in m), key=saving, reverse=True)
            while not feasible(tuple(chosen)) and rest and saving(rest[0]) > saving(chosen[0]):
                chosen[0], rest[0] = rest[0], chosen[0]
                chosen.sort(key=saving)
                rest.sort(key=saving, reverse=True)
            m = tuple(sorted(chosen, key=pool.index))
        if not feasible(m):
            raise UsageError(f"no set of {k} blocks meets the latency budget; raise --latency-ms")
        out.append(m)
    return out


def _fixed_k(
    pool: list[str],
    k: int,
    scorer: MaskScore,
    feasible: Callable[[Mask], bool],
    cfg: SearchConfig,
    constraints: ConstraintSet,
    rng: np.random.Generator,
    saving: Callable[[str], float] | None = None,
) -> tuple[Mask | None, str]:
    """The best feasible K-block mask: every one when there are at most ``max_enumerate``, else by the
    search package's evolution over :class:`MaskSpace` rows (ties: the greatest mask, as enumerated)."""
    if math.comb(len(pool), k) <= cfg.max_enumerate:
        masks = [m for m in itertools.combinations(pool, k) if feasible(m)]
        if not masks:
            return None, "enumerate"
        return max(masks, key=lambda m: (scorer(m), m)), "enumerate"
    space = scorer.space
    seeds = space.rows(_random_masks(pool, k, cfg.population, rng, feasible, saving))
    res = evolve(
        space.genes,
        scorer,
        constraints,
        rng=rng,
        population=cfg.population,
        generations=cfg.generations,
        parent_ratio=cfg.parent_ratio,
        mutation_ratio=cfg.mutation_ratio,
        max_retries=cfg.max_retries,
        seeds=seeds,
        keep_archive=False,
        distinct_parents=True,
    )
    top = res.scores[0]
    best = max(space.mask(r) for r, s in zip(res.genes, res.scores) if s == top)
    return best, "evolution"


def select_blocks(
    decisions: list[BlockDecision],
    *,
    base_ms: float,
    score: Callable[[Mask], float],
    seed: int,
    blocks: int | None = None,
    latency_ms: float | None = None,
    config: SearchConfig | None = None,
) -> Selection:
    """Choose which eligible blocks to prune: exactly ``blocks`` of them, or a set meeting ``latency_ms``.

    ``seed`` (the caller's) seeds the evolution of each K with ``numpy.random.default_rng([seed, K])``,
    so the K and K + 1 searches of a budget are independent and each is reproducible alone.
    """
    cfg = config or SearchConfig()
    if (blocks is None) == (latency_ms is None):
        raise UsageError("give either a block count (--blocks K) or a latency budget (--latency-ms X)")
    by_name = {d.name: d for d in decisions}
    pool = [d.name for d in decisions if d.eligible]
    cache: dict[Mask, float] = {}
    if blocks is not None:
        if blocks < 1:
            raise UsageError(f"--blocks must be >= 1, got {blocks}")
        if blocks > len(pool):
            raise UsageError(
                f"only {len(pool)} of {len(decisions)} candidate blocks get faster when merged on this "
                f"target (see the per-block decisions); ask for --blocks <= {len(pool)}"
            )
        return _select_k(pool, blocks, by_name, base_ms, score, cache, cfg, seed, latency_ms=None) or _bug(blocks)
    if latency_ms >= base_ms:  # type: ignore[operator]
        return Selection((), math.nan, base_ms, 0, "none: the unpruned model already meets the budget")
    savings = sorted((by_name[n].saving_ms for n in pool), reverse=True)
    need = base_ms - latency_ms  # type: ignore[operator]
    k_min = next((k for k in range(1, len(pool) + 1) if sum(savings[:k]) >= need), None)
    if k_min is None:
        best = base_ms - sum(savings)
        raise UsageError(
            f"the latency budget {latency_ms:.3f} ms cannot be met by merging blocks: the predicted best is "
            f"{best:.3f} ms (unpruned {base_ms:.3f} ms); raise --latency-ms"
        )
    best_sel: Selection | None = None
    for k in range(k_min, min(k_min + 1, len(pool)) + 1):
        sel = _select_k(pool, k, by_name, base_ms, score, cache, cfg, seed, latency_ms=latency_ms)
        if sel is not None and (best_sel is None or sel.score > best_sel.score):
            best_sel = sel
    return best_sel or _bug(k_min)


def _select_k(
    pool: list[str],
    k: int,
    by_name: dict[str, BlockDecision],
    base_ms: float,
    score: Callable[[Mask], float],
    cache: dict[Mask, float],
    cfg: SearchConfig,
    seed: int,
    *,
    latency_ms: float | None,
) -> Selection | None:
    space = MaskSpace(pool, mutate_prob=cfg.mutate_prob)
    scorer = MaskScore(space, score, cache)
    constraints = mask_constraints(space, k, base_ms=base_ms, decisions=by_name, latency_ms=latency_ms)

    def feasible(m: Mask) -> bool:
        return latency_ms is None or predicted_latency(base_ms, by_name, m) <= latency_ms

    saving = (lambda n: by_name[n].saving_ms) if latency_ms is not None else None
    rng = np.random.default_rng([seed, k])
    mask, method = _fixed_k(pool, k, scorer, feasible, cfg, constraints, rng, saving=saving)
    if mask is None:
        return None
    return Selection(mask, cache[mask], predicted_latency(base_ms, by_name, mask), len(cache), method)


def _bug(k: int) -> NoReturn:
    from compress.core.errors import InternalError

    raise InternalError(f"no mask of {k} blocks was selected although one is feasible")
