"""Calibrating the roofline to published latencies (pure math), and checking it against them.

Published rows (``hardware_profiles/published/*.yaml``: device, power mode, clocks, model,
precision, statistic, milliseconds, source) are whole-network batch-1 latencies. The roofline
prices a network op by op (``compress.latency.roofline``); two things in it are guesses that
datasheets cannot give: the share of peak each op kind reaches (``efficiency``) and the fixed cost
of a layer. This module fits both for the Jetson Orin GPU:

* ``efficiency = min(1, s * DEFAULT_EFFICIENCY["gpu"][kind])``: one scale ``s`` on the default
  per-op-kind factors. Every published row is the same network (ResNet-50), so the rows pin down
  the network's overall efficiency but cannot tell the op kinds apart; the ratios between kinds
  stay the defaults' and the report says so.
* ``overhead = c / f_gpu`` per layer: ``c`` GPU cycles (a kernel's fixed ramp/tail and the
  harness' per-query work scale with the GPU clock under jetson_clocks), so a power mode that
  lowers the clock lengthens it - what lets a MAXN calibration predict a lower-clock mode.

For a given ``s`` the estimate is linear in ``c``, so ``c`` has a closed form (non-negative,
weighted least squares on relative error) and ``s`` is found on a fine log grid, with a weak prior
``PRIOR * ln(s)^2`` towards the defaults: no optimiser, deterministic. Rows of one configuration (same device and mode, different MLPerf rounds) are
weighted so each configuration counts once, and leave-one-out leaves the whole configuration
out (leaving one round out while its twin stays would measure nothing).

The result is data, written to ``hardware_profiles/calibration/<name>.yaml`` with the rows it
was fitted to, the in-sample and leave-one-out errors; profiles name it (``calibration:``) and
``roof_from_profile`` applies it. Re-fit after adding a row: ``compress latency calibrate-published``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.latency.calibration import (  # the data half (schemas, files), re-exported
    CAL_FORMAT as CAL_FORMAT,
    DEFAULT_CALIBRATION as DEFAULT_CALIBRATION,
    DEFAULT_ROWS as DEFAULT_ROWS,
    ROWS_FORMAT as ROWS_FORMAT,
    PublishedRow as PublishedRow,
    PublishedSet as PublishedSet,
    RoofCalibration as RoofCalibration,
    RowResult as RowResult,
    calibration_path as calibration_path,
    load_calibration as load_calibration,
    load_rows as load_rows,
    rows_path as rows_path,
    write_calibration as write_calibration,
)

SCALE_GRID = np.geomspace(0.02, 4.0, 2000)
# weak prior towards the default efficiencies: a factor-e departure costs as much as a 10% error on
# every row. Without it, a fit on one device's two modes alone cannot split compute from overhead
# (both scale with the GPU clock) and drifts to an extreme (docs/jetson.md shows the sensitivity).
PRIOR = 0.01


# ---- the model ---------------------------------------------------------------------------------


class _RowOps:
    """A row's network as arrays (flops, bytes, base efficiency, layers) at its device and mode."""

    def __init__(self, row: PublishedRow, *, profiles_dir: str | Path | None = None) -> None:
        from compress.hardware import get_profile
        from compress.hardware.modes import clock_figure
        from compress.latency.reference_models import model_signatures
        from compress.latency.roofline import BYTES_PER_ELEM, DEFAULT_EFFICIENCY, block_ops, gpu_roof_base

        if row.engine != "gpu":
            raise UsageError(
                f"published row {row.id}: only GPU rows can calibrate the GPU roofline (engine {row.engine})"
            )
        prof = get_profile(row.device, power_mode=row.mode, profiles_dir=profiles_dir)
        self.peak, self.bw = gpu_roof_base(prof, row.precision)
        clock, _unconf = clock_figure(prof)
        if clock is None:
            raise UsageError(
                f"published row {row.id}: {prof.name} at {prof.power_mode} has no GPU clock to scale "
                "the per-layer overhead with"
            )
        gpu_mhz = row.clocks.get("gpu_mhz")
        if (
            isinstance(gpu_mhz, (int, float))
            and not isinstance(gpu_mhz, bool)
            and abs(gpu_mhz * 1e6 - clock) > 0.02 * clock
        ):
            raise UsageError(
                f"published row {row.id}: its GPU clock {gpu_mhz} MHz disagrees with {prof.name}@"
                f"{prof.power_mode}'s {clock / 1e6:g} MHz; fix the row's mode or the profile"
            )
        self.clock = clock
        ops = [
            o
            for s in model_signatures(row.model, row.resolution)
            for o in block_ops(s, bytes_per_elem=BYTES_PER_ELEM[row.precision])
        ]
        eff = DEFAULT_EFFICIENCY["gpu"]
        self.flops = np.asarray([o.flops for o in ops], dtype=np.float64) * row.batch
        self.bytes = np.asarray([o.bytes for o in ops], dtype=np.float64) * row.batch
        self.eff = np.asarray([eff.get(o.kind, 0.1) for o in ops], dtype=np.float64)
        self.layers = float(sum(o.layers for o in ops))

    def base_ms(self, scales: np.ndarray) -> np.ndarray:
        """Roofline time without overhead (ms) for each efficiency scale, shape (len(scales),)."""
        e = np.minimum(1.0, np.outer(scales, self.eff))
        t = np.maximum(self.flops[None, :] / (self.peak * e), (self.bytes / self.bw)[None, :])
        return t.sum(axis=1) * 1e3

    def overhead_ms_per_cycle(self) -> float:
        return self.layers / self.clock * 1e3


