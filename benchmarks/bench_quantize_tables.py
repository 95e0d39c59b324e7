"""INT8 latency tables: do per-block sums of quantized blocks predict quantized subnets?

For the default supernet's space on this CPU (one runtime thread, batch 1), per runtime (ONNX Runtime
by default; OpenVINO with ``--runtimes onnxruntime,openvino``):

1. build the fp32 and the int8 table from scratch with ``compress profile`` (int8: every block
   exported alone and quantized by ``compress.quantize.onnxruntime.quantize_onnx_int8``, QDQ), each
   calibrated on 20 whole subnets (quantized whole, for int8);
2. validate both on the same N held-out random subnets (100; 15 with ``--quick``), each measured
   twice end to end: share within +-10%, MAPE, Spearman for the calibrated table, the uncalibrated
   sum and the roofline, plus the noise ceiling;
3. the measured int8 / fp32 speed-up per held-out subnet (same subnets, same campaign settings).

Target (issue 19): int8 table on ONNX Runtime, >= 90% of held-out subnets within +-10% and Spearman
>= 0.95. Every measurement re-times the canary and its drift verdict is reported per run.
Results: ``<out>/quantize_tables.json`` and ``<out>/quantize_tables.md`` (+ scatter PNGs).

    python benchmarks/bench_quantize_tables.py --quick     # development
    python benchmarks/bench_quantize_tables.py             # full run (about 5 minutes on 2 cores)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET_WITHIN = 0.90
TARGET_SPEARMAN = 0.95


def _fmt(m: dict) -> str:
    return f"{100 * m['within_10pct']:.0f}% / {m['mape']:.1f}% / {m['spearman']:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few samples (development)")
    ap.add_argument("--samples", type=int, default=None, help="held-out subnets (default 100; quick 15)")
    ap.add_argument("--runtimes", default="onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "quantize_tables")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from compress.core.runs import atomic_write_json, atomic_write_text, package_versions
    from compress.hardware.local import cpu_model, usable_cores
    from compress.latency.profile import profile_table
    from compress.latency.validate import validate

    samples = args.samples or (15 if args.quick else 100)
    calib = 12 if args.quick else 20
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-qtables-") as td:
        tables = Path(td) / "tables"
        for rt in args.runtimes.split(","):
            per_prec = {}
            for prec in ("fp32", "int8"):
                print(f"[{rt} / {prec}] building the table ...", file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                prof = profile_table(
                    device="local-cpu",
                    runtime=rt,
                    precision=prec,
                    tables=tables,
                    threads=args.threads,
                    calibrate=calib,
                    seed=args.seed,
                )
                build_s = time.perf_counter() - t0
                print(f"[{rt} / {prec}] validating on {samples} held-out subnets ...", file=sys.stderr, flush=True)
                v = validate(
                    device="local-cpu",
                    runtime=rt,
                    precision=prec,
                    tables=tables,
                    samples=samples,
                    threads=args.threads,
                    seed=args.seed + 1,
                    out=Path(td) / f"val-{rt}-{prec}",
                )
                png = args.out / f"scatter-{rt}-{prec}.png"
                png.parent.mkdir(parents=True, exist_ok=True)
                png.write_bytes(Path(v["scatter_png"]).read_bytes())
                per_prec[prec] = {
                    "runtime": rt,
                    "precision": prec,
                    "table_blocks": prof.signatures,
                    "build_s": round(build_s, 1),
                    "table_drift": prof.drift.get("status"),
                    "calibration": prof.calibration,
                    "calibrated": {k: v[k] for k in ("within_10pct", "mape", "spearman", "max_error_pct")},
                    "uncalibrated": v["uncalibrated"],
                    "roofline": v["roofline"],
                    "repeatability_mape": v["repeatability_mape"],
                    "noise_ceiling_within_10pct": v["noise_ceiling_within_10pct"],
                    "validation_drift": v["drift"]["status"],
                    "drift_note": v["drift"].get("note"),
                    "subnets": v["subnets"],
                    "scatter_png": str(png.relative_to(ROOT)),
                }
            f32 = np.asarray([np.mean(s["measured_ms"]) for s in per_prec["fp32"]["subnets"]])
            i8 = np.asarray([np.mean(s["measured_ms"]) for s in per_prec["int8"]["subnets"]])
            assert [s["config"] for s in per_prec["fp32"]["subnets"]] == [
                s["config"] for s in per_prec["int8"]["subnets"]
            ]
            speed = f32 / i8
            rows.append(
                {
                    "runtime": rt,
                    "fp32": per_prec["fp32"],
                    "int8": per_prec["int8"],
                    "speedup_int8": {
                        "median": float(np.median(speed)),
                        "min": float(speed.min()),
                        "max": float(speed.max()),
                        "median_fp32_ms": float(np.median(f32)),
                        "median_int8_ms": float(np.median(i8)),
                    },
                }
            )
    i8_ort = next((r["int8"] for r in rows if r["runtime"] == "onnxruntime"), None)
    verdict = None
    if i8_ort is not None:
        c = i8_ort["calibrated"]
        verdict = {
            "within_10pct": c["within_10pct"],
            "spearman": c["spearman"],
            "meets": bool(c["within_10pct"] >= TARGET_WITHIN and c["spearman"] >= TARGET_SPEARMAN),
        }
    result = {
        "benchmark": "quantize_tables",
        "quick": args.quick,
        "samples": samples,
        "threads": args.threads,
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "versions": package_versions(),
        "target": {"within_10pct": TARGET_WITHIN, "spearman": TARGET_SPEARMAN},
        "verdict_int8_ort": verdict,
        "rows": rows,
    }
    atomic_write_json(args.out / "quantize_tables.json", result)
    lines = [
        f"# INT8 latency tables ({samples} held-out subnets, {args.threads} thread(s), {cpu_model()})",
        "",
        "within ±10% / MAPE / Spearman of predicted vs measured (mean of two end-to-end passes)",
        "",
        "| runtime | precision | calibrated | uncalibrated sum | roofline | noise ceiling | calibration "
        "(LOO MAPE) | drift (table / validation) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for prec in ("fp32", "int8"):
            d = r[prec]
            cal = d["calibration"] or {}
            lines.append(
                f"| {r['runtime']} | {prec} | {_fmt(d['calibrated'])} | {_fmt(d['uncalibrated'])} | "
                f"{_fmt(d['roofline'])} | {100 * d['noise_ceiling_within_10pct']:.0f}% | "
                f"{cal.get('model')} ({cal.get('loo_mape', float('nan')):.1f}%) | "
                f"{d['table_drift']} / {d['validation_drift']} |"
            )
    lines += [
        "",
        "| runtime | median fp32 ms | median int8 ms | int8 speed-up (median, min-max) |",
        "|---|---|---|---|",
    ]
    for r in rows:
        s = r["speedup_int8"]
        lines.append(
            f"| {r['runtime']} | {s['median_fp32_ms']:.4f} | {s['median_int8_ms']:.4f} | "
            f"{s['median']:.2f}x ({s['min']:.2f}-{s['max']:.2f}) |"
        )
    if verdict:
        lines += [
            "",
            f"Target (ORT int8: >= {TARGET_WITHIN:.0%} within ±10%, Spearman >= {TARGET_SPEARMAN}): "
            f"{'met' if verdict['meets'] else 'NOT met'}.",
        ]
    atomic_write_text(args.out / "quantize_tables.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
