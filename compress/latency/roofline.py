"""Roofline latency estimate per block from datasheet figures (pure math; flagged ``estimated``).

Each block is decomposed into primitive ops (dense conv, pointwise conv, depthwise conv, linear,
elementwise, pooling). An op takes ``max(flops / (peak * efficiency[op]), bytes / bandwidth)``
plus a fixed per-layer overhead; a block is the sum of its ops. Depthwise convolutions reach a
small fraction of peak on CPUs and GPUs, which the default efficiency factors encode; a
profile's ``spec.efficiency`` overrides them per op kind.

>>> from compress.latency.signature import BlockSignature
>>> s = BlockSignature(kind="conv", in_hw=32, in_ch=3, out_hw=16, out_ch=16, kernel=3, stride=2)
>>> ops = block_ops(s, bytes_per_elem=4)
>>> ops[0].kind, ops[0].flops
('dense', 221184)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compress.latency.signature import BlockSignature

OP_KINDS: tuple[str, ...] = ("dense", "pointwise", "depthwise", "linear", "elementwise", "pool")
# share of peak reached in practice, by device kind (cpu, gpu/edge); spec.efficiency overrides
DEFAULT_EFFICIENCY: dict[str, dict[str, float]] = {
    "cpu": {"dense": 0.45, "pointwise": 0.40, "depthwise": 0.06, "linear": 0.25, "elementwise": 0.05, "pool": 0.05},
    "gpu": {"dense": 0.55, "pointwise": 0.45, "depthwise": 0.03, "linear": 0.30, "elementwise": 0.02, "pool": 0.02},
    # DLA: an assumption (no published per-layer DLA figures); depthwise and pooling are weak there
    "dla": {"dense": 0.50, "pointwise": 0.40, "depthwise": 0.05, "linear": 0.20, "elementwise": 0.05, "pool": 0.05},
}
BYTES_PER_ELEM: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
ESTIMATE_NOTE = (
    "latency is ESTIMATED from datasheet figures (roofline), not measured; "
    "measure a table with `compress profile --device {device} --remote user@host` "
    "(or without --remote on the device itself)"
)


@dataclass(frozen=True)
class Op:
    kind: str  # one of OP_KINDS
    flops: int  # floating-point operations (2 per multiply-add)
    bytes: int  # bytes moved: inputs + weights + outputs
    layers: int = 1  # runtime layers (kernels launched) this op stands for


@dataclass(frozen=True)
class Roof:
    """Device figures the estimate needs (from a hardware profile's ``spec``)."""

    peak_flops: float  # FLOP/s at the precision
    bandwidth: float  # bytes/s
    overhead_s: float  # per layer
    efficiency: dict[str, float]
    bytes_per_elem: int


def _conv(
    kind: str, hw_in: int, hw_out: int, cin: int, cout: int, k: int, groups: int, b: int, *, extra_layers: int = 0
) -> Op:
    macs = hw_out * hw_out * cout * (cin // groups) * k * k
    weights = cout * (cin // groups) * k * k + cout
    byts = b * (hw_in * hw_in * cin + hw_out * hw_out * cout + weights)
    return Op(kind, 2 * macs, byts, 1 + extra_layers)


def _elementwise(n_elems: int, b: int, *, reads: int = 1, flops_per: int = 1, layers: int = 0) -> Op:
    # inside a block, runtimes fuse elementwise ops (add, norm, activation) into their neighbours:
    # they move bytes but launch no layer of their own (standalone ones pass layers=1)
    return Op("elementwise", flops_per * n_elems, b * n_elems * (reads + 1), layers)


def block_ops(sig: BlockSignature, *, bytes_per_elem: int = 4) -> list[Op]:
    """Primitive ops of one block (activations and BN fused into the preceding conv)."""
    b = bytes_per_elem
    s, k = sig.stride, sig.kernel
    hi, ho, ci, co, mid = sig.in_hw, sig.out_hw, sig.in_ch, sig.out_ch, sig.mid or sig.out_ch
    kind = sig.kind
    ops: list[Op] = []
    if kind == "conv":
        ops.append(_conv("pointwise" if k == 1 else "dense", hi, ho, ci, co, k, 1, b))
    elif kind == "dwconv":
        ops.append(_conv("depthwise", hi, ho, ci, co, k, ci, b))
    elif kind == "mbconv":
        if sig.has_expand:
            ops.append(_conv("pointwise", hi, hi, ci, mid, 1, 1, b))
        ops.append(_conv("depthwise", hi, ho, mid, mid, k, mid, b))
        if sig.se:
            sm = sig.se_mid or max(1, mid // 4)
            ops.append(Op("pool", ho * ho * mid, b * (ho * ho * mid + mid), 1))
            ops.append(_conv("linear", 1, 1, mid, sm, 1, 1, b))
            ops.append(_conv("linear", 1, 1, sm, mid, 1, 1, b))
            ops.append(_elementwise(ho * ho * mid, b, reads=2))
        ops.append(_conv("pointwise", ho, ho, mid, co, 1, 1, b))
        if sig.residual:
            ops.append(_elementwise(ho * ho * co, b, reads=2))
    elif kind == "convnext":
        ops.append(_conv("depthwise", hi, ho, ci, ci, k, ci, b))
        ops.append(_elementwise(ho * ho * ci, b, flops_per=5))  # norm
        ops.append(_conv("pointwise", ho, ho, ci, mid, 1, 1, b))
        ops.append(_elementwise(ho * ho * mid, b, flops_per=8))  # GELU
        ops.append(_conv("pointwise", ho, ho, mid, co, 1, 1, b))
        ops.append(_elementwise(ho * ho * co, b, reads=2, flops_per=2 if sig.layer_scale else 1))
    elif kind == "bottleneck":
        ops.append(_conv("pointwise", hi, hi, ci, mid, 1, 1, b))
        ops.append(_conv("dense", hi, ho, mid, mid, k, 1, b))
        ops.append(_conv("pointwise", ho, ho, mid, co, 1, 1, b))
        if s != 1 or ci != co:
            ops.append(_conv("pointwise", hi, ho, ci, co, 1, 1, b))
        ops.append(_elementwise(ho * ho * co, b, reads=2))
    elif kind == "basic":
        ops.append(_conv("dense", hi, ho, ci, co, k, 1, b))
        ops.append(_conv("dense", ho, ho, co, co, k, 1, b))
        if s != 1 or ci != co:
            ops.append(_conv("pointwise", hi, ho, ci, co, 1, 1, b))
        ops.append(_elementwise(ho * ho * co, b, reads=2))
    elif kind == "downsample":
        ops.append(_elementwise(hi * hi * ci, b, flops_per=2))
        ops.append(_conv("dense", hi, ho, ci, co, k, 1, b))
    elif kind == "maxpool":
        ops.append(Op("pool", ho * ho * co * k * k, b * (hi * hi * ci + ho * ho * co), 1))
    elif kind == "norm":
        ops.append(_elementwise(hi * hi * ci, b, flops_per=2, layers=1))
    elif kind == "pool":
        ops.append(Op("pool", hi * hi * ci, b * (hi * hi * ci + co), 1))
    elif kind == "linear":
        ops.append(Op("linear", 2 * ci * co, b * (ci + co + ci * co + co), 1))
    elif kind == "merged_dw_pw":
        ops.append(_conv("depthwise", hi, ho, ci, ci, k, ci, b))
        ops.append(_conv("pointwise", ho, ho, ci, co, 1, 1, b))
        if sig.residual:
            ops.append(_elementwise(ho * ho * co, b, reads=2))
    elif kind == "merged_dense":
        ops.append(_conv("pointwise" if k == 1 else "dense", hi, ho, ci, co, k, 1, b))
    elif kind == "merged_pw":
        ops.append(_conv("pointwise", hi, ho, ci, co, 1, 1, b))
    else:  # pragma: no cover - KINDS is closed; kept so a new kind fails loudly
        raise ValueError(f"no roofline decomposition for block kind '{kind}'")
    return ops


def block_cost(sig: BlockSignature, *, bytes_per_elem: int = 4) -> tuple[int, int, int]:
    """(flops, bytes, layers) of a block."""
    ops = block_ops(sig, bytes_per_elem=bytes_per_elem)
    return sum(o.flops for o in ops), sum(o.bytes for o in ops), sum(o.layers for o in ops)


def op_time_s(
    flops: float,
    nbytes: float,
    *,
    peak_flops: float,
    efficiency: float,
    bandwidth: float,
    layers: int = 1,
    overhead_s: float = 0.0,
) -> float:
    """Roofline time of one op: compute- or memory-bound, plus per-layer overhead (monotonic in both)."""
    return max(flops / (peak_flops * efficiency), nbytes / bandwidth) + layers * overhead_s


def block_time_ms(sig: BlockSignature, roof: Roof, *, batch: int = 1) -> float:
    """Estimated milliseconds of one block at ``batch`` (weights are read once per batch)."""
    total = 0.0
    for op in block_ops(sig, bytes_per_elem=roof.bytes_per_elem):
        total += op_time_s(
            op.flops * batch,
            op.bytes * batch,
            peak_flops=roof.peak_flops,
            efficiency=roof.efficiency.get(op.kind, 0.1),
            bandwidth=roof.bandwidth,
            layers=op.layers,
            overhead_s=roof.overhead_s,
        )
    return total * 1000.0


def gpu_roof_base(profile: Any, precision: str) -> tuple[float, float]:
    """(peak FLOP/s, bandwidth bytes/s) of the device's GPU at its power mode (``profile.power_mode``).

    Refuses a mode whose figures are not published (a mode listed by name only): pricing it with
    another mode's figures would be a number with nothing behind it.
    """
    from compress.core.errors import UsageError

    spec = getattr(profile, "spec", None)
    if spec is None:
        raise UsageError(
            f"device '{profile.name}' has no datasheet figures to estimate latency from; "
            f"measure a table with `compress profile --device {profile.name}`"
        )
    mode = _mode(profile)
    if mode is not None and mode.gpu_clock_mhz is None and not mode.peak:
        raise UsageError(
            f"{profile.name} at power mode {mode.name}: its clocks and peaks are not published in the "
            f"material this profile cites, so there is no estimate for it; measure a table there "
            f"(`compress profile --device {profile.name} --power-mode {mode.name} --remote user@host`) "
            f"or choose a mode with figures: {', '.join(m.name for m in profile.power_modes if m.gpu_clock_mhz or m.peak)}"
        )
    fig = spec.peak.get(precision) or spec.peak.get("fp32") or next(iter(spec.peak.values()))
    return fig.value * 1e12, spec.memory_bandwidth.value * 1e9


def _mode(profile: Any) -> Any:
    if not getattr(profile, "power_modes", None):
        return None
    from compress.hardware.modes import current_mode

    return current_mode(profile)


def profile_calibration(profile: Any) -> Any:
    """The :class:`~compress.latency.calibration.RoofCalibration` a profile names, or None."""
    name = getattr(profile, "calibration", None)
    if not name:
        return None
    from compress.latency.calibration import load_calibration

    return load_calibration(name)


def roof_from_profile(profile: Any, precision: str, *, engine: str = "gpu") -> Roof:
    """Build :class:`Roof` from a ``HardwareProfile`` (its ``spec``, at its power mode) for one precision.

    A precision without its own peak falls back to fp32's (and says nothing else: the estimate is
    coarse by nature). Raises ``UsageError`` when the profile has no spec at all. A profile that
    names a ``calibration`` gets its fitted efficiencies and per-layer overhead (GPU cycles at the
    mode's clock); ``engine="dla"`` prices one DLA core with its own peak (uncalibrated).
    """
    from compress.core.errors import UsageError

    kind = "cpu" if profile.kind == "cpu" else "gpu"
    if engine == "dla":
        from compress.hardware.modes import dla_peak

        peak_fig = dla_peak(profile, precision)
        if peak_fig is None or profile.spec is None:
            has = f"DLA precisions {', '.join(profile.dla.precisions)}" if profile.dla else "no DLA"
            raise UsageError(
                f"device '{profile.name}' has no DLA estimate at {precision} ({has}); "
                "use --engine gpu" + ("" if profile.dla else " (the Orin Nano has no DLA)")
            )
        _ = gpu_roof_base(profile, precision)  # same refusal for modes without figures
        ov = profile.dla.layer_overhead_us.value if profile.dla.layer_overhead_us else 30.0
        return Roof(
            peak_flops=peak_fig.value * 1e12,
            bandwidth=profile.spec.memory_bandwidth.value * 1e9,
            overhead_s=ov * 1e-6,
            efficiency=dict(DEFAULT_EFFICIENCY["dla"]),
            bytes_per_elem=BYTES_PER_ELEM.get(precision, 4),
        )
    if engine != "gpu":
        from compress.core.errors import unknown

        raise unknown("engine", engine, ("gpu", "dla"))
    peak, bw = gpu_roof_base(profile, precision)
    spec = profile.spec
    overhead = (spec.layer_overhead_us.value if spec.layer_overhead_us else 10.0) * 1e-6
    eff = dict(DEFAULT_EFFICIENCY[kind])
    eff.update(spec.efficiency or {})
    cal = profile_calibration(profile)
    if cal is not None:
        from compress.hardware.modes import clock_figure

        clock, _unc = clock_figure(profile)
        if clock is None:
            raise UsageError(
                f"device '{profile.name}' names calibration '{cal.name}' but has no GPU clock "
                "(spec.clock_ghz or its mode's gpu_clock_mhz) to turn its per-layer cycles into time"
            )
        eff.update(cal.efficiency)
        overhead = cal.layer_overhead_cycles / clock
    return Roof(
        peak_flops=peak,
        bandwidth=bw,
        overhead_s=overhead,
        efficiency=eff,
        bytes_per_elem=BYTES_PER_ELEM.get(precision, 4),
    )


def estimate_detail(profile: Any, *, engine: str = "gpu") -> str:
    """``calibrated to N published figures, leave-one-out error X%; power mode MAXN (default)``."""
    cal = profile_calibration(profile) if engine == "gpu" else None
    parts = [cal.label if cal is not None else "not calibrated"]
    if getattr(profile, "power_mode", None):
        from compress.hardware.modes import mode_label

        parts.append(f"power mode {mode_label(profile)}")
    if engine == "dla":
        parts.append("one DLA core, DLA peak derived")
    return "; ".join(parts)


def estimate_note(profile: Any, *, engine: str = "gpu") -> str:
    """How an estimate for ``profile`` is labelled: ESTIMATED, its calibration if any, the power mode."""
    return f"ESTIMATED (roofline, {estimate_detail(profile, engine=engine)})"


def estimate_info(profile: Any, source: str = "estimated") -> dict[str, Any]:
    """JSON fields every prediction carries: the power mode (and whether it is the default) and, for
    an estimate, its label and calibration (rows, leave-one-out error)."""
    out: dict[str, Any] = {}
    if profile is None:
        return out
    mode = getattr(profile, "power_mode", None)
    if mode:
        from compress.hardware.modes import default_mode_name

        out["power_mode"] = mode
        out["power_mode_is_default"] = mode == default_mode_name(profile)
    if source == "estimated":
        try:
            cal = profile_calibration(profile)
        except Exception:  # noqa: BLE001 - a broken calibration file must not hide the prediction's label
            cal = None
        out["estimate_note"] = estimate_note(profile) if getattr(profile, "spec", None) is not None else None
        out["estimate_calibration"] = (
            {
                "name": cal.name,
                "published_figures": len(cal.rows),
                "loo_max_error_pct": cal.loo_max_error_pct,
                "fit_max_error_pct": cal.fit_max_error_pct,
            }
            if cal is not None
            else None
        )
    return out