def _fit(ops: list[_RowOps], y: np.ndarray, w: np.ndarray, prior: float = PRIOR) -> tuple[float, float]:
    """(scale, cycles) minimising mean_w ((est - y) / y)^2 + prior * ln(scale)^2 over the scale grid,
    cycles in closed form for each scale."""
    A = np.stack([o.base_ms(SCALE_GRID) for o in ops], axis=1)  # (grid, rows)
    g = np.asarray([o.overhead_ms_per_cycle() for o in ops])  # (rows,)
    wr = w / y**2
    num = ((y[None, :] - A) * g[None, :] * wr[None, :]).sum(axis=1)
    den = float((g**2 * wr).sum())
    c = np.maximum(0.0, num / den)
    err = (((A + c[:, None] * g[None, :]) - y[None, :]) ** 2 * wr[None, :]).sum(axis=1) / float(w.sum())
    err = err + prior * np.log(SCALE_GRID) ** 2
    i = int(np.argmin(err))
    return float(SCALE_GRID[i]), float(c[i])


def _predict(op: _RowOps, scale: float, cycles: float) -> float:
    return float(op.base_ms(np.asarray([scale]))[0] + cycles * op.overhead_ms_per_cycle())


def _weights(rows: list[PublishedRow]) -> np.ndarray:
    groups = [r.group for r in rows]
    return np.asarray([1.0 / groups.count(gr) for gr in groups])


def fit_rows(rows: list[PublishedRow], *, profiles_dir: str | Path | None = None) -> tuple[float, float]:
    """Fit (efficiency scale, per-layer overhead cycles) to ``rows``."""
    if not rows:
        raise UsageError("no published rows to fit")
    ops = [_RowOps(r, profiles_dir=profiles_dir) for r in rows]
    return _fit(ops, np.asarray([r.ms for r in rows]), _weights(rows))


def predict_rows(
    rows: list[PublishedRow], scale: float, cycles: float, *, profiles_dir: str | Path | None = None
) -> list[float]:
    return [_predict(_RowOps(r, profiles_dir=profiles_dir), scale, cycles) for r in rows]


