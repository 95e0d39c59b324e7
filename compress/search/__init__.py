"""Subnet search against device latency budgets (OFA-style evolution, NSGA-II, random).

Searchers work on integer gene arrays and depend only on two protocols
(:mod:`compress.search.protocols`): a latency estimator and an accuracy estimator, each with
``predict_genes(G) -> (N,) array``. The public entry point is :func:`compress.search.api.search`,
exported as the plain function ``compress.search(...)`` by :mod:`compress` (which imports this
package first so that the function keeps the name; see there). Import submodules with
``from compress.search import api``.
"""
