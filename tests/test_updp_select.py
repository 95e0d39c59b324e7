"""UPDP block selection on the search package's engine: protocols, seeding, bounded retries, quality."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from compress.prune.updp.select import (
    MaskScore,
    MaskSpace,
    SearchConfig,
    decide,
    mask_constraints,
    select_blocks,
)
from compress.search.evolution import evolve
from compress.search.protocols import AccuracyEstimator


def _decisions(savings: dict[str, float]):
    return [decide(n, "mbconv", 1.0, {"dense": 1.0 - s}) for n, s in savings.items()]


def _objective(names, seed):
    """Proxy-shaped (per-block damage plus pairwise interactions), seeded."""
    rng = np.random.default_rng(seed)
    damage = dict(zip(names, rng.gamma(2.0, 1.0, len(names))))
    inter = rng.normal(0.0, 0.3, (len(names), len(names)))
    idx = {n: i for i, n in enumerate(names)}

    def score(m):
        return -float(sum(damage[n] for n in m) + sum(inter[idx[a], idx[b]] for a, b in itertools.combinations(m, 2)))

    return score


def test_block_set_is_a_gene_space_and_the_score_an_estimator():
    decs = _decisions({"a": 0.5, "b": 0.3, "c": 0.2, "d": 0.1})
    space = MaskSpace([d.name for d in decs], mutate_prob=0.1)
    rows = space.rows([("a", "c"), ("b",)])
    assert rows.tolist() == [[1, 0, 1, 0], [0, 1, 0, 0]] and space.mask(rows[0]) == ("a", "c")
    cache: dict = {}
    scorer = MaskScore(space, lambda m: float(len(m)), cache)
    assert isinstance(scorer, AccuracyEstimator)
    assert scorer.predict_genes(rows).tolist() == [2.0, 1.0] and set(cache) == {("a", "c"), ("b",)}
    cs = mask_constraints(space, 2, base_ms=2.0, decisions={d.name: d for d in decs}, latency_ms=1.35)
    ok, vals = cs.check(space.rows([("a", "b"), ("c", "d"), ("a",)]))
    assert ok.tolist() == [True, False, False]  # 2 - 0.3 = 1.7 > 1.35; one block is not K = 2
    assert np.allclose(vals["latency_ms"], [1.2, 1.7, 1.5]) and vals["k_error"].tolist() == [0, 0, 1]


def test_the_seed_is_the_callers():
    names = [f"b{i:02d}" for i in range(16)]
    decs = _decisions(dict.fromkeys(names, 0.05))
    score = _objective(names, 7)
    cfg = SearchConfig(max_enumerate=10, generations=3)
    with pytest.raises(TypeError, match="seed"):
        select_blocks(decs, base_ms=5.0, score=score, blocks=5, config=cfg)  # type: ignore[call-arg]
    runs = {s: select_blocks(decs, base_ms=5.0, score=score, blocks=5, seed=s, config=cfg) for s in (0, 0, 1, 2, 3)}
    again = select_blocks(decs, base_ms=5.0, score=score, blocks=5, seed=0, config=cfg)
    assert again.mask == runs[0].mask and again.evaluated == runs[0].evaluated
    assert all(r.method == "evolution" and len(r.mask) == 5 for r in runs.values())
    # three generations cannot cover C(16, 5) = 4368 masks: the seeds search differently
    assert len({r.evaluated for r in runs.values()}) > 1


def test_retries_are_bounded_when_no_mutant_fits():
    # one feasible 6-block mask in C(24, 6) = 134,596 and every mutant changes (mutate_prob 1): the
    # replaced selector's mutation loop never ended here; the engine falls back to parent copies
    names = [f"b{i:02d}" for i in range(24)]
    decs = _decisions({n: 0.05 + 0.01 * i for i, n in enumerate(names)})
    budget = 2.0 - sum(0.05 + 0.01 * i for i in range(18, 24)) + 1e-9
    t = time.perf_counter()
    sel = select_blocks(
        decs,
        base_ms=2.0,
        score=lambda m: -sum(names.index(n) for n in m),
        latency_ms=budget,
        seed=0,
        config=SearchConfig(max_enumerate=10, generations=3, mutate_prob=1.0, max_retries=2),
    )
    assert sel.predicted_ms <= budget and time.perf_counter() - t < 30
    assert sel.mask == tuple(names[-6:]) or len(sel.mask) == 7


def test_distinct_parents_find_the_optimum_the_replaced_selector_found():
    # 12 eligible blocks, K = 4: the size of the benchmark rows that evolve (convnext_atto)
    names = [f"b{i:02d}" for i in range(12)]
    decs = _decisions(dict.fromkeys(names, 0.05))
    for j in range(8):
        score = _objective(names, 1000 + j)
        best = max(score(m) for m in itertools.combinations(names, 4))
        sel = select_blocks(decs, base_ms=5.0, score=score, blocks=4, seed=j, config=SearchConfig(max_enumerate=10))
        assert sel.method == "evolution" and abs(sel.score - best) < 1e-12
        assert sel.evaluated < 495  # found without scoring every mask


def test_distinct_parents_default_keeps_ofa_behaviour():
    space = MaskSpace([f"b{i}" for i in range(10)], mutate_prob=0.1)
    cs = mask_constraints(space, 3, base_ms=1.0, decisions=_by(space), latency_ms=None)

    class Acc:
        def predict_genes(self, g):
            return (g * np.arange(10)).sum(1) / 10.0

    seeds = space.rows([("b0", "b1", "b2")] * 4)
    kw = dict(rng=None, population=8, generations=4, seeds=seeds, keep_archive=False)
    a = evolve(space.genes, Acc(), cs, **{**kw, "rng": np.random.default_rng(0)})
    b = evolve(space.genes, Acc(), cs, **{**kw, "rng": np.random.default_rng(0)}, distinct_parents=False)
    c = evolve(space.genes, Acc(), cs, **{**kw, "rng": np.random.default_rng(0)}, distinct_parents=True)
    assert np.array_equal(a.genes, b.genes) and np.array_equal(a.scores, b.scores)
    assert (c.values["k_error"] == 0).all() and c.scores[0] >= a.scores[0]


def _by(space):
    return {d.name: d for d in _decisions(dict.fromkeys(space.pool, 0.05))}
