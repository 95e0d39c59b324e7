"""Device-state probes recorded with every benchmark: what state the hardware was in.

CPU model, cores, governor and clocks; GPU name, driver, CUDA and TensorRT versions (nvidia-smi,
when present); on Jetson: L4T release, ``nvpmodel -q``, ``jetson_clocks --show``; thermal zones;
runtime versions. Every probe is best effort: a missing tool or an unreadable file leaves the
field ``None`` (never an exception). Standard library only: this module is shipped to remote
devices with ``compress.bench.agent``.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

RUNTIME_PACKAGES = ("onnxruntime", "onnxruntime-gpu", "openvino", "tensorrt", "torch", "numpy")


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip()
    except OSError:
        return None


def _cmd(argv: list[str], timeout: float = 10.0) -> str | None:
    exe = shutil.which(argv[0]) or (argv[0] if os.path.isabs(argv[0]) and os.access(argv[0], os.X_OK) else None)
    if exe is None:
        return None
    try:
        res = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    out = (res.stdout or "") + (res.stderr or "")
    return out.strip() if res.returncode == 0 or out.strip() else None


def cpu_state() -> dict[str, Any]:
    info = _read("/proc/cpuinfo") or ""
    m = re.search(r"^(model name|Model|Hardware)\s*:\s*(.+)$", info, re.M)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        usable = os.cpu_count()
    cpu0 = "/sys/devices/system/cpu/cpu0/cpufreq"
    cur = _read(f"{cpu0}/scaling_cur_freq")
    mx = _read(f"{cpu0}/cpuinfo_max_freq")
    load = None
    try:
        load = list(os.getloadavg())
    except OSError:
        pass
    return {
        "model": m.group(2).strip() if m else (platform.processor() or platform.machine()),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "governor": _read(f"{cpu0}/scaling_governor"),
        "cur_freq_mhz": int(cur) / 1000 if cur and cur.isdigit() else None,
        "max_freq_mhz": int(mx) / 1000 if mx and mx.isdigit() else None,
        "loadavg": load,
    }


def gpu_state() -> dict[str, Any] | None:
    """NVIDIA GPUs via ``nvidia-smi`` (None when there is none)."""
    q = _cmd(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,temperature.gpu,clocks.sm,clocks.mem,power.draw,persistence_mode",
            "--format=csv,noheader,nounits",
        ]
    )
    if not q:
        return None
    gpus = []
    for line in q.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 7:
            gpus.append(
                dict(
                    zip(
                        (
                            "name",
                            "driver",
                            "temperature_c",
                            "sm_clock_mhz",
                            "mem_clock_mhz",
                            "power_w",
                            "persistence_mode",
                        ),
                        parts,
                    )
                )
            )
    head = _cmd(["nvidia-smi"]) or ""
    m = re.search(r"CUDA Version:\s*([\d.]+)", head)
    return {"gpus": gpus, "cuda_driver_version": m.group(1) if m else None}


def cuda_version() -> str | None:
    for f in ("/usr/local/cuda/version.json", "/usr/local/cuda/version.txt"):
        txt = _read(f)
        if txt:
            m = re.search(r'"cuda"\s*:\s*\{[^}]*"version"\s*:\s*"([\d.]+)"', txt) or re.search(r"([\d]+\.[\d.]+)", txt)
            if m:
                return m.group(1)
    out = _cmd(["nvcc", "--version"])
    m = re.search(r"release ([\d.]+)", out or "")
    return m.group(1) if m else None


def tensorrt_version() -> str | None:
    try:
        return metadata.version("tensorrt")
    except metadata.PackageNotFoundError:
        pass
    out = _cmd(["dpkg-query", "-W", "-f=${Version}", "libnvinfer10"]) or _cmd(
        ["dpkg-query", "-W", "-f=${Version}", "libnvinfer8"]
    )
    first = out.splitlines()[0].strip() if out else ""
    return first if re.match(r"\d+\.\d+", first) else None  # not dpkg-query's "no packages found" line


def jetson_state() -> dict[str, Any] | None:
    """L4T release, nvpmodel mode and jetson_clocks state (None off Jetson)."""
    rel = _read("/etc/nv_tegra_release")
    if rel is None and not Path("/etc/nvpmodel.conf").exists():
        return None
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", rel or "")
    return {
        "l4t": f"{m.group(1)}.{m.group(2)}" if m else None,
        "nv_tegra_release": (rel or "").splitlines()[0] if rel else None,
        "jetpack": _cmd(["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"]),
        "nvpmodel": _cmd(["nvpmodel", "-q"]),
        "jetson_clocks": _cmd(["jetson_clocks", "--show"]),
        "model": _read("/proc/device-tree/model"),
    }


def temperatures() -> dict[str, float]:
    """Thermal zones (type -> degrees C)."""
    out: dict[str, float] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        t = _read(zone / "temp")
        if t and t.lstrip("-").isdigit():
            name = _read(zone / "type") or zone.name
            key = name if name not in out else f"{name}:{zone.name}"
            out[key] = int(t) / 1000.0
    return out


def runtime_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in RUNTIME_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def device_state(*, threads: int | None = None) -> dict[str, Any]:
    """Everything above, in one JSON-ready dict (``threads``: threads the benchmark used)."""
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": cpu_state(),
        "threads_used": threads,
        "gpu": gpu_state(),
        "cuda": cuda_version(),
        "tensorrt": tensorrt_version(),
        "jetson": jetson_state(),
        "temperatures_c": temperatures(),
        "versions": runtime_versions(),
    }
