"""Does `compress bench` measure what the vendors' tools measure? And ORT vs OpenVINO on timm models.

Part 1 (agreement): the same ONNX model timed by our engine through the shared OpenVINO runner
(LATENCY hint) and by OpenVINO's own ``benchmark_app -hint latency -infer_precision P``, both at the
same inference precision (``--precision fp32|bf16``: the runner's INFERENCE_PRECISION_HINT and
benchmark_app's ``-infer_precision`` get the same value; bf16 only where the CPU has AVX512-BF16/AMX),
interleaved in rounds (ours, benchmark_app, ours, ...) with the canary re-timed between rounds,
so a slow spell hits both alike. Target: medians within 10%. Each benchmark_app run reports a
summary only, so its samples are per-run medians. ``onnxruntime_perf_test`` is not shipped in
the onnxruntime wheel nor packaged by Debian; it is reported as unavailable when not on PATH.

Part 2 (runtimes): ONNX Runtime vs OpenVINO (f32; bf16 as extra info) on timm models
(resnet18, mobilenetv2_100, efficientnet_b0, convnext_atto) at 224 px and a small input, and the
max subnet of the default supernet family; interleaved per model with drift control.

    .venv/bin/python benchmarks/bench_vendor_tools.py --quick     # a minute or two, for development
    .venv/bin/python benchmarks/bench_vendor_tools.py             # the full run (quiet machine!)

Writes ``--out`` (default benchmarks/results/vendor_tools.json and .md). Numbers are measured
here and now; on a shared, busy machine read the drift status next to them.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from compress.bench import vendor
from compress.bench.canary import canary_onnx
from compress.bench.timing import Item, TimingConfig, time_items
from compress.core.runs import atomic_write_json, atomic_write_text, package_versions

TIMM = ("resnet18", "mobilenetv2_100", "efficientnet_b0", "convnext_atto")


def session(runtime: str, path: Path, *, threads: int | None, precision: str = "fp32"):
    from compress.export.runtimes import get_runner

    s = get_runner(runtime).load(str(path), threads=threads, precision=precision)
    s.bind(np.random.default_rng(0).standard_normal(s.input_shape).astype(s.input_dtype))
    return s


def export_timm(name: str, size: int, work: Path) -> Path:
    from compress.export.onnx import to_onnx
    from compress.models import load_model

    path = work / f"{name}_{size}.onnx"
    if not path.is_file():
        to_onnx(load_model(f"timm:{name}", image_size=size), path, batch=1)
    return path


def export_default_subnet(work: Path) -> tuple[str, Path] | None:
    """The max subnet of the first supernet family, exported to ONNX (None if the API is unavailable)."""
    try:
        import torch

        from compress.supernet import build_supernet

        fam = "mbv3-small-input"
        net = build_supernet(fam).eval()
        cfg = net.max_config()
        net.set_active(cfg)
        shape = (1, net.space.in_channels, cfg.resolution, cfg.resolution)
        path = work / f"{fam}_max.onnx"
        torch.onnx.export(
            net.export_active().eval(),
            torch.randn(*shape),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamo=False,
            opset_version=17,
        )
        return f"{fam} max subnet @{cfg.resolution}", path
    except Exception as err:  # noqa: BLE001 - optional part; say why it was skipped
        print(f"skipping the default supernet subnet: {type(err).__name__}: {err}", file=sys.stderr)
        return None


def fmt_drift(d: Any) -> str:
    return f"{d.status} (max {d.max_drift:.0%}, re-measured {d.remeasured})"


#: our precision name -> OpenVINO's inference precision (the runner's hint, benchmark_app's -infer_precision)
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


def agreement(
    path: Path, label: str, *, cfg: TimingConfig, niter: int, canary: Any, precision: str = "fp32"
) -> dict[str, Any]:
    # both sides at the same inference precision: on a CPU with AVX512-BF16/AMX OpenVINO's default is
    # bf16, so a side left at its default would time another computation than the other
    ours = session("openvino", path, threads=None, precision=precision)
    infer = OV_PRECISION[precision]
    # benchmark_app gets the very input our runner binds (raw f32 file); its own default, random u8
    # values 0-255, is timed as a third item because some models' speed depends on the data
    x = np.random.default_rng(0).standard_normal(ours.input_shape).astype(np.float32)
    x_file = path.with_suffix(".input.bin")
    x.tofile(x_file)
    items = [
        Item("compress (OpenVINO runner)", ours.run_bound),
        Item(
            "benchmark_app -hint latency",
            burst=lambda: [
                vendor.run_benchmark_app(path, iterations=niter, input_file=x_file, precision=infer)["median_ms"]
            ],
        ),
        Item(
            "benchmark_app, its own u8 input",
            burst=lambda: [vendor.run_benchmark_app(path, iterations=niter, precision=infer)["median_ms"]],
        ),
    ]
    run = time_items(items, canary=canary, config=cfg)
    ours.close()
    a, b, c = (run.items[i.name] for i in items)
    ratio = a.stats.median_ms / b.stats.median_ms
    effective = ours.settings.get("effective", {}).get("INFERENCE_PRECISION_HINT")
    return {
        "model": label,
        "precision": precision,
        "ours_infer_precision": effective,
        "benchmark_app_infer_precision": infer,
        "ours_median_ms": a.stats.median_ms,
        "ours_raw_median_ms": a.raw_stats.median_ms,
        "benchmark_app_median_ms": b.stats.median_ms,
        "benchmark_app_raw_median_ms": b.raw_stats.median_ms,
        "benchmark_app_u8_input_median_ms": c.stats.median_ms,
        "ratio": ratio,
        "within_10pct": abs(ratio - 1) <= 0.10,
        "drift": run.drift.to_dict(),
        "drift_text": fmt_drift(run.drift),
        "ours_n": a.stats.n,
        "benchmark_app_runs": b.stats.n,
    }


def runtimes(
    path: Path, label: str, *, cfg: TimingConfig, threads: int | None, canary: Any, bf16: bool
) -> dict[str, Any]:
    sess = {
        "onnxruntime": session("onnxruntime", path, threads=threads),
        "openvino f32": session("openvino", path, threads=threads),
    }
    if bf16:
        try:
            sess["openvino bf16"] = session("openvino", path, threads=threads, precision="bf16")
        except Exception as err:  # noqa: BLE001 - not every CPU has bf16
            print(f"  (no OpenVINO bf16 here: {err})", file=sys.stderr)
    run = time_items([Item(k, s.run_bound) for k, s in sess.items()], canary=canary, config=cfg)
    for s in sess.values():
        s.close()
    return {
        "model": label,
        "median_ms": {k: v.stats.median_ms for k, v in run.items.items()},
        "p90_ms": {k: v.stats.p90_ms for k, v in run.items.items()},
        "ov_over_ort": run.items["openvino f32"].stats.median_ms / run.items["onnxruntime"].stats.median_ms,
        "drift": run.drift.to_dict(),
        "drift_text": fmt_drift(run.drift),
        "noisy": [k for k, v in run.items.items() if v.noisy],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="two small models, few rounds (development)")
    ap.add_argument("--threads", type=int, default=None, help="threads for part 2 (default: runtime default)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/vendor_tools"))
    ap.add_argument("--parts", default="agreement,runtimes", help="comma list: agreement, runtimes")
    ap.add_argument(
        "--precision",
        choices=sorted(OV_PRECISION),
        default="fp32",
        help="inference precision of the agreement part, passed to both sides (bf16: AVX512-BF16/AMX CPUs)",
    )
    ap.add_argument(
        "--previous",
        type=Path,
        default=None,
        help="a previous result JSON whose parts not run now are kept (reported with their dates)",
    )
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    import torch

    torch.set_flush_denormal(True)
    t_start = time.time()
    if args.quick:
        models = [("resnet18", 96), ("mobilenetv2_100", 96)]
        cfg = TimingConfig(warmup=10, iterations=60, rounds=3, max_remeasure=1, max_extra_rounds=0)
        niter, with_subnet = 50, False
    else:
        models = [(m, s) for m in TIMM for s in (224, 96)]
        cfg = TimingConfig(warmup=50, iterations=1000, rounds=10, max_extra_rounds=2)
        niter, with_subnet = 300, True
    result: dict[str, Any] = {
        "quick": args.quick,
        "versions": package_versions(),
        "timing": cfg.__dict__,
        "onnxruntime_perf_test": shutil.which("onnxruntime_perf_test")
        or "not available (not in the onnxruntime wheel, no Debian package)",
        "agreement": [],
        "runtimes": [],
    }
    from compress.bench.device_state import device_state

    result["device_state"] = device_state(threads=args.threads)
    if vendor.find_tool("benchmark_app") is None:
        sys.exit("benchmark_app not found: it comes with the openvino wheel")
    from compress.hardware.local import has_bf16

    if args.precision == "bf16" and not has_bf16():
        sys.exit("--precision bf16: this CPU has no AVX512-BF16/AMX-BF16 (OpenVINO would emulate it); use fp32")
    result["precision"] = args.precision
    with tempfile.TemporaryDirectory(prefix="bench-vendor-") as td:
        work = Path(td)
        can = session("onnxruntime", canary_onnx(work), threads=args.threads)
        canary = can.run_bound
        paths = [(f"{m} @{s}", export_timm(m, s, work)) for m, s in models]
        if with_subnet:
            sub = export_default_subnet(work)
            if sub:
                paths.append(sub)
        agree_models = (paths if not args.quick else paths[:2]) if "agreement" in parts else []
        for label, p in agree_models:
            r = agreement(
                p,
                label,
                cfg=TimingConfig(**{**cfg.__dict__, "rounds": max(cfg.rounds, 3)}),
                niter=niter,
                canary=canary,
                precision=args.precision,
            )
            result["agreement"].append(r)
            print(
                f"[agreement] {label:28s} ours {r['ours_median_ms']:.3f} ms  benchmark_app "
                f"{r['benchmark_app_median_ms']:.3f} ms  ratio {r['ratio']:.3f}  "
                f"{'OK' if r['within_10pct'] else 'OUTSIDE 10%'}  drift {r['drift_text']}"
            )
        for label, p in paths if "runtimes" in parts else []:
            r = runtimes(p, label, cfg=cfg, threads=args.threads, canary=canary, bf16=True)
            result["runtimes"].append(r)
            meds = "  ".join(f"{k} {v:.3f}" for k, v in r["median_ms"].items())
            print(f"[runtimes]  {label:28s} {meds} ms  OV/ORT {r['ov_over_ort']:.2f}  drift {r['drift_text']}")
        can.close()
    result["wall_s"] = time.time() - t_start
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.previous is not None:  # keep the parts not re-run, with where they came from
        import json

        prev = json.loads(args.previous.read_text())
        for part in ("agreement", "runtimes"):
            if part not in parts:
                result[part] = prev.get(part, [])
                result[f"{part}_from"] = prev.get("date") or f"{args.previous} (earlier run)"
    out = args.out
    atomic_write_json(out.with_suffix(".json"), result)
    atomic_write_text(out.with_suffix(".md"), to_md(result))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')} ({result['wall_s']:.0f} s)")


def to_md(r: dict[str, Any]) -> str:
    cpu = r["device_state"]["cpu"]
    lines = [
        f"Machine: {cpu['model']}, {cpu['usable_cores']} usable cores; versions: onnxruntime "
        f"{r['versions'].get('onnxruntime')}, openvino {r['versions'].get('openvino')}; "
        f"{'quick' if r['quick'] else 'full'} run, {r.get('date', '')}.",
        "",
        f"Agreement{' (from ' + r['agreement_from'] + ')' if r.get('agreement_from') else ''}: both tools time "
        "the same f32 input (benchmark_app `-ip f32 -i input.bin`) at the same inference precision "
        f"({r.get('precision', 'fp32')}: the runner's INFERENCE_PRECISION_HINT and benchmark_app's "
        "`-infer_precision`); the last column is benchmark_app with its "
        "default input (random u8 values 0-255).",
        "",
        "| model | compress (OV runner) ms | benchmark_app ms | ratio | within 10% | drift | benchmark_app, u8 input ms |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for a in r["agreement"]:
        u8 = a.get("benchmark_app_u8_input_median_ms")
        lines.append(
            f"| {a['model']} | {a['ours_median_ms']:.3f} | {a['benchmark_app_median_ms']:.3f} | "
            f"{a['ratio']:.3f} | {'yes' if a['within_10pct'] else 'no'} | {a['drift_text']} | "
            f"{f'{u8:.3f}' if u8 else '-'} |"
        )
    lines += [
        "",
        f"onnxruntime_perf_test: {r['onnxruntime_perf_test']}",
        "",
        f"Runtimes{' (from ' + r['runtimes_from'] + ')' if r.get('runtimes_from') else ''}:",
        "",
        "| model | ORT ms | OV f32 ms | OV bf16 ms | OV f32 / ORT | drift |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for x in r["runtimes"]:
        m = x["median_ms"]
        bf = f"{m['openvino bf16']:.3f}" if "openvino bf16" in m else "-"
        lines.append(
            f"| {x['model']} | {m['onnxruntime']:.3f} | {m['openvino f32']:.3f} | {bf} | "
            f"{x['ov_over_ort']:.2f} | {x['drift_text']} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
