"""Release gates over a run's metrics: pure functions, no IO.

A run's metrics come from its ``summary.json`` (written by ``compress pipeline``)::

    {"latency": {DEVICE: {"median_ms", "std_ms", "iterations", "runtime", "drift_controlled", "noisy", ...}},
     "accuracy": {"top1", "top1_before", "top1_after"},
     "parity": {FORMAT: {"max_abs_err", "max_rel_err", "passed"}},
     "quantization": {RUNTIME: {"precision", "top1_fp32", "top1_quant", "drop_points", "speedup", ...}}}

Regression against a baseline is noise-aware: the allowance is derived from the spread both runs
recorded (standard error of each median), not a fixed tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

Z_95 = 1.96
MEDIAN_SE_FACTOR = 1.2533  # standard error of a median ~ 1.2533 * std / sqrt(n) for near-normal data


@dataclass
class GateResult:
    name: str
    passed: bool
    measured: float | None
    threshold: float
    margin: float | None  # positive = room left, negative = by how much it failed
    unit: str = ""
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _gate(
    name: str,
    measured: float | None,
    threshold: float,
    *,
    upper: bool,
    unit: str,
    detail: str = "",
    extra: dict[str, Any] | None = None,
) -> GateResult:
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return GateResult(
            name, False, None, threshold, None, unit, detail or "metric missing from the run", extra or {}
        )
    margin = (threshold - measured) if upper else (measured - threshold)
    return GateResult(name, margin >= 0, float(measured), float(threshold), float(margin), unit, detail, extra or {})


def median_se(stats: dict[str, Any]) -> float:
    """Standard error of a recorded median latency (ms); 0 when the run recorded no spread."""
    std = float(stats.get("std_ms") or 0.0)
    n = max(1, int(stats.get("iterations") or 1))
    return MEDIAN_SE_FACTOR * std / math.sqrt(n)


def latency_gate(metrics: dict[str, Any], device: str, max_ms: float) -> GateResult:
    lat = (metrics.get("latency") or {}).get(device)
    if lat is None:
        return GateResult(
            f"latency[{device}]",
            False,
            None,
            max_ms,
            None,
            "ms",
            f"no benchmark for device '{device}' in the run (devices: {', '.join(metrics.get('latency', {})) or 'none'})",
        )
    caveats = []
    if lat.get("drift_controlled") is False:
        caveats.append(f"drift {lat.get('drift_status') or 'uncontrolled'}: machine too busy, re-measure")
    if lat.get("noisy"):
        caveats.append("noisy")
    return _gate(
        f"latency[{device}]",
        lat.get("median_ms"),
        max_ms,
        upper=True,
        unit="ms",
        detail=f"median of {lat.get('iterations', '?')} runs on {lat.get('runtime', '?')}"
        + (f" ({'; '.join(caveats)})" if caveats else ""),
    )


def min_top1_gate(metrics: dict[str, Any], min_top1: float) -> GateResult:
    acc = metrics.get("accuracy") or {}
    return _gate("min-top1", acc.get("top1", acc.get("top1_after")), min_top1, upper=False, unit="%")


def top1_drop_gate(metrics: dict[str, Any], max_drop: float) -> GateResult:
    acc = metrics.get("accuracy") or {}
    before, after = acc.get("top1_before"), acc.get("top1_after")
    drop = None if before is None or after is None else float(before) - float(after)
    return _gate("max-top1-drop", drop, max_drop, upper=True, unit="points", detail=f"before {before} -> after {after}")


def parity_gate(metrics: dict[str, Any], max_err: float) -> GateResult:
    par = metrics.get("parity") or {}
    if not par:
        return GateResult("max-parity-err", False, None, max_err, None, "", "no parity results in the run")
    worst_fmt, worst = max(((f, float(p.get("max_rel_err", math.inf))) for f, p in par.items()), key=lambda t: t[1])
    return _gate(
        "max-parity-err",
        worst,
        max_err,
        upper=True,
        unit="rel",
        detail=f"worst format: {worst_fmt} (max relative error)",
    )


def quant_drop_gate(metrics: dict[str, Any], max_drop: float) -> GateResult:
    """Top-1 points lost by quantization, on the worst runtime the pipeline quantized for."""
    q = metrics.get("quantization") or {}
    drops = {rt: r.get("drop_points") for rt, r in q.items() if r.get("drop_points") is not None}
    if not drops:
        return GateResult(
            "max-quant-drop",
            False,
            None,
            max_drop,
            None,
            "points",
            "no quantized model in the run (add `quantize:` to the pipeline YAML)",
        )
    rt, worst = max(drops.items(), key=lambda t: float(t[1]))
    r = q[rt]
    return _gate(
        "max-quant-drop",
        float(worst),
        max_drop,
        upper=True,
        unit="points",
        detail=f"worst runtime: {rt} ({r.get('precision', '?')}): top-1 {r.get('top1_fp32')} -> "
        f"{r.get('top1_quant')}; fp32 layers kept: {len(r.get('fp32_layers') or [])}",
    )


def regression_gates(metrics: dict[str, Any], baseline: dict[str, Any], max_pct: float) -> list[GateResult]:
    """One gate per device benchmarked in both runs.

    regression % = 100 * (current - baseline) / baseline. The gate fails only when the regression
    exceeds ``max_pct`` by more than the 95% noise allowance 100 * z * sqrt(se_cur² + se_base²) / baseline.
    """
    out = []
    cur_lat, base_lat = metrics.get("latency") or {}, baseline.get("latency") or {}
    common = sorted(set(cur_lat) & set(base_lat))
    if not common:
        return [
            GateResult(
                "latency-regression",
                False,
                None,
                max_pct,
                None,
                "%",
                "no device benchmarked in both the run and the baseline",
            )
        ]
    for dev in common:
        c, b = cur_lat[dev], base_lat[dev]
        cm, bm = float(c["median_ms"]), float(b["median_ms"])
        reg = 100.0 * (cm - bm) / bm
        noise = 100.0 * Z_95 * math.hypot(median_se(c), median_se(b)) / bm
        allowed = max_pct + noise
        out.append(
            GateResult(
                f"latency-regression[{dev}]",
                reg <= allowed,
                reg,
                max_pct,
                allowed - reg,
                "%",
                f"{bm:.3f} -> {cm:.3f} ms; noise allowance ±{noise:.2f}%",
                {"baseline_ms": bm, "current_ms": cm, "noise_allowance_pct": noise},
            )
        )
    return out


def junit_xml(results: list[GateResult], *, suite: str = "compress-gates") -> str:
    """JUnit XML with one testcase per gate (failures carry measured/threshold/margin)."""
    import xml.etree.ElementTree as ET

    failures = sum(not r.passed for r in results)
    ts = ET.Element("testsuite", name=suite, tests=str(len(results)), failures=str(failures), errors="0", skipped="0")
    for r in results:
        tc = ET.SubElement(ts, "testcase", classname=suite, name=r.name, time="0")
        text = f"measured={r.measured} threshold={r.threshold} margin={r.margin} {r.unit}; {r.detail}".strip()
        if not r.passed:
            f = ET.SubElement(tc, "failure", message=text, type="GateFailed")
            f.text = text
        else:
            so = ET.SubElement(tc, "system-out")
            so.text = text
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failures))
    root.append(ts)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
