"""Spec of the machine running the command (the ``local-cpu`` profile), detected at run time.

The figures are estimates from /proc/cpuinfo (cores, clock, SIMD width); they are marked
``unconfirmed`` because no datasheet backs them. Measured tables replace them.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compress.hardware.profile import Spec


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_model() -> str:
    m = re.search(r"^model name\s*:\s*(.+)$", _cpuinfo(), re.M)
    if m:
        return m.group(1).strip()
    import platform

    return platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    m = re.search(r"^(flags|Features)\s*:\s*(.+)$", _cpuinfo(), re.M)
    return set(m.group(2).split()) if m else set()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def cpu_clock_ghz() -> float | None:
    for p in ("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",):
        try:
            return int(Path(p).read_text().strip()) / 1e6
        except (OSError, ValueError):
            pass
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)$", _cpuinfo(), re.M)
    return float(m.group(1)) / 1000 if m else None


def flops_per_cycle(flags: set[str]) -> int:
    """FP32 FLOPs per cycle per core from the widest FMA the CPU reports (an estimate)."""
    if "avx512f" in flags or ("avx2" in flags and "fma" in flags):
        return 32
    if "asimd" in flags or "neon" in flags:
        return 16
    return 8


@lru_cache(maxsize=1)
def _detected() -> dict[str, float | str | bool]:
    flags = cpu_flags()
    cores = usable_cores()
    ghz = cpu_clock_ghz() or 2.5
    fpc = flops_per_cycle(flags)
    return {
        "model": cpu_model(), "cores": cores, "ghz": ghz, "fpc": fpc,
        "bf16": has_bf16(flags),
    }


def has_bf16(flags: set[str] | None = None) -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags: where OpenVINO runs bf16 natively (faster than f32)."""
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def detect_precisions(listed: list[str], flags: set[str] | None = None) -> list[str]:
    """The profile's precisions this CPU has: bf16 only with AVX512-BF16/AMX (emulated bf16 is slower
    than f32, so a table or a search at bf16 there would mislead); the others as listed."""
    bf16 = has_bf16(flags)
    return [p for p in listed if p != "bf16" or bf16]


def detect_local_spec(base: Spec | None) -> Spec:
    """Fill the ``local-cpu`` spec from this machine; values from the YAML are kept as defaults."""
    from compress.hardware.profile import Figure, Spec

    d = _detected()
    src = f"detected at run time: {d['model']}, {d['cores']} usable cores, {float(d['ghz']):.2f} GHz, {d['fpc']} FP32 FLOP/cycle/core (estimate)"
    fp32 = float(d["cores"]) * float(d["ghz"]) * float(d["fpc"]) / 1000.0
    peak = {"fp32": Figure(value=fp32, unit="TFLOPS", source=src, unconfirmed=True)}
    if d["bf16"]:
        peak["bf16"] = Figure(value=2 * fp32, unit="TFLOPS", source=src + "; AVX512_BF16", unconfirmed=True)
    bw = base.memory_bandwidth if base else Figure(value=20.0, unit="GB/s", source="assumed", unconfirmed=True)
    return Spec(
        peak=peak, memory_bandwidth=bw,
        cores=Figure(value=float(d["cores"]), unit="cores", source=src),
        clock_ghz=Figure(value=float(d["ghz"]), unit="GHz", source=src, unconfirmed=True),
        layer_overhead_us=base.layer_overhead_us if base else None,
        efficiency=dict(base.efficiency) if base else {}, detected=True,
    )
