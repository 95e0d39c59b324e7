"""Pareto fronts of (latency: lower is better, accuracy: higher is better) and the knee point."""

from __future__ import annotations

import numpy as np


def front_indices(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated rows, sorted by latency ascending (ties: best accuracy first).

    A row is kept when no row is at least as fast and strictly more accurate, or strictly faster and
    at least as accurate. Exact duplicates keep only their first occurrence. O(n log n).
    """
    lat = np.asarray(latency, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    if lat.size == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((np.arange(lat.size), -acc, lat))  # by latency, then accuracy desc, then index
    acc_sorted = acc[order]
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], acc_sorted[:-1]]))
    keep = acc_sorted > best_before
    return order[keep]


def knee_index(latency: np.ndarray, accuracy: np.ndarray) -> int:
    """The front point farthest above the straight line joining its two ends (normalised axes).

    Used to pick the subnet to ship when no latency budget is given. Returns an index into the
    given arrays (which should be a front sorted by latency).
    """
    lat = np.asarray(latency, dtype=np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    if lat.size <= 2:
        return int(np.argmax(acc))
    x = (lat - lat.min()) / max(np.ptp(lat), 1e-12)
    y = (acc - acc.min()) / max(np.ptp(acc), 1e-12)
    i0, i1 = int(np.argmin(x)), int(np.argmax(x))
    dx, dy = x[i1] - x[i0], y[i1] - y[i0]
    dist = (dx * (y - y[i0]) - dy * (x - x[i0])) / max(np.hypot(dx, dy), 1e-12)
    return int(np.argmax(dist))
