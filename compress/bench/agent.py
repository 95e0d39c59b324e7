"""The benchmark agent: times artefacts on THIS machine and writes one JSON result.

``python -m compress.bench.agent --spec spec.json --out result.json``

It runs on the target device (copied there by ``compress bench --remote`` together with
``compress/bench/timing.py``, ``compress/bench/{device_state,vendor}.py`` and the shared runners of
``export/runtimes``) and needs only Python 3, numpy and the runtime itself: it imports neither
torch (except for the torch runtime) nor the rest of ``compress``. ``compress bench`` without
``--remote`` calls :func:`run_spec` in-process, so local and remote runs time the same way.

Runners: the shared ``compress.export.runtimes`` runner of each item's runtime. When that runtime's
Python package is missing on the device and fallback is allowed, OpenVINO items are timed with
``benchmark_app`` and TensorRT engines with ``trtexec`` (tagged in the result's ``runner``).

Spec (JSON)::

    {"schema": 1,
     "items": [{"name": "a", "artifact": "model.onnx", "runtime": "onnxruntime", "precision": "fp32",
                "threads": 2, "batch": 1, "device": null, "options": {}}],
     "canary": {"artifact": "compress-canary-v1.onnx", "runtime": "onnxruntime"},   # or null
     "timing": {"warmup": 10, "iterations": 100, "rounds": 5, ...},                  # TimingConfig
     "fallback": true, "samples": false, "seed": 0,
     "mode": "interleaved",      # or "stream": items one after another, canary every timing.canary_every
     "skip_errors": false}       # stream mode: record per-item load errors in "errors" instead of failing
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from compress.bench.device_state import device_state
from compress.bench.timing import DriftMonitor, Item, TimingConfig, TimingError, run_to_dict, time_items
from compress.core.errors import UsageError

AGENT_VERSION = 1
SPEC_SCHEMA = 1
RUNNER_SHARED = "compress.export.runtimes"


class AgentError(Exception):
    """A problem with the spec or an artefact: reported as one line in the result's ``error``."""


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def _input(shape: tuple[int, ...], dtype: Any, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return rng.standard_normal(shape).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, shape).astype(dt)
    return rng.integers(0, 10, shape).astype(dt)


def _resolve(artifact: Any, base: Path | None) -> Any:
    if not isinstance(artifact, str):
        return artifact  # an in-process object (a LoadedModel for the torch runtime)
    if ":" in artifact and not Path(artifact).exists() and not artifact.startswith("/"):
        return artifact  # a model reference such as timm:NAME (torch runtime)
    p = Path(artifact)
    if not p.is_absolute() and base is not None:
        p = base / p
    return str(p)


def _session(item: dict[str, Any], base: Path | None) -> tuple[Any, dict[str, Any]]:  # (Session, info)
    from compress.export.runtimes import get_runner

    runner = get_runner(item["runtime"])
    opts = dict(item.get("options") or {})
    t0 = time.perf_counter()
    sess = runner.load(
        _resolve(item["artifact"], base),
        precision=item.get("precision") or "fp32",
        threads=item.get("threads"),
        device=item.get("device"),
        batch=item.get("batch"),
        **opts,
    )
    info = runner.info()
    return sess, {
        "runtime": runner.name,
        "runner": RUNNER_SHARED,
        "runtime_version": info.get("version"),
        "settings": sess.settings,
        "input_shape": list(sess.input_shape),
        "load_s": time.perf_counter() - t0,
        "rss_after_load_mb": _peak_rss_mb(),
    }


def _runtime_available(runtime: str) -> bool:
    try:
        from compress.export.runtimes import get_runner

        return bool(get_runner(runtime).available())
    except Exception:  # noqa: BLE001 - compress.export.runtimes itself may not import (no numpy)
        return False


def _fallback(runtime: str) -> tuple[str, str]:
    """``(runtime name, vendor tool)`` the runtime's module declares as its fallback (``("", "")`` for none)."""
    try:
        from compress.export.runtimes import RUNNERS
    except Exception:  # noqa: BLE001 - compress.export.runtimes itself may not import (no numpy)
        return "", ""
    if runtime not in RUNNERS:
        return "", ""
    runner = RUNNERS.get(runtime)
    return str(runner.name), str(runner.fallback)


