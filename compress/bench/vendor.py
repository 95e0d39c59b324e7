"""The runtime vendors' own benchmark tools: OpenVINO ``benchmark_app`` and TensorRT ``trtexec``.

Used by the remote agent when the runtime's Python package is missing on the device, and by
``benchmarks/bench_vendor_tools.py`` to check our measurement against the vendors'. Standard
library only (shipped to devices).

``benchmark_app`` prints a summary only (median, average, min, max of its iterations), so one
run of it is one *burst* whose single sample is its median; ``trtexec --exportTimes`` writes every
iteration, so its bursts are real per-iteration samples (GPU compute time).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


class VendorToolError(RuntimeError):
    """The tool is missing, failed, or printed something we cannot parse."""


def find_tool(name: str) -> str | None:
    """``name`` on PATH, beside this Python (venvs), or TensorRT's usual place for trtexec."""
    exe = shutil.which(name)
    if exe:
        return exe
    cands = [Path(sys.executable).parent / name]
    if name == "trtexec":
        cands += [Path("/usr/src/tensorrt/bin/trtexec"), Path("/usr/local/tensorrt/bin/trtexec")]
    for c in cands:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


_UNITS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}
_BA_FIELDS = {"Median": "median_ms", "Average": "mean_ms", "Min": "min_ms", "Max": "max_ms"}


def parse_benchmark_app(text: str) -> dict[str, Any]:
    """Parse the statistics block of ``benchmark_app``'s output.

    >>> parse_benchmark_app("[ INFO ] Count: 10 iterations\\n[ INFO ] Latency:\\n[ INFO ]    Median: 1.60 ms\\n"
    ...                     "[ INFO ] Throughput:   583.68 FPS")["median_ms"]
    1.6
    """
    out: dict[str, Any] = {}
    m = re.search(r"Count:\s*(\d+)\s*iterations", text)
    if m:
        out["iterations"] = int(m.group(1))
    lat = text.split("Latency:", 1)
    if len(lat) == 2:
        for key, field in _BA_FIELDS.items():
            mm = re.search(rf"{key}:\s*([\d.]+)\s*(ns|us|ms|s)\b", lat[1])
            if mm:
                out[field] = float(mm.group(1)) * _UNITS[mm.group(2)]
    m = re.search(r"Throughput:\s*([\d.]+)\s*FPS", text)
    if m:
        out["throughput"] = float(m.group(1))
    if "median_ms" not in out:
        tail = text.strip().splitlines()[-1:] or ["no output"]
        raise VendorToolError(f"could not read benchmark_app's latency summary: {tail[0]}")
    return out


def run_benchmark_app(
    model: str | Path,
    *,
    iterations: int = 100,
    device: str = "CPU",
    precision: str | None = "f32",
    hint: str = "latency",
    threads: int | None = None,
    timeout: float = 600.0,
    input_file: str | Path | None = None,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """One ``benchmark_app`` run in latency mode; returns the parsed summary plus the command.

    ``threads`` needs ``hint='none'`` (a benchmark_app rule); then one stream is used.
    ``input_file``: raw float32 input (``ndarray.tofile``) fed as the model's f32 input. Without it
    benchmark_app fills an image-like input with random u8 values 0-255, and some models run at
    another speed on such data than on the data you time them with (efficientnet_b0 here: 2.3x).
    """
    exe = find_tool("benchmark_app")
    if exe is None:
        raise VendorToolError("benchmark_app not found (it comes with the openvino package)")
    argv = [exe, "-m", str(model), "-d", device, "-niter", str(int(iterations))]
    if threads is not None:
        argv += ["-hint", "none", "-nstreams", "1", "-nthreads", str(int(threads))]
    else:
        argv += ["-hint", hint]
    if precision:
        argv += ["-infer_precision", precision]
    if input_file is not None:
        argv += ["-ip", "f32", "-i", str(input_file)]
    argv += list(extra or [])
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise VendorToolError(f"benchmark_app did not finish within {timeout:.0f} s") from None
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines()
        err = next((ln for ln in lines if "ERROR" in ln), lines[-1] if lines else "")
        raise VendorToolError(f"benchmark_app failed (exit {res.returncode}): {err.strip()}")
    out = parse_benchmark_app(res.stdout + res.stderr)
    out["command"] = argv
    return out


def parse_trtexec_times(data: Any) -> dict[str, list[float]]:
    """Per-iteration times from ``trtexec --exportTimes`` JSON: GPU compute and host latency (ms).

    >>> parse_trtexec_times([{"computeMs": 1.5, "latencyMs": 1.9}, {"computeMs": 1.4, "latencyMs": 1.8}])
    {'compute_ms': [1.5, 1.4], 'latency_ms': [1.9, 1.8]}
    """
    if not isinstance(data, list) or not data:
        raise VendorToolError("trtexec --exportTimes wrote no iterations")
    comp = [float(d["computeMs"]) for d in data if isinstance(d, dict) and "computeMs" in d]
    lat = [float(d["latencyMs"]) for d in data if isinstance(d, dict) and "latencyMs" in d]
    if not comp and not lat:
        raise VendorToolError("trtexec --exportTimes JSON has neither computeMs nor latencyMs")
    return {"compute_ms": comp, "latency_ms": lat}


def run_trtexec(
    engine: str | Path,
    *,
    iterations: int = 200,
    warmup_ms: int = 500,
    timeout: float = 600.0,
    cuda_graph: bool = True,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """Time a serialized engine with ``trtexec --loadEngine`` and its per-iteration export."""
    exe = find_tool("trtexec")
    if exe is None:
        raise VendorToolError("trtexec not found (it comes with TensorRT: /usr/src/tensorrt/bin on Jetson)")
    with tempfile.TemporaryDirectory(prefix="compress-trtexec-") as td:
        times = Path(td) / "times.json"
        argv = [
            exe,
            f"--loadEngine={engine}",
            f"--iterations={int(iterations)}",
            f"--warmUp={int(warmup_ms)}",
            "--duration=0",
            "--useSpinWait",
            "--noDataTransfers",
            "--separateProfileRun",
            f"--exportTimes={times}",
        ]
        if cuda_graph:
            argv.append("--useCudaGraph")
        argv += list(extra or [])
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise VendorToolError(f"trtexec did not finish within {timeout:.0f} s") from None
        if res.returncode != 0 or not times.is_file():
            lines = (res.stdout + res.stderr).strip().splitlines()
            err = next((ln for ln in reversed(lines) if "Error" in ln or "FAILED" in ln), lines[-1] if lines else "")
            raise VendorToolError(f"trtexec failed (exit {res.returncode}): {err.strip()}")
        out: dict[str, Any] = parse_trtexec_times(json.loads(times.read_text()))
    out["command"] = argv
    return out
