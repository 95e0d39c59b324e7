"""Spec of the machine running the command (the ``local-cpu`` profile), detected at run time.

The figures are estimates from /proc/cpuinfo (cores, clock, SIMD width); they are marked
``unconfirmed`` because no datasheet backs them. Measured tables replace them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path


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


def detected() -> dict[str, float | str | bool]:
    """What this machine has (model, usable cores, clock, FP32 FLOP/cycle/core, bf16); probed once
    per process, returned as a fresh dict (a caller changing it does not change the next answer)."""
    return dict(_detected())


@lru_cache(maxsize=1)
def _detected() -> dict[str, float | str | bool]:
    flags = cpu_flags()
    cores = usable_cores()
    ghz = cpu_clock_ghz() or 2.5
    fpc = flops_per_cycle(flags)
    return {
        "model": cpu_model(),
        "cores": cores,
        "ghz": ghz,
        "fpc": fpc,
        "bf16": has_bf16(flags),
    }


def has_bf16(flags: set[str] | None = None) -> bool:
    """AVX512-BF16 or AMX-BF16 in the CPU flags: where OpenVINO runs bf16 natively (faster than f32)."""
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def detect_precisions(listed: Sequence[str], flags: set[str] | None = None) -> list[str]:
    """The profile's precisions this CPU has: bf16 only with AVX512-BF16/AMX (emulated bf16 is slower
    than f32, so a table or a search at bf16 there would mislead); the others as listed."""
    bf16 = has_bf16(flags)
    return [p for p in listed if p != "bf16" or bf16]