def _vendor_item(item: dict[str, Any], base: Path | None, cfg: TimingConfig) -> tuple[Item, dict[str, Any]]:
    """Time ``item`` with the vendor tool its runtime declares (``Runner.fallback``)."""
    from compress.bench import vendor

    rt = item["runtime"]
    name, tool = _fallback(rt)
    path = _resolve(item["artifact"], base)
    chunk = max(10, math.ceil((cfg.iterations or 100) / cfg.rounds))
    if tool == "benchmark_app" and vendor.find_tool("benchmark_app"):
        prec = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}.get(item.get("precision") or "fp32")

        def burst() -> list[float]:
            r = vendor.run_benchmark_app(
                path,
                iterations=chunk,
                precision=prec,
                threads=item.get("threads"),
                device=(item.get("device") or "CPU").upper(),
            )
            return [r["median_ms"]]

        return Item(item["name"], burst=burst, batch=item.get("batch") or 1), {
            "runtime": name,
            "runner": "benchmark_app",
            "runtime_version": None,
            "settings": {"iterations_per_run": chunk, "precision": prec, "threads": item.get("threads")},
            "note": "benchmark_app reports a summary only: each sample is the median of one benchmark_app run",
        }
    if tool == "trtexec" and vendor.find_tool("trtexec"):

        def burst_trt() -> list[float]:
            return list(vendor.run_trtexec(path, iterations=chunk)["compute_ms"])

        return Item(item["name"], burst=burst_trt, batch=item.get("batch") or 1), {
            "runtime": name,
            "runner": "trtexec",
            "runtime_version": None,
            "settings": {"iterations_per_run": chunk, "timer": "GPU compute time (--exportTimes computeMs)"},
        }
    raise AgentError(
        f"runtime '{rt}' is not installed on this device and no vendor tool ({tool or 'none declared'}) was found"
    )


def _numpy_canary() -> Callable[[], None]:  # a fixed CPU workload when no runtime can run the canary model
    import numpy as np

    a = np.random.default_rng(0).standard_normal((192, 192)).astype(np.float32)

    def run() -> None:
        x = a
        for _ in range(8):
            x = np.tanh(x @ a)

    return run


def _onnx_runtimes() -> tuple[str, ...]:
    """The runtimes that read the (ONNX) canary model, as the runner modules declare them."""
    try:
        from compress.export.runtimes import kind_runtimes
    except Exception:  # noqa: BLE001 - compress.export.runtimes itself may not import (no numpy)
        return ()
    return tuple(kind_runtimes("onnx"))


def _canary(spec: dict[str, Any], base: Path | None, seed: int) -> tuple[Any, dict[str, Any], list[Any]]:
    c = spec.get("canary")
    if not c:
        return None, {"kind": "none"}, []
    for rt in [c.get("runtime"), *_onnx_runtimes()]:
        if rt and _runtime_available(rt):
            try:
                sess, info = _session(
                    {
                        "artifact": c["artifact"],
                        "runtime": rt,
                        "precision": "fp32",
                        "threads": c.get("threads"),
                        "batch": 1,
                    },
                    base,
                )
            except Exception:  # noqa: BLE001 - try the next runtime
                continue
            sess.bind(_input(tuple(sess.input_shape), sess.input_dtype, seed))
            return (
                sess.run_bound,
                {
                    "kind": "model",
                    "runtime": info["runtime"],
                    "artifact": Path(c["artifact"]).name,
                    "runtime_version": info["runtime_version"],
                },
                [sess],
            )
    return (
        _numpy_canary(),
        {
            "kind": "numpy",
            "note": "no runtime could run the canary model; a fixed numpy workload tracks CPU drift only",
        },
        [],
    )


