"""``compress latency validate``: predicted vs measured latency on random subnets.

N random subnets are exported and measured end to end twice (second pass in reverse order), with
the canary for drift control. Reported for the calibrated table, the uncalibrated sum and the
roofline estimate on the same subnets: share within +-10% of measured, MAPE, Spearman rank
correlation; plus the measurement's own repeatability (MAPE between the two passes) and the noise
ceiling (share of subnets whose two passes agree within +-10%). A scatter PNG is saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.core.progress import Progress, progress_or_log, tracked


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    if len(a) < 3:
        return float("nan")
    r = spearmanr(a, b).statistic
    return float(r)


def metrics(pred: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    pred = np.asarray(pred, dtype=np.float64)
    y = np.asarray(measured, dtype=np.float64)
    rel = np.abs(pred - y) / y
    return {
        "within_10pct": float(np.mean(rel <= 0.10)),
        "mape": float(np.mean(rel) * 100.0),
        "spearman": spearman(pred, y),
        "max_error_pct": float(np.max(rel) * 100.0),
    }


def repeatability(ms: np.ndarray) -> dict[str, float]:
    """From a (2, N) array of two passes: MAPE between them and the share agreeing within 10%."""
    a, b = ms[0], ms[1]
    mean = (a + b) / 2
    return {
        "repeatability_mape": float(np.mean(np.abs(a - b) / mean) * 100.0),
        "noise_ceiling_within_10pct": float(np.mean(np.abs(a / b - 1) <= 0.10)),
    }


def scatter_png(path: Path, measured: np.ndarray, series: dict[str, np.ndarray], *, title: str) -> Path | None:
    from compress.core.extras import pyplot

    plt = pyplot("the validation scatter plot")
    if plt is None:
        return None

    from compress.core.runs import atomic_write_png

    fig, ax = plt.subplots(figsize=(5.5, 5))
    lo = float(min(measured.min(), *(s.min() for s in series.values()))) * 0.9
    hi = float(max(measured.max(), *(s.max() for s in series.values()))) * 1.1
    xs = np.linspace(lo, hi, 10)
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.85", label="±10%")
    for (name, s), m in zip(series.items(), ("o", "s", "^")):
        ax.scatter(measured, s, s=14, marker=m, label=name, alpha=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return atomic_write_png(fig, path, dpi=110)


def validate(
    *,
    device: str,
    runtime: str | None = None,
    precision: str | None = None,
    supernet: Any = None,
    batch: int = 1,
    samples: int = 20,
    resolutions: list[int] | None = None,
    tables: str | Path | None = None,
    profiles: str | Path | None = None,
    threads: int | None = None,
    iterations: int = 30,
    seed: int = 0,
    out: str | Path | None = None,
    command: str = "compress latency validate",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure ``samples`` random subnets twice and compare with the predictors (module docstring)."""
    from compress.hardware import get_profile
    from compress.latency.measure import MeasureSettings, drift_summary, measure_subnets
    from compress.latency.predict import LatencyModel
    from compress.latency.profile import sample_genes
    from compress.latency.spaces import resolve_space, resolve_supernet

    if samples < 3:
        raise UsageError(f"--samples must be >= 3 (rank correlation needs several subnets), got {samples}")
    prof = get_profile(device, profiles_dir=profiles)
    rt = prof.check_runtime(runtime)
    prec = prof.check_precision(precision)
    space = resolve_space(supernet)
    model = LatencyModel.load(
        device=prof.table_device,
        runtime=rt,
        precision=prec,
        batch=batch,
        space=space,
        tables=tables,
        profiles=profiles,
        allow_estimate=False,
    )
    roof = LatencyModel.from_roofline(space, prof, runtime=rt, precision=prec, batch=batch, compiled=model.compiled)
    net = resolve_supernet(supernet if supernet is not None else space, seed=seed)
    rng = np.random.default_rng(seed + 104729)
    genes = sample_genes(space, rng, samples, resolutions=resolutions)
    cfgs = [space.from_genes(g) for g in genes]
    settings = MeasureSettings(
        runtime=rt,
        precision=prec,
        batch=batch,
        threads=threads,
        iterations=iterations,
        canary_every=4,
        seed=seed,
        estimator=model.table.meta.estimator if model.table else "median",
    )
    from compress.latency.profile import table_is_raw

    with tracked(progress_or_log(progress), "subnets") as step:
        ms, drift = measure_subnets(
            net, cfgs, settings, repeats=2, force_raw=table_is_raw(model.table), progress=lambda d, t: step(d, t)
        )
    measured = ms.mean(axis=0)
    pred = model.predict_genes(genes)
    raw = model.predict_sum_genes(genes)
    est = roof.predict_sum_genes(genes)
    result: dict[str, Any] = {
        "device": prof.name,
        "runtime": rt,
        "precision": prec,
        "batch": batch,
        "space": getattr(space, "family", None),
        "table": str(model.table.path) if model.table is not None else None,
        "samples": samples,
        "seed": seed,
        "calibrated": model.calibration is not None,
        "calibration_model": model.calibration.model if model.calibration else None,
        "interpolated_entries": model.n_interpolated,
        **metrics(pred, measured),
        **repeatability(ms),
        "uncalibrated": metrics(raw, measured),
        "roofline": metrics(est, measured),
        "drift": drift_summary(drift),
        "subnets": [
            {
                "config": c.key(),
                "measured_ms": [float(ms[0, i]), float(ms[1, i])],
                "predicted_ms": float(pred[i]),
                "uncalibrated_ms": float(raw[i]),
                "roofline_ms": float(est[i]),
            }
            for i, c in enumerate(cfgs)
        ],
    }
    if model.table is not None and model.table.path is not None:
        # recorded in the table so that search can report the error of the latency it relies on
        from compress.core.runs import now_iso
        from compress.latency.table import LatencyTable

        fresh = LatencyTable.load(model.table.path)
        fresh.meta.validation = {
            "when": now_iso(),
            "samples": samples,
            "seed": seed,
            "mape": result["mape"],
            "within_10pct": result["within_10pct"],
            "max_error_pct": result["max_error_pct"],
            "spearman": result["spearman"],
            "repeatability_mape": result["repeatability_mape"],
            "drift_status": drift.get("status"),
            "calibration_created": (fresh.calibration or {}).get("created"),
        }
        fresh.save()
    if not drift.get("controlled", False):
        result["warning"] = (
            "drift was NOT controlled during this validation ("
            + str(drift.get("note"))
            + "); these accuracy figures are not reliable"
        )
    if out is not None:
        from compress.core.runs import RunDir

        run = RunDir(out, command=command, seeds={"seed": seed})
        png = scatter_png(
            run.file("scatter.png"),
            measured,
            {"calibrated": pred, "uncalibrated sum": raw, "roofline (estimated)": est},
            title=f"{prof.name} / {rt} / {prec}: {samples} subnets",
        )
        if png is not None:
            run.add_output(png)
            result["scatter_png"] = str(png)
        run.write_json("result.json", result)
        run.save_manifest()
    return result
