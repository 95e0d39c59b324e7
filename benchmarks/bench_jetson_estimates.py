"""The Jetson roofline estimate held against published batch-1 TensorRT latencies (no board needed).

Checks the targets of docs/jetson.md from the shipped data (hardware_profiles/published/*.yaml,
hardware_profiles/calibration/jetson-orin-gpu.yaml) and the fit in compress/latency/published.py:

* every published row within ±20% of its figure after calibration (the shipped factors);
* leave-one-out within ±25% for every row (a whole device+mode configuration left out and
  predicted from a fit on the others);
* the MaxQ row predicted from a calibration fitted to the MAXN rows only, plus MaxQ's clocks, within ±25%;
* estimates ordered as the hardware across AGX Orin / Orin NX / Orin Nano (original and Super) and modes.

Also records the estimate before calibration (the profiles' default efficiencies and per-layer
overheads) and how the results move with the fit's prior (``PRIOR``), so the choice is visible.
Pure arithmetic: runs in seconds, deterministic, no timing.

Usage: ``python benchmarks/bench_jetson_estimates.py [--out benchmarks/results/jetson]``
(exit 1 when a target is missed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIT_TARGET, LOO_TARGET, MAXQ_TARGET = 20.0, 25.0, 25.0
ORDER_KEYS = [
    "jetson-agx-orin@MAXN",
    "jetson-agx-orin@50W",
    "jetson-agx-orin@30W",
    "jetson-agx-orin@15W",
    "jetson-agx-orin@MAXQ_MLPERF",
    "jetson-orin-nx@MAXN",
    "jetson-orin-nano@MAXN_SUPER",
    "jetson-orin-nano-original@15W",
    "jetson-orin-nano-4gb@10W",
]


def _resnet_ms(device: str, *, calibrated: bool = True, precision: str = "int8") -> float:
    from compress.hardware import get_profile
    from compress.latency.reference_models import model_signatures
    from compress.latency.roofline import block_time_ms, roof_from_profile

    prof = get_profile(device)
    if not calibrated:
        prof = prof.model_copy(update={"calibration": None})
    roof = roof_from_profile(prof, precision)
    return sum(block_time_ms(s, roof) for s in model_signatures("resnet50-v1.5"))


def run() -> dict[str, Any]:
    from compress.latency import published as P

    rows = P.load_rows()
    cal = P.load_calibration("jetson-orin-gpu")
    fresh = P.calibrate(rows)
    ops = [P._RowOps(r) for r in rows]
    y = np.asarray([r.ms for r in rows])
    out_rows = []
    for r, res in zip(rows, fresh.results):
        est = P.predict_rows([r], cal.efficiency_scale, cal.layer_overhead_cycles)[0]
        raw = _resnet_ms(f"{r.device}@{r.mode}", calibrated=False)
        out_rows.append(
            {
                "id": r.id,
                "device": r.device,
                "mode": r.mode,
                "published_ms": r.ms,
                "uncalibrated_ms": round(raw, 4),
                "uncalibrated_error_pct": round((raw / r.ms - 1) * 100, 1),
                "estimate_ms": round(est, 4),
                "error_pct": round((est / r.ms - 1) * 100, 1),
                "loo_estimate_ms": res.loo_estimate_ms,
                "loo_error_pct": round((res.loo_ratio - 1) * 100, 1) if res.loo_ratio is not None else None,
            }
        )
    # MaxQ from a MAXN-only calibration plus MaxQ's clocks
    maxn = [i for i, r in enumerate(rows) if r.mode == "MAXN"]
    maxq = [i for i, r in enumerate(rows) if r.mode == "MAXQ_MLPERF"]
    s_n, c_n = P._fit([ops[i] for i in maxn], y[maxn], P._weights([rows[i] for i in maxn]))
    maxq_rows = [
        {
            "id": rows[i].id,
            "published_ms": rows[i].ms,
            "estimate_ms": round(P._predict(ops[i], s_n, c_n), 4),
            "error_pct": round((P._predict(ops[i], s_n, c_n) / rows[i].ms - 1) * 100, 1),
        }
        for i in maxq
    ]
    # sensitivity to the prior
    sens = []
    for prior in (0.0, 0.001, 0.003, 0.01, 0.03, 0.1):
        s, c = P._fit(ops, y, P._weights(rows), prior=prior)
        fit_err = max(abs(P._predict(o, s, c) / t - 1) * 100 for o, t in zip(ops, y))
        loo = []
        for g in sorted({r.group for r in rows}):
            keep = [i for i, r in enumerate(rows) if r.group != g]
            s_i, c_i = P._fit([ops[i] for i in keep], y[keep], P._weights([rows[i] for i in keep]), prior=prior)
            loo += [abs(P._predict(ops[i], s_i, c_i) / y[i] - 1) * 100 for i, r in enumerate(rows) if r.group == g]
        s_m, c_m = P._fit([ops[i] for i in maxn], y[maxn], P._weights([rows[i] for i in maxn]), prior=prior)
        mq = max(abs(P._predict(ops[i], s_m, c_m) / y[i] - 1) * 100 for i in maxq)
        sens.append(
            {
                "prior": prior,
                "efficiency_scale": round(s, 3),
                "overhead_cycles": round(c),
                "fit_max_error_pct": round(fit_err, 1),
                "loo_max_error_pct": round(max(loo), 1),
                "maxq_from_maxn_error_pct": round(mq, 1),
                "shipped": prior == P.PRIOR,
            }
        )
    order = {k: round(_resnet_ms(k), 4) for k in ORDER_KEYS}
    fit_max = max(abs(r["error_pct"]) for r in out_rows)
    loo_max = max(abs(r["loo_error_pct"]) for r in out_rows if r["loo_error_pct"] is not None)
    maxq_max = max(abs(r["error_pct"]) for r in maxq_rows)
    chains = [
        ["jetson-agx-orin@MAXN", "jetson-agx-orin@50W", "jetson-agx-orin@30W", "jetson-agx-orin@15W"],
        ["jetson-agx-orin@MAXN", "jetson-agx-orin@MAXQ_MLPERF"],
        ["jetson-agx-orin@MAXN", "jetson-orin-nx@MAXN", "jetson-orin-nano-original@15W", "jetson-orin-nano-4gb@10W"],
        ["jetson-orin-nano@MAXN_SUPER", "jetson-orin-nano-original@15W"],
    ]
    ordered = all(order[a] < order[b] for ch in chains for a, b in zip(ch, ch[1:]))
    return {
        "what": "ResNet-50 v1.5, batch 1, 224 px, INT8, TensorRT GPU-only: roofline estimate vs MLPerf Inference "
        "SingleStream mean latency (ANCHORS.md 4.6)",
        "calibration": {
            "name": cal.name,
            "efficiency_scale": cal.efficiency_scale,
            "layer_overhead_cycles": cal.layer_overhead_cycles,
            "rows": len(cal.rows),
            "configurations": cal.configurations,
            "prior": P.PRIOR,
            "matches_refit": bool(abs(cal.efficiency_scale - fresh.efficiency_scale) < 1e-3 * fresh.efficiency_scale),
        },
        "rows": out_rows,
        "maxq_from_maxn": {"efficiency_scale": round(s_n, 4), "overhead_cycles": round(c_n, 1), "rows": maxq_rows},
        "prior_sensitivity": sens,
        "resnet50_int8_ms": order,
        "ordered_chains": chains,
        "targets": {
            "fit_max_error_pct": round(fit_max, 1),
            "fit_target_pct": FIT_TARGET,
            "fit_met": fit_max <= FIT_TARGET,
            "loo_max_error_pct": round(loo_max, 1),
            "loo_target_pct": LOO_TARGET,
            "loo_met": loo_max <= LOO_TARGET,
            "maxq_from_maxn_error_pct": round(maxq_max, 1),
            "maxq_target_pct": MAXQ_TARGET,
            "maxq_met": maxq_max <= MAXQ_TARGET,
            "ordered": ordered,
        },
    }


def to_markdown(res: dict[str, Any]) -> str:
    lines = [
        "| row | published ms | uncalibrated ms (err) | calibrated ms (err) | leave-one-out ms (err) |",
        "|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['id']} | {r['published_ms']:.3f} | {r['uncalibrated_ms']:.3f} ({r['uncalibrated_error_pct']:+.1f}%) | "
            f"{r['estimate_ms']:.3f} ({r['error_pct']:+.1f}%) | {r['loo_estimate_ms']:.3f} ({r['loo_error_pct']:+.1f}%) |"
        )
    t = res["targets"]
    lines += [
        "",
        f"fit max {t['fit_max_error_pct']}% (target {t['fit_target_pct']}%), leave-one-out max "
        f"{t['loo_max_error_pct']}% (target {t['loo_target_pct']}%), MaxQ from MAXN "
        f"{t['maxq_from_maxn_error_pct']}% (target {t['maxq_target_pct']}%), ordered: {t['ordered']}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "jetson")
    args = ap.parse_args(argv)
    from compress.core.runs import atomic_write_json, atomic_write_text

    res = run()
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "jetson_estimates.json", res)
    atomic_write_text(args.out / "jetson_estimates.md", to_markdown(res))
    print(to_markdown(res))
    t = res["targets"]
    return 0 if (t["fit_met"] and t["loo_met"] and t["maxq_met"] and t["ordered"]) else 1


if __name__ == "__main__":
    sys.exit(main())
