"""Latency range of the small-input families: ONNX Runtime, batch 1, exported min vs max subnets.

Interleaves min and max (and a few random subnets) in rounds so that slow spells hit all models
alike; reports per-model minimum and median of many runs and the max/min ratio. Writes JSON to
``--out`` (default benchmarks/results/supernet_latency_range.json).

    .venv/bin/python benchmarks/bench_supernet_latency_range.py [--threads 1] [--rounds 30]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from compress.core.runs import atomic_write_json, package_versions
from compress.supernet import build_supernet


def to_session(module: torch.nn.Module, shape: tuple[int, ...], threads: int) -> ort.InferenceSession:
    buf = io.BytesIO()
    torch.onnx.export(
        module.eval(), torch.randn(*shape), buf, input_names=["x"], output_names=["y"], dynamo=False, opset_version=17
    )
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/supernet_latency_range.json"))
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    result = {"versions": package_versions(), "threads": args.threads, "families": {}}
    for fam in ("mbv3-small-input", "convnext-small-input"):
        net = build_supernet(fam).eval()
        cfgs = {"min": net.min_config(), "max": net.max_config()}
        sessions = {}
        for name, cfg in cfgs.items():
            net.set_active(cfg)
            shape = (1, net.space.in_channels, cfg.resolution, cfg.resolution)
            sessions[name] = (
                to_session(net.export_active(), shape, args.threads),
                np.random.default_rng(0).standard_normal(shape).astype(np.float32),
            )
        times: dict[str, list[float]] = {n: [] for n in sessions}
        for _ in range(5):
            for sess, x in sessions.values():
                sess.run(None, {"x": x})
        for _ in range(args.rounds):
            for name, (sess, x) in sessions.items():
                t0 = time.perf_counter()
                for _ in range(args.iters):
                    sess.run(None, {"x": x})
                times[name].append((time.perf_counter() - t0) / args.iters * 1e3)
        stats = {
            n: {
                "min_ms": float(np.min(v)),
                "median_ms": float(np.median(v)),
                "macs": net.count(cfgs[n]).macs,
                "params": net.count(cfgs[n]).params,
                "config": cfgs[n].to_dict(),
            }
            for n, v in times.items()
        }
        ratio_min = stats["max"]["min_ms"] / stats["min"]["min_ms"]
        ratio_med = stats["max"]["median_ms"] / stats["min"]["median_ms"]
        result["families"][fam] = {"stats": stats, "ratio_of_minimums": ratio_min, "ratio_of_medians": ratio_med}
        print(
            f"{fam:24s} min subnet {stats['min']['min_ms']:.3f} ms  max subnet {stats['max']['min_ms']:.3f} ms  "
            f"ratio {ratio_min:.2f}x (medians {ratio_med:.2f}x)"
        )
    atomic_write_json(args.out, result)
    print(json.dumps({f: round(v["ratio_of_minimums"], 2) for f, v in result["families"].items()}))


if __name__ == "__main__":
    main()
