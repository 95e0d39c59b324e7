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
C(n, K) masks are enumerated when there are at most ``max_enumerate``; otherwise an OFA-style
evolution with K fixed runs (population 100, 25 % parents, mutation ratio 0.5, per-bit swap
probability 0.1; ALGORITHMS §1.6) for ``generations`` rounds. With a latency budget: the smallest K
whose best savings can meet the budget is found, and masks of that K and K+1 that meet the budget
are searched the same way (infeasible masks are never chosen).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from compress.core.errors import UsageError

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
    max_enumerate: int = 256
    population: int = 100
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    generations: int = 30
    seed: int = 0


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


def _fixed_k(
    pool: list[str],
    k: int,
    score: Callable[[Mask], float],
    feasible: Callable[[Mask], bool],
    cfg: SearchConfig,
    cache: dict[Mask, float],
    saving: Callable[[str], float] | None = None,
) -> tuple[Mask | None, str]:
    def s(m: Mask) -> float:
        m = tuple(sorted(m, key=pool.index))
        if m not in cache:
            cache[m] = score(m)
        return cache[m]

    n = len(pool)
    if math.comb(n, k) <= cfg.max_enumerate:
        masks = [m for m in itertools.combinations(pool, k) if feasible(m)]
        if not masks:
            return None, "enumerate"
        return max(masks, key=lambda m: (s(m), m)), "enumerate"
    rng = random.Random(cfg.seed * 7919 + k)

    def sample() -> Mask:
        m = tuple(sorted(rng.sample(pool, k), key=pool.index))
        if feasible(m) or saving is None:
            return m
        # repair a random mask that misses the budget: swap its smallest-saving block for the largest
        # unchosen one until it fits (a tight budget leaves few feasible masks, which random draws miss;
        # K >= the smallest feasible K, so the top-K-savings mask always fits)
        chosen = sorted(m, key=saving)
        rest = sorted((p for p in pool if p not in m), key=saving, reverse=True)
        while not feasible(tuple(chosen)) and rest and saving(rest[0]) > saving(chosen[0]):
            chosen[0], rest[0] = rest[0], chosen[0]
            chosen.sort(key=saving)
            rest.sort(key=saving, reverse=True)
        if not feasible(tuple(chosen)):
            raise UsageError(f"no set of {k} blocks meets the latency budget; raise --latency-ms")
        return tuple(sorted(chosen, key=pool.index))

    def mutate(m: Mask) -> Mask:
        chosen, rest = list(m), [p for p in pool if p not in m]
        for i in range(len(chosen)):
            if rest and rng.random() < cfg.mutate_prob:  # swap keeps K fixed
                j = rng.randrange(len(rest))
                chosen[i], rest[j] = rest[j], chosen[i]
        return tuple(sorted(chosen, key=pool.index))

    def crossover(a: Mask, b: Mask) -> Mask:
        both = list(dict.fromkeys([x for x in a if rng.random() < 0.5] + [x for x in b if rng.random() < 0.5]))
        rest = [p for p in (*a, *b) if p not in both]
        rng.shuffle(rest)
        for x in rest:
            if len(both) >= k:
                break
            if x not in both:
                both.append(x)
        return tuple(sorted(both[:k], key=pool.index))

    popn = [sample() for _ in range(cfg.population)]
    n_par = max(2, int(cfg.population * cfg.parent_ratio))
    n_mut = int(cfg.population * cfg.mutation_ratio)
    for _ in range(cfg.generations):
        parents = sorted(set(popn), key=lambda m: (s(m), m), reverse=True)[:n_par]
        children = []
        while len(children) < n_mut:
            c = mutate(rng.choice(parents))
            if feasible(c):
                children.append(c)
        tries = 0
        while len(children) < cfg.population - n_par and tries < 10 * cfg.population:
            tries += 1
            c = crossover(rng.choice(parents), rng.choice(parents))
            if len(c) == k and feasible(c):
                children.append(c)
        popn = parents + children
    return max(set(popn), key=lambda m: (s(m), m)), "evolution"


def select_blocks(
    decisions: list[BlockDecision],
    *,
    base_ms: float,
    score: Callable[[Mask], float],
    blocks: int | None = None,
    latency_ms: float | None = None,
    config: SearchConfig | None = None,
) -> Selection:
    """Choose which eligible blocks to prune: exactly ``blocks`` of them, or a set meeting ``latency_ms``."""
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
        mask, method = _fixed_k(pool, blocks, score, lambda m: True, cfg, cache)
        assert mask is not None
        return Selection(mask, cache[mask], predicted_latency(base_ms, by_name, mask), len(cache), method)
    assert latency_ms is not None
    if latency_ms >= base_ms:
        return Selection((), math.nan, base_ms, 0, "none: the unpruned model already meets the budget")
    savings = sorted((by_name[n].saving_ms for n in pool), reverse=True)
    need = base_ms - latency_ms
    k_min = next((k for k in range(1, len(pool) + 1) if sum(savings[:k]) >= need), None)
    if k_min is None:
        best = base_ms - sum(savings)
        raise UsageError(
            f"the latency budget {latency_ms:.3f} ms cannot be met by merging blocks: the predicted best is "
            f"{best:.3f} ms (unpruned {base_ms:.3f} ms); raise --latency-ms"
        )

    def feasible(m: Mask) -> bool:
        return predicted_latency(base_ms, by_name, m) <= latency_ms

    best_sel: Selection | None = None
    for k in range(k_min, min(k_min + 1, len(pool)) + 1):
        mask, method = _fixed_k(pool, k, score, feasible, cfg, cache, saving=lambda n: by_name[n].saving_ms)
        if mask is None:
            continue
        sel = Selection(
            mask,
            cache[tuple(sorted(mask, key=pool.index))],
            predicted_latency(base_ms, by_name, mask),
            len(cache),
            method,
        )
        if best_sel is None or sel.score > best_sel.score:
            best_sel = sel
    assert best_sel is not None
    return best_sel
