"""Constraints every candidate must meet: latency per device, params, MACs, channel multiples.

A :class:`ConstraintSet` evaluates named *metrics* over gene batches (latency in ms, params, MACs,
number of channel counts that are not a multiple of the required one) and holds an upper limit per
metric (``None``: reported, not limited). Searchers call :meth:`ConstraintSet.evaluate` once per
batch and keep the values, so no candidate is scored twice.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

Metric = Callable[[np.ndarray], np.ndarray]


@dataclass
class ConstraintSet:
    """Named metrics over gene rows, and the limits a feasible row must respect (``<=``)."""

    metrics: dict[str, Metric]
    limits: dict[str, float | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.limits) - set(self.metrics)
        if unknown:
            raise ValueError(f"limits on unknown metrics: {sorted(unknown)}")

    def evaluate(self, genes: np.ndarray) -> dict[str, np.ndarray]:
        g = np.atleast_2d(genes)
        return {name: np.asarray(fn(g), dtype=np.float64).reshape(-1) for name, fn in self.metrics.items()}

    def feasible(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        n = len(next(iter(values.values()))) if values else 0
        ok = np.ones(n, dtype=bool)
        for name, lim in self.limits.items():
            if lim is not None:
                ok &= values[name] <= lim
        return ok

    def violation(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Sum over limited metrics of the relative excess over the limit (0 where feasible)."""
        n = len(next(iter(values.values()))) if values else 0
        v = np.zeros(n)
        for name, lim in self.limits.items():
            if lim is not None:
                scale = abs(lim) if lim else 1.0
                v += np.maximum(values[name] - lim, 0.0) / scale
        return v

    def check(self, genes: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        values = self.evaluate(genes)
        return self.feasible(values), values

    def with_limits(self, **limits: float | None) -> ConstraintSet:
        return ConstraintSet(dict(self.metrics), {**self.limits, **limits})

    def describe(self) -> dict[str, float]:
        return {k: v for k, v in self.limits.items() if v is not None}


def take(values: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in values.items()}


def concat(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([a[k], b[k]]) for k in a}