def run_spec(spec: dict[str, Any], *, base_dir: str | Path | None = None, progress: Any = None) -> dict[str, Any]:
    """Time every item of ``spec`` with drift control; returns the JSON-ready result."""
    if spec.get("schema") != SPEC_SCHEMA:
        raise AgentError(f"unsupported spec schema {spec.get('schema')!r} (this agent reads {SPEC_SCHEMA})")
    items_spec = spec.get("items") or []
    if not items_spec:
        raise AgentError("the spec lists no items")
    base = Path(base_dir) if base_dir else None
    cfg = TimingConfig(**(spec.get("timing") or {})).check()
    seed = int(spec.get("seed", 0))
    threads = next((it.get("threads") for it in items_spec if it.get("threads")), None)
    state_before = device_state(threads=threads)
    mode = spec.get("mode", "interleaved")
    if mode not in ("interleaved", "stream"):
        raise AgentError(f"unknown mode '{mode}'; choose interleaved or stream")
    infos: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    sessions: list[Any] = []

    def load(it: dict[str, Any]) -> Item:
        if spec.get("fallback", True) and not _runtime_available(it["runtime"]) and _fallback(it["runtime"])[1]:
            item, info = _vendor_item(it, base, cfg)
        else:
            sess, info = _session(it, base)
            sessions.append(sess)
            sess.bind(_input(tuple(sess.input_shape), sess.input_dtype, seed))
            item = Item(it["name"], sess.run_bound, batch=int(sess.input_shape[0]) if sess.input_shape else 1)
        infos[it["name"]] = info
        return item

    def close(ss: list[Any]) -> None:
        for s in ss:
            try:
                s.close()
            except Exception:  # noqa: BLE001 - best-effort cleanup
                pass
        ss.clear()

    canary_sessions: list[Any] = []
    try:
        canary, canary_info, canary_sessions = _canary(spec, base, seed)
        if mode == "interleaved":
            items = [load(it) for it in items_spec]
            run = time_items(items, canary=canary, config=cfg, progress=progress)
        else:  # stream: one item after another, canary every `canary_every` items, sessions closed per stretch
            mon = DriftMonitor(canary, TimingConfig(**{**asdict(cfg), "canary_every": cfg.canary_every or 8}))
            for k, it in enumerate(items_spec):
                try:
                    item = load(it)
                except Exception as err:  # noqa: BLE001 - recorded per item when asked to skip
                    if not spec.get("skip_errors"):
                        raise
                    errors[it["name"]] = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                    continue
                if item.burst is not None:
                    mon.measure_burst(item.name, item.burst, batch=item.batch)
                else:
                    mon.measure(item.name, item.fn, batch=item.batch)  # type: ignore[arg-type]
                if not mon.pending:
                    close(sessions)
                if progress:
                    progress(it["name"], k + 1, len(items_spec))
            run = mon.finish()
    finally:
        close(sessions)
        close(canary_sessions)
    state_after = device_state(threads=threads)
    return {
        "schema": 1,
        "agent_version": AGENT_VERSION,
        "items": infos,
        "canary": canary_info,
        "timing": run_to_dict(run, samples=bool(spec.get("samples"))),
        "device_state_before": state_before,
        "device_state_after": state_after,
        "peak_rss_mb": _peak_rss_mb(),
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m compress.bench.agent", description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True, help="spec JSON (artefact paths relative to its directory)")
    ap.add_argument("--out", required=True, help="where to write the result JSON")
    args = ap.parse_args(argv)
    spec_path = Path(args.spec)
    out = Path(args.out)
    code = 0
    try:
        spec = json.loads(spec_path.read_text())
        result = run_spec(spec, base_dir=spec_path.parent)
    except Exception as err:  # noqa: BLE001 - every failure becomes one line in the result
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        result = {"schema": 1, "agent_version": AGENT_VERSION, "error": msg, "error_type": type(err).__name__}
        code = 2 if isinstance(err, (UsageError, AgentError, TimingError)) else 1  # the spec's fault, or ours
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str))
    os.replace(tmp, out)
    if code:
        print(f"error: {result['error']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
