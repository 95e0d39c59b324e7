"""Block latency for UPDP decisions: a small protocol and two implementations.

:class:`BlockLatency` is what selection needs: the latency of one block module (original or a
merged form) at an input shape. Implementations:

* :class:`MeasuredBlockLatency` measures on the spot: each block form is exported to ONNX and run
  with the shared runner (``export.runtimes``) under the shared drift-controlled timing engine
  (``compress.timing``, canary from ``compress.bench.canary``). All forms of a model are timed in
  one campaign, so their ratios hold when the machine drifts; the drift status is reported.
* :class:`MacsBlockLatency` is an *estimate* (MACs / a nominal rate, plus a per-conv overhead),
  for tests and dry runs; its ``source`` says ``estimate`` and the report carries it.

A latency-table implementation (issue 4, ``compress.latency``) plugs in by providing the same
``latencies`` method.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn as nn


@dataclass(frozen=True)
class BlockItem:
    """One block form to time: ``key`` names it (e.g. ``layer1.0|dense``)."""

    key: str
    module: nn.Module
    input_shape: tuple[int, ...]   # (C, H, W) or (N, C) tokens, batch excluded
    form: str


class BlockLatency(Protocol):
    source: str

    def latencies(self, items: list[BlockItem]) -> dict[str, float]:
        """Milliseconds per item key (batch 1 unless the implementation says otherwise)."""
        ...


@dataclass
class MacsBlockLatency:
    """Estimate: ``ms = MACs / (gmacs_per_s·1e6) + overhead_ms·(convs + linears)``. Not a measurement."""

    gmacs_per_s: float = 20.0
    overhead_ms: float = 0.01
    source: str = "estimate:macs"

    def latencies(self, items: list[BlockItem]) -> dict[str, float]:
        from compress.prune.updp.measure import count_macs

        out = {}
        for it in items:
            macs = count_macs(it.module, it.input_shape)
            layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in it.module.modules())
            out[it.key] = macs / (self.gmacs_per_s * 1e6) + self.overhead_ms * layers
        return out


@dataclass
class MeasuredBlockLatency:
    """Measure each block form with the shared runner + timing engine (see module doc)."""

    runtime: str = "onnxruntime"
    precision: str = "fp32"
    threads: int | None = None
    iterations: int = 60
    batch: int = 1
    source: str = "measured"
    drift: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.source = f"measured:{self.runtime}"

    def latencies(self, items: list[BlockItem]) -> dict[str, float]:
        from compress.bench.canary import canary_onnx
        from compress.timing import DriftMonitor, TimingConfig
        from export.runtimes import get_runner

        runner = get_runner(self.runtime)
        out: dict[str, float] = {}
        with tempfile.TemporaryDirectory(prefix="updp-lat-") as tmp:
            d = Path(tmp)
            canary = runner.load(canary_onnx(d), precision=self.precision, threads=self.threads)
            import numpy as np

            canary.bind(np.random.default_rng(0).standard_normal(canary.input_shape).astype(canary.input_dtype))
            sessions = []
            for i, it in enumerate(items):
                path = export_onnx(it.module, (self.batch, *it.input_shape), d / f"b{i}.onnx")
                s = runner.load(path, precision=self.precision, threads=self.threads)
                s.bind(np.random.default_rng(i).standard_normal(s.input_shape).astype(s.input_dtype))
                sessions.append((it.key, s))
            mon = DriftMonitor(canary.run_bound, TimingConfig(iterations=self.iterations, warmup=5,
                                                              canary_every=max(2, min(8, len(items)))))
            mon.start()
            for key, s in sessions:
                mon.measure(key, s.run_bound)
            run = mon.finish()
            self.drift = run.drift.to_dict()
            for key, s in sessions:
                out[key] = float(run.items[key].estimate_ms)
                s.close()
            canary.close()
        return out


def export_onnx(module: nn.Module, shape: tuple[int, ...], path: Path) -> Path:
    """Export a block (eval mode, fixed shape) to one ONNX file, opset 17.

    The TorchScript exporter is tried first (fast); modules it cannot trace (timm attention with
    ``is_causal``) go through the dynamo exporter, then onnxslim folds its constants.
    """
    import warnings

    module = module.eval()
    x = torch.randn(*shape)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module, (x,), str(path), opset_version=17, dynamo=False,
                              input_names=["input"], output_names=["output"])
        except Exception:  # noqa: BLE001 - the legacy tracer fails on some modules; use dynamo
            torch.onnx.export(module, (x,), str(path), opset_version=18, dynamo=True, external_data=False,
                              input_names=["input"], output_names=["output"])
            import onnx
            import onnxslim

            onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))
    return path