def calibrate(
    rows: list[PublishedRow],
    *,
    name: str = DEFAULT_CALIBRATION,
    rows_file: str = "",
    profiles_dir: str | Path | None = None,
) -> RoofCalibration:
    """Fit on every row, then leave each configuration out in turn and predict its rows."""
    from compress.latency.roofline import DEFAULT_EFFICIENCY

    ops = [_RowOps(r, profiles_dir=profiles_dir) for r in rows]
    y = np.asarray([r.ms for r in rows])
    w = _weights(rows)
    s, c = _fit(ops, y, w)
    est = [_predict(o, s, c) for o in ops]
    groups = sorted({r.group for r in rows})
    loo: dict[int, float] = {}
    if len(groups) >= 3:
        for gname in groups:
            keep = [i for i, r in enumerate(rows) if r.group != gname]
            s_i, c_i = _fit([ops[i] for i in keep], y[keep], _weights([rows[i] for i in keep]))
            for i, r in enumerate(rows):
                if r.group == gname:
                    loo[i] = _predict(ops[i], s_i, c_i)
    results = [
        RowResult(
            id=r.id,
            group=r.group,
            published_ms=r.ms,
            estimate_ms=round(est[i], 5),
            ratio=round(est[i] / r.ms, 4),
            loo_estimate_ms=round(loo[i], 5) if i in loo else None,
            loo_ratio=round(loo[i] / r.ms, 4) if i in loo else None,
        )
        for i, r in enumerate(rows)
    ]
    fit_err = max(abs(x.ratio - 1) for x in results) * 100
    loo_errs = [abs(x.loo_ratio - 1) * 100 for x in results if x.loo_ratio is not None]
    eff = {k: round(min(1.0, s * v), 5) for k, v in DEFAULT_EFFICIENCY["gpu"].items()}
    notes = [
        "every row is ResNet-50 v1.5: one scale on the default per-op-kind efficiencies is fitted (the rows "
        "cannot separate op kinds); the ratios between kinds are the defaults'",
        "fitted at INT8; applied at every precision of the devices that name this calibration",
        "leave-one-out leaves a whole configuration (device and mode) out, all its MLPerf rounds together",
    ]
    if len(groups) < 3:
        notes.append(f"only {len(groups)} configuration(s): no leave-one-out figure")
    return RoofCalibration(
        format=CAL_FORMAT,
        name=name,
        applies_to="Jetson Orin GPU (Ampere), TensorRT, batch 1",
        fitted=_dt.date.today().isoformat(),
        command="compress latency calibrate-published",
        rows_file=rows_file or f"hardware_profiles/published/{DEFAULT_ROWS}",
        efficiency_scale=round(s, 5),
        efficiency=eff,
        layer_overhead_cycles=round(c, 1),
        rows=[r.id for r in rows],
        configurations=len(groups),
        results=results,
        fit_max_error_pct=round(fit_err, 2),
        loo_max_error_pct=round(max(loo_errs), 2) if loo_errs else None,
        loo_mape_pct=round(float(np.mean(loo_errs)), 2) if loo_errs else None,
        notes=notes,
    )


def check_estimates(*, rows_file: str | Path | None = None, profiles_dir: str | Path | None = None) -> dict[str, Any]:
    """Per published row: the shipped calibration's estimate, the figure, the ratio, the leave-one-out
    estimate (re-computed here, so a row added since the last fit shows up honestly)."""
    from compress.hardware import get_profile

    rows = load_rows(rows_file)
    fresh = calibrate(rows, profiles_dir=profiles_dir)
    out_rows = []
    shipped: dict[str, RoofCalibration] = {}
    for r, fr in zip(rows, fresh.results):
        prof = get_profile(r.device, power_mode=r.mode, profiles_dir=profiles_dir)
        cal_name = prof.calibration
        est = None
        if cal_name:
            cal = shipped.setdefault(cal_name, load_calibration(cal_name, profiles_dir=profiles_dir))
            est = predict_rows([r], cal.efficiency_scale, cal.layer_overhead_cycles, profiles_dir=profiles_dir)[0]
        out_rows.append(
            {
                "id": r.id,
                "device": r.device,
                "mode": r.mode,
                "model": r.model,
                "precision": r.precision,
                "statistic": r.statistic,
                "published_ms": r.ms,
                "estimate_ms": est,
                "ratio": est / r.ms if est is not None else None,
                "loo_estimate_ms": fr.loo_estimate_ms,
                "loo_ratio": fr.loo_ratio,
                "source": r.source,
            }
        )
    stale = [n for n, c in shipped.items() if sorted(c.rows) != sorted(r.id for r in rows)]
    return {
        "rows": out_rows,
        "calibrations": {n: c.model_dump(mode="json") for n, c in shipped.items()},
        "refit": fresh.model_dump(mode="json"),
        "stale": stale,
        "note": (
            "calibration(s) " + ", ".join(stale) + " were fitted to other rows than the "
            "published file holds; re-fit with `compress latency calibrate-published`"
        )
        if stale
        else None,
    }
