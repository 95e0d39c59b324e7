"""Markdown and CSV renderings of a :class:`~compress.bench.schema.BenchResult`."""

from __future__ import annotations

import csv
import io
from typing import Any

from compress.bench.schema import BenchResult

CSV_FIELDS = (
    "name",
    "runtime",
    "runner",
    "precision",
    "batch",
    "threads",
    "median_ms",
    "mean_ms",
    "p90_ms",
    "p99_ms",
    "std_ms",
    "min_ms",
    "cv",
    "throughput",
    "iterations",
    "raw_median_ms",
    "ratio",
    "predicted_ms",
    "error_pct",
    "noisy",
    "peak_memory_mb",
)


def _f(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def to_markdown(res: BenchResult) -> str:
    """A table per artefact plus the drift and device-state lines."""
    lines = [
        f"### compress bench: {res.device}" + (f" via {res.remote}" if res.remote else ""),
        "",
        "| artefact | runtime | median ms | p90 ms | p99 ms | mean ± std ms | throughput /s | ratio | predicted ms | error % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for it in res.items:
        flag = " (noisy)" if it.noisy else ""
        lines.append(
            f"| {it.name}{flag} | {it.runtime} ({it.runner}) | {_f(it.median_ms)} | {_f(it.p90_ms)} | "
            f"{_f(it.p99_ms)} | {_f(it.mean_ms)} ± {_f(it.std_ms)} | {_f(it.throughput, 1)} | "
            f"{_f(it.ratio, 3)} | {_f(it.predicted_ms)} | {_f(it.error_pct, 1)} |"
        )
    d = res.drift
    lines += [
        "",
        f"Drift: **{d.get('status')}** (reference {_f(d.get('reference_ms'))} ms, max drift "
        f"{100 * float(d.get('max_drift') or 0):.1f}%, re-measured {d.get('remeasured', 0)}, "
        f"normalised {d.get('normalised', 0)}); {d.get('note', '')}",
    ]
    cpu = res.device_state.get("cpu") or {}
    gpu = res.device_state.get("gpu") or {}
    state = f"CPU {cpu.get('model')} ({cpu.get('usable_cores')} usable cores, governor {cpu.get('governor')}), threads {res.threads or 'runtime default'}"
    if gpu:
        g = (gpu.get("gpus") or [{}])[0]
        state += f"; GPU {g.get('name')} driver {g.get('driver')}, CUDA {res.device_state.get('cuda') or gpu.get('cuda_driver_version')}, TensorRT {res.device_state.get('tensorrt')}"
    jet = res.device_state.get("jetson")
    if jet:
        state += f"; L4T {jet.get('l4t')}, nvpmodel: {(jet.get('nvpmodel') or '-').splitlines()[0]}"
    lines.append(f"Device: {state}.")
    t0, t1 = res.device_state.get("temperatures_c") or {}, res.device_state_after.get("temperatures_c") or {}
    if t0:
        lines.append(
            "Temperatures °C (before → after): "
            + ", ".join(f"{k} {t0[k]:.0f}→{t1.get(k, float('nan')):.0f}" for k in list(t0)[:6])
            + "."
        )
    for w in res.warnings:
        lines.append(f"**Warning:** {w}")
    return "\n".join(lines) + "\n"


def to_csv(res: BenchResult) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["device", *CSV_FIELDS, "drift_status"], lineterminator="\n")
    w.writeheader()
    for it in res.items:
        row = {k: getattr(it, k) for k in CSV_FIELDS}
        w.writerow({"device": res.device, **row, "drift_status": res.drift.get("status")})
    return buf.getvalue()
