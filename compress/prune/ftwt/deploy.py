"""Deployment checks for gated models: ONNX export with the gates in the graph, parity, latency.

The masks are computed inside the exported graph (ReduceMean, Softmax, 1x1 Conv, Greater, Cast,
Mul), so the ONNX file is self-contained. Dense runtimes (ONNX Runtime, OpenVINO on CPU) still
compute every channel and then multiply by the mask: the gated model does the dense model's work
*plus* the predictors', so FLOPs reduction is not speed on them. :func:`gated_vs_dense_latency`
measures exactly that, with the shared runners (compress.export.runtimes) and timing engine
(compress.bench.timing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from compress.models import LoadedModel


def export_gated(lm: LoadedModel, path: str | Path, *, batch: int = 1) -> dict[str, Any]:
    """Export with the export package's ``to_onnx`` (dynamo, legacy fallback; onnxslim kept only if
    outputs are unchanged) and list the mask ops in the graph."""
    import onnx

    from compress.export.onnx import to_onnx

    res = to_onnx(lm, path, batch=batch)
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    return {**res.to_json(), "greater_ops": ops.count("Greater"), "num_nodes": len(ops)}


def onnx_parity(
    lm: LoadedModel,
    path: str | Path,
    images: torch.Tensor,
    *,
    batch: int = 1,
    source: str = "test images",
    runtime: str = "onnxruntime",
) -> dict[str, Any]:
    """PyTorch vs ``runtime`` (ONNX Runtime, or OpenVINO at f32) on real ``images`` with the export package's parity check
    (:func:`compress.export.parity.check_parity`: max abs/rel error, top-1 agreement, near ties, fp32
    thresholds). A predictor logit within float rounding of 0 could flip a mask between runtimes;
    such a sample would show up here as an error, not be hidden."""
    from compress.export.parity import check_parity, reference_outputs

    x = np.ascontiguousarray(images.numpy().astype(np.float32))
    ref = reference_outputs(lm, x)
    res = check_parity(
        str(path), runtime=runtime, precision="fp32", inputs=x, reference=ref, batches=[batch], source=source, threads=1
    )
    return res.to_json()


def gated_vs_dense_latency(
    gated: LoadedModel,
    dense: LoadedModel,
    workdir: str | Path,
    *,
    threads: int = 1,
    iterations: int = 100,
    rounds: int = 5,
    seed: int = 0,
) -> dict[str, Any]:
    """Median batch-1 ONNX Runtime latency of the gated model vs the same model without gates,
    interleaved with a canary (drift control) by :func:`compress.bench.timing.time_items`."""
    from compress.bench.canary import canary_onnx
    from compress.bench.timing import Item, TimingConfig, run_to_dict, time_items
    from compress.export.runtimes import get_runner

    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    paths = {"dense": wd / "dense.onnx", "gated": wd / "gated.onnx"}
    export_gated(dense, paths["dense"])
    export_gated(gated, paths["gated"])
    runner = get_runner("onnxruntime")
    x = torch.randn(1, *gated.input_shape, generator=torch.Generator().manual_seed(seed)).numpy()
    sessions = {k: runner.load(str(p), precision="fp32", threads=threads) for k, p in paths.items()}
    can = runner.load(str(canary_onnx(wd)), precision="fp32", threads=threads)
    try:
        for s in sessions.values():
            s.bind(x)
        can.bind(np.random.default_rng(seed).standard_normal(can.input_shape).astype(np.float32))
        run = time_items(
            [Item("dense", sessions["dense"].run_bound), Item("gated", sessions["gated"].run_bound)],
            canary=can.run_bound,
            config=TimingConfig(warmup=10, iterations=iterations, rounds=rounds),
        )
    finally:
        for s in [*sessions.values(), can]:
            s.close()
    d, g = run.items["dense"], run.items["gated"]
    return {
        "runtime": "onnxruntime",
        "threads": threads,
        "batch": 1,
        "dense_ms": d.estimate_ms,
        "gated_ms": g.estimate_ms,
        "gated_over_dense": g.estimate_ms / d.estimate_ms,
        "drift": run.drift.to_dict(),
        "noisy": bool(d.noisy or g.noisy),
        "timing": run_to_dict(run),
        "note": "ONNX Runtime computes every channel densely and multiplies by the mask: the masks are not "
        "exploited, so the gated model is not faster than the dense one",
    }
