"""Searchers on synthetic gene spaces with synthetic estimators (no supernet needed)."""

from __future__ import annotations

import numpy as np
import pytest

from compress.search.constraints import ConstraintSet
from compress.search.evolution import InfeasibleError, evolve, make_children, minimise_metric, mutate
from compress.search.nsga2 import nsga2_search
from compress.search.pareto import front_indices, knee_index
from compress.search.protocols import GeneSpace
from compress.search.random import random_search

L = 24
SIZES = np.array([3] * L)
W_LAT = np.linspace(0.5, 2.0, L)
W_ACC = np.random.default_rng(123).random((L, 3))


class Lat:
    source = "estimated"

    def predict_genes(self, g):
        return 5.0 + (g * W_LAT).sum(1)


class Acc:
    def predict_genes(self, g):
        # diminishing returns per gene plus an interaction term: not trivially greedy
        v = W_ACC[np.arange(L)[None, :], g].sum(1)
        return 0.5 + 0.01 * v - 0.002 * (g[:, 0] * g[:, 1])


def _cs(budget=30.0, **extra):
    metrics = {"latency_ms": Lat().predict_genes, "params": lambda g: 1000.0 + 10 * g.sum(1)}
    return ConstraintSet(metrics, {"latency_ms": budget, **extra})


GS = GeneSpace(sizes=SIZES)


def test_mutation_respects_sizes_and_groups():
    gs = GeneSpace(sizes=np.array([2, 5, 5, 7]), groups=np.array([0, 1, 1, 2]), mutate_prob=1.0)
    rng = np.random.default_rng(0)
    parents = np.zeros((5000, 4), dtype=np.int64)
    kids = mutate(gs, parents, rng)
    assert (kids >= 0).all() and (kids < gs.sizes).all()
    # with prob 1 every gene is resampled: all values occur
    assert set(np.unique(kids[:, 3])) == set(range(7))
    gs0 = GeneSpace(sizes=np.array([2, 5, 5, 7]), mutate_prob=0.0)
    assert (mutate(gs0, parents, rng) == 0).all()


def test_grouped_genes_flip_together():
    gs = GeneSpace(sizes=np.array([50, 50]), groups=np.array([0, 0]), mutate_prob=0.5)
    parents = np.full((4000, 2), 49, dtype=np.int64)
    kids = mutate(gs, parents, np.random.default_rng(1))
    changed = kids != 49
    # if either changed, the group was flipped; the other gene was resampled too (equal to 49 only by chance)
    assert (changed[:, 0] & ~changed[:, 1]).mean() < 0.05


@pytest.mark.parametrize("algo", ["evolution", "random", "nsga2"])
def test_every_returned_candidate_meets_constraints(algo):
    cs = _cs(budget=25.0, params=1200.0)
    rng = np.random.default_rng(3)
    if algo == "evolution":
        r = evolve(GS, Acc(), cs, rng=rng, generations=40)
    elif algo == "random":
        r = random_search(GS, Acc(), cs, rng=rng, samples=2000)
    else:
        r = nsga2_search(GS, Acc(), cs, seed=3, generations=20, population=40)
    for genes, vals in ((r.genes, r.values), (r.archive_genes, r.archive_values)):
        lat = Lat().predict_genes(genes)
        assert (lat <= 25.0 + 1e-9).all()
        assert (1000.0 + 10 * genes.sum(1) <= 1200.0).all()
        np.testing.assert_allclose(vals["latency_ms"], lat)
        assert ((genes >= 0) & (genes < SIZES)).all()


def test_evolution_is_deterministic_and_seed_sensitive():
    a = evolve(GS, Acc(), _cs(), rng=np.random.default_rng(7), generations=30)
    b = evolve(GS, Acc(), _cs(), rng=np.random.default_rng(7), generations=30)
    c = evolve(GS, Acc(), _cs(), rng=np.random.default_rng(8), generations=30)
    np.testing.assert_array_equal(a.genes, b.genes)
    np.testing.assert_array_equal(a.history, b.history)
    assert not np.array_equal(a.archive_genes, c.archive_genes)


def test_nsga2_is_deterministic():
    a = nsga2_search(GS, Acc(), _cs(budget=1e9), seed=5, generations=15, population=30)
    b = nsga2_search(GS, Acc(), _cs(budget=1e9), seed=5, generations=15, population=30)
    np.testing.assert_array_equal(a.genes, b.genes)


def test_evolution_beats_random_baseline():
    cs = _cs(budget=28.0)
    r = evolve(GS, Acc(), cs, rng=np.random.default_rng(0), generations=150)
    rnd = random_search(GS, Acc(), cs, rng=np.random.default_rng(1), samples=10_000)
    assert r.scores[0] >= rnd.scores[0]
    assert np.all(np.diff(r.history) >= 0)  # elitist: best never gets worse


def test_children_retries_are_bounded():
    # a constraint only the parents meet: every child falls back to a parent copy, no hang
    parents = np.zeros((5, L), dtype=np.int64)
    cs = ConstraintSet({"latency_ms": lambda g: g.sum(1).astype(float)}, {"latency_ms": 0.0})
    kids, vals, fb = make_children(
        GeneSpace(sizes=SIZES, mutate_prob=1.0),
        parents,
        cs,
        np.random.default_rng(0),
        n_mutation=10,
        n_crossover=0,
        max_retries=3,
    )
    assert fb == 10 and (kids == 0).all() and (vals["latency_ms"] == 0).all()


def test_infeasible_raises_and_min_latency_is_found():
    cs = _cs(budget=1.0)
    with pytest.raises(InfeasibleError):
        evolve(GS, Acc(), cs, rng=np.random.default_rng(0), generations=5)
    g, v = minimise_metric(GS, cs, "latency_ms", rng=np.random.default_rng(0), generations=60)
    assert v["latency_ms"][0] == pytest.approx(5.0)  # all-zero genes
    assert (g == 0).all()


def test_front_indices_matches_brute_force():
    rng = np.random.default_rng(0)
    lat = rng.integers(0, 20, 300).astype(float)
    acc = rng.integers(0, 20, 300).astype(float)
    got = set(front_indices(lat, acc).tolist())
    brute = set()
    for i in range(300):
        dominated = np.any(((lat <= lat[i]) & (acc > acc[i])) | ((lat < lat[i]) & (acc >= acc[i])))
        if not dominated:
            brute.add(i)
    # duplicates: brute keeps all copies, ours the first; compare the (lat, acc) sets
    assert {(lat[i], acc[i]) for i in got} == {(lat[i], acc[i]) for i in brute}
    assert len(got) == len({(lat[i], acc[i]) for i in got})
    f = front_indices(lat, acc)
    assert np.all(np.diff(lat[f]) > 0) and np.all(np.diff(acc[f]) > 0)
    k = knee_index(lat[f], acc[f])
    assert 0 <= k < f.size
