"""Block latency for UPDP decisions: a small protocol and two implementations.

:class:`BlockLatency` is what selection needs: the latency of one block module (original or a
merged form) at an input shape. Implementations:

* :class:`MeasuredBlockLatency` measures on the spot: each block form is exported to ONNX and run
  with the shared runner (``compress.export.runtimes``) under the shared drift-controlled timing engine
  (``compress.bench.timing``, canary from ``compress.bench.canary``). All forms of a model are timed in
  one campaign, so their ratios hold when the machine drifts; the drift status is reported.
* :class:`MacsBlockLatency` is an *estimate* (MACs / a nominal rate, plus a per-conv overhead),
  for tests and dry runs; its ``source`` says ``estimate`` and the report carries it.

* :class:`TableBlockLatency` prices a supernet subnet's blocks from the target device's latency
  table (``compress profile --device D --merged`` measures the merged kinds too; without a table,
  the device's roofline estimate, flagged). Nothing is timed: items are priced by their block
  signature (key ``NAME|original`` or ``NAME|FORM``) and the whole model (``__model__``) by the
  table's calibrated subnet prediction. This is how ``compress prune --device jetson-orin-nano``
  decides for a device that is not this machine.
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
    input_shape: tuple[int, ...]  # (C, H, W) or (N, C) tokens, batch excluded
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
        from compress.bench.timing import DriftMonitor, TimingConfig
        from compress.export.runtimes import get_runner

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
            mon = DriftMonitor(
                canary.run_bound,
                TimingConfig(iterations=self.iterations, warmup=5, canary_every=max(2, min(8, len(items)))),
            )
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


@dataclass
class TableBlockLatency:
    """Block latencies of one subnet from a device's latency table (see module doc).

    ``blocks``: candidate name -> its block signature (:func:`subnet_block_signatures`);
    ``model``: the device's :class:`~compress.latency.predict.LatencyModel` for the subnet's space;
    ``config``: the subnet. Block savings come from uncalibrated entries; they are scaled by the
    table's calibration ratio at this subnet (calibrated / summed prediction) so that they add up
    on the same scale as the whole-model prediction.
    """

    model: Any
    config: Any
    blocks: dict[str, Any]
    source: str = "table"
    drift: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # item key -> measured/interpolated/estimated

    def __post_init__(self) -> None:
        kind = "table" if self.model.source == "measured" else "estimate:roofline"
        self.source = f"{kind}:{self.model.device}/{self.model.runtime}/{self.model.precision}"
        genes = self.model.space.to_genes(self.config)[None, :]
        self.model_ms = float(self.model.predict_genes(genes)[0])
        summed = float(self.model.predict_sum_genes(genes)[0])
        self.scale = self.model_ms / summed if summed > 0 else 1.0

    def latencies(self, items: list[BlockItem]) -> dict[str, float]:
        from compress.core.errors import UsageError
        from compress.latency.profile import merged_signature

        out: dict[str, float] = {}
        for it in items:
            if it.key == "__model__":
                out[it.key], self.sources[it.key] = self.model_ms, self.model.source
                continue
            name, _, form = it.key.rpartition("|")
            sig = self.blocks.get(name)
            if sig is None:
                raise UsageError(
                    f"the latency table cannot price '{it.key}': only the subnet's blocks and the whole "
                    "unpruned model have table entries"
                )
            if form != "original":
                sig = merged_signature(sig, form)
                if sig is None:
                    raise UsageError(f"no merged signature for form '{form}' of {name} ({self.blocks[name].kind})")
            ms, how = self.model.signature_ms(sig)
            out[it.key], self.sources[it.key] = ms * self.scale, how
        return out


def block_inputs(module, names: list[str], input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Input shape (batch excluded) of each named block, from one forward pass of batch 1."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.get_submodule(n).register_forward_pre_hook(
            lambda _m, a, n=n: shapes.__setitem__(n, tuple(a[0].shape[1:]))
        )
        for n in names
    ]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def subnet_block_signatures(
    module: nn.Module, source: dict[str, Any], input_shape: tuple[int, ...]
) -> tuple[Any, Any, dict[str, Any]]:
    """``(space, config, {block name: signature})`` of an exported supernet subnet.

    The layer specs of the subnet's config (``space.block_specs``) are matched in order to the
    module's MBConv / ConvNeXt / bottleneck blocks, and each pair is checked against the block's
    real input shape, so a module that is not the recorded subnet is refused rather than priced
    wrongly.
    """
    from compress.core.errors import UsageError
    from compress.latency.signature import signature_of
    from compress.supernet import SearchSpace
    from compress.supernet.static import Bottleneck, ConvNeXtBlock, MBConv

    if (source or {}).get("kind") != "subnet":
        raise UsageError(
            "latency tables price supernet subnets only (a `compress search` result, or a supernet "
            "checkpoint with --subnet); for other models use --device local-cpu, measured here"
        )
    space = SearchSpace.from_dict(source["space"], source="model source")
    cfg = space.config_from_dict(source["config"])
    specs = [signature_of(s) for s in space.block_specs(cfg)]
    specs = [s for s in specs if s.kind in ("mbconv", "convnext", "bottleneck")]
    mods = [n for n, m in module.named_modules() if isinstance(m, (MBConv, ConvNeXtBlock, Bottleneck))]
    if len(mods) != len(specs):
        raise UsageError(
            f"the model has {len(mods)} blocks but its recorded subnet has {len(specs)}: it was changed "
            "after export (already pruned?); use --device local-cpu, measured here"
        )
    shapes = block_inputs(module, mods, input_shape)
    for n, sig in zip(mods, specs):
        c, h = shapes[n][0], shapes[n][-1]
        if (c, h) != (sig.in_ch, sig.in_hw):
            raise UsageError(
                f"block {n} sees {c} channels at {h}x{h} but its recorded signature says "
                f"{sig.in_ch} at {sig.in_hw}x{sig.in_hw}; the model is not the recorded subnet"
            )
    return space, cfg, dict(zip(mods, specs))


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
            torch.onnx.export(
                module, (x,), str(path), opset_version=17, dynamo=False, input_names=["input"], output_names=["output"]
            )
        except Exception:  # noqa: BLE001 - the legacy tracer fails on some modules; use dynamo
            torch.onnx.export(
                module,
                (x,),
                str(path),
                opset_version=18,
                dynamo=True,
                external_data=False,
                input_names=["input"],
                output_names=["output"],
            )
            import onnx
            import onnxslim

            onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))
    return path
