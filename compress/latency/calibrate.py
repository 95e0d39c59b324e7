"""Calibration: a small model of the gap between the summed table and end-to-end latency.

Features per subnet: ``sum`` (sum of its blocks' table entries), ``blocks`` (number of layers),
and ``sum_<kind>`` (the sum restricted to one block kind). Candidate models, fitted by weighted
least squares on *relative* error (weights 1/measured, since the targets are judged by % error):

* ``linear``   measured = a*sum + b*blocks + c   (always a candidate; the required baseline)
* ``affine``   measured = a*sum + c
* ``compute``  measured = a*sum + b*blocks + d*gflop + c: the subnet's FLOPs as a feature of their
  own (per-block timings of small blocks are dominated by per-call overhead, which flattens the
  table's differences between kernel/expand sizes; search then prefers exactly the large-kernel,
  wide-expand subnets the sum under-rates)
* ``split``    measured = a*sum_<main> + a'*(sum - sum_<main>) + b*blocks + c, where ``main`` is the
  kind with the largest share of the summed time (the searched blocks): per-kind scaling with
  four coefficients, so it is a candidate with as few as 8 samples
* ``per_kind`` measured = sum_k a_k*sum_<kind> + b*blocks + c   (only with enough samples)
* ``identity`` measured = sum (nothing fitted): chosen when no fitted model's LOO MAPE beats it

The model with the lowest leave-one-out MAPE wins; a more complex model must beat a simpler one
by ``margin`` (relative) to be chosen. Pure numpy.

>>> import numpy as np
>>> s = np.array([1.0, 2.0, 3.0, 4.0, 5.0]); n = np.array([3, 5, 4, 6, 8])
>>> cal = fit({"sum": s, "blocks": n}, 1.2 * s + 0.1 * n + 0.5)
>>> round(float(cal.apply({"sum": np.array([2.0]), "blocks": np.array([5])})[0]), 3)
3.4
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from compress.core.errors import UsageError


@dataclass
class Calibration:
    model: str
    features: list[str]  # names, "1" for the intercept
    coef: list[float]
    loo_mape: float  # leave-one-out MAPE of the chosen model (%)
    fit_mape: float  # in-sample MAPE (%)
    samples: int
    candidates: dict[str, float] = field(default_factory=dict)  # model -> LOO MAPE
    uncalibrated_mape: float | None = None
    drift: dict[str, Any] | None = None
    configs: list[str] = field(default_factory=list)
    measured_ms: list[float] = field(default_factory=list)
    created: str | None = None
    loo_max_error_pct: float | None = None  # worst leave-one-out |error| of the chosen model (%)
    roles: list[str] = field(default_factory=list)  # why each calibration subnet was chosen (profile.calibration_genes)

    def apply(self, feats: dict[str, np.ndarray]) -> np.ndarray:
        feats = with_rest(feats, self.features)
        n = len(next(iter(feats.values())))
        out = np.zeros(n, dtype=np.float64)
        for name, c in zip(self.features, self.coef):
            out += c * (1.0 if name == "1" else np.asarray(feats.get(name, np.zeros(n)), dtype=np.float64))
        return out

    def needs_kinds(self) -> bool:
        return any(f.startswith("sum_") or f.startswith("rest_") for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        try:
            return cls(**d)
        except TypeError as err:
            raise UsageError(f"malformed calibration in latency table: {err}") from None


def with_rest(feats: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    """Add the ``rest_<kind>`` (= sum - sum_<kind>) features ``names`` asks for."""
    extra = {
        nm: np.asarray(feats["sum"], dtype=np.float64) - np.asarray(feats.get("sum_" + nm[5:], 0.0), dtype=np.float64)
        for nm in names
        if nm.startswith("rest_") and nm not in feats
    }
    return {**feats, **extra} if extra else feats


def _design(feats: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    n = len(next(iter(feats.values())))
    cols = [np.ones(n) if nm == "1" else np.asarray(feats[nm], dtype=np.float64) for nm in names]
    return np.stack(cols, axis=1)


def _wls(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    w = 1.0 / np.maximum(y, 1e-12)
    coef, *_ = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)
    return coef


def _mape(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - y) / y) * 100.0)


def _loo_errors(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = len(y)
    errs = []
    for i in range(n):
        m = np.ones(n, dtype=bool)
        m[i] = False
        coef = _wls(X[m], y[m])
        errs.append(abs(float(X[i] @ coef) - y[i]) / y[i])
    return np.asarray(errs)


def _loo(X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(_loo_errors(X, y)) * 100.0)


def candidate_models(feats: dict[str, np.ndarray], n: int) -> dict[str, list[str]]:
    models = {"affine": ["sum", "1"], "linear": ["sum", "blocks", "1"]}
    kinds = sorted(k for k in feats if k.startswith("sum_") and np.any(np.asarray(feats[k]) > 0))
    if "gflop" in feats and n >= 8 and np.ptp(np.asarray(feats["gflop"], dtype=np.float64)) > 0:
        models["compute"] = ["sum", "blocks", "gflop", "1"]
    if kinds and n >= 8:
        main = max(kinds, key=lambda k: float(np.sum(feats[k])))
        if np.any(np.asarray(feats["sum"]) - np.asarray(feats[main]) > 0):
            models["split"] = [main, "rest_" + main[4:], "blocks", "1"]
    if kinds and n >= 3 * (len(kinds) + 2):
        models["per_kind"] = [*kinds, "blocks", "1"]
    return models


def fit(feats: dict[str, np.ndarray], measured: np.ndarray, *, margin: float = 0.05) -> Calibration:
    """Fit every candidate, choose by leave-one-out MAPE (see module docstring)."""
    y = np.asarray(measured, dtype=np.float64)
    if y.ndim != 1 or len(y) < 4:
        raise UsageError(f"calibration needs at least 4 measured subnets, got {len(np.atleast_1d(y))}")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise UsageError("calibration: measured latencies must be positive and finite")
    models = candidate_models(feats, len(y))
    feats = with_rest(feats, [c for cols in models.values() for c in cols])
    scores: dict[str, float] = {}
    coefs: dict[str, np.ndarray] = {}
    for name, cols in models.items():
        X = _design(feats, cols)
        coefs[name] = _wls(X, y)
        scores[name] = _loo(X, y) if len(y) > len(cols) + 1 else float("inf")
    # simplest first; a more complex model must be better by `margin` (relative)
    chosen = "affine"
    for name in ("linear", "compute", "split", "per_kind"):
        if name in scores and scores[name] < scores[chosen] * (1 - margin):
            chosen = name
    # the table's own sum is a candidate too (nothing fitted, so its MAPE is its leave-one-out MAPE):
    # a correction fitted on noisy measurements must not be worse than no correction
    models["identity"], coefs["identity"] = ["sum"], np.array([1.0])
    scores["identity"] = _mape(np.asarray(feats["sum"], dtype=np.float64), y)
    if scores["identity"] <= scores[chosen]:
        chosen = "identity"
    cols = models[chosen]
    X = _design(feats, cols)
    pred = X @ coefs[chosen]
    if chosen == "identity":
        loo_max = float(np.max(np.abs(pred - y) / y) * 100.0)
    else:
        loo_max = float(np.max(_loo_errors(X, y)) * 100.0) if len(y) > len(cols) + 1 else None
    return Calibration(
        model=chosen,
        features=cols,
        coef=[float(c) for c in coefs[chosen]],
        loo_mape=scores[chosen],
        fit_mape=_mape(pred, y),
        samples=len(y),
        loo_max_error_pct=loo_max,
        candidates={k: float(v) for k, v in scores.items()},
        uncalibrated_mape=_mape(np.asarray(feats["sum"], dtype=np.float64), y),
    )
