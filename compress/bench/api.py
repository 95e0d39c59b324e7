"""``compress.bench.bench``: time artefacts on a device, locally or over SSH, with drift control.

>>> from compress.bench.api import bench
>>> res = bench(["model.onnx", "model_pruned.onnx"], device="local-cpu", iterations=200)  # doctest: +SKIP
>>> res.median_ms, res.ratios, res.drift["status"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from compress.bench.artifacts import Artifact, choose_runtime, resolve_artifact
from compress.bench.report import to_csv, to_markdown
from compress.bench.schema import BenchItem, BenchResult
from compress.bench.timing import TimingConfig, TimingError
from compress.core.errors import UsageError
from compress.core.progress import Progress, progress_or_log, tracked
from compress.core.runs import now_iso


def _timing(
    warmup: int, iterations: int | None, duration_s: float | None, rounds: int, timing: TimingConfig | None
) -> TimingConfig:
    if timing is not None:
        cfg = timing
    else:
        if iterations is None and duration_s is None:
            iterations = 100
        cfg = TimingConfig(warmup=warmup, iterations=iterations, duration_s=duration_s, rounds=rounds)
    try:
        return cfg.check()
    except TimingError as err:
        raise UsageError(str(err)) from None


def _unique_names(arts: list[Artifact]) -> list[str]:
    names: list[str] = []
    for a in arts:
        n, k = a.name, 2
        while n in names:
            n, k = f"{a.name}#{k}", k + 1
        names.append(n)
    return names


def _export_ref(ref: str, workdir: Path, *, batch: int, image_size: int | None) -> Path:
    """A model reference (``timm:NAME``, a model directory) exported to ONNX (static batch)."""
    from compress.export.onnx import to_onnx
    from compress.models import load_model

    opts = {"image_size": image_size} if image_size and ref.startswith("timm:") else {}
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(ref.split(":", 1)[-1]).name) or "model"
    path = workdir / f"{safe}.onnx"
    to_onnx(load_model(ref, **opts), path, batch=batch)
    return path


def _prediction(art: Artifact, device: str, aliases: list[str]) -> float | None:
    for key in (device, *aliases):
        if key in art.predictions:
            return art.predictions[key]
    return None


def bench(
    artifacts: Sequence[str],
    *,
    device: str = "local-cpu",
    runtime: str = "auto",
    precision: str | None = None,
    batch: int = 1,
    threads: int | None = None,
    warmup: int = 10,
    iterations: int | None = None,
    duration_s: float | None = None,
    rounds: int = 5,
    image_size: int | None = None,
    remote: str | None = None,
    ssh_config: str | Path | None = None,
    remote_python: str = "python3",
    connect_timeout: float = 10.0,
    canary: bool = True,
    fallback: bool = True,
    timing: TimingConfig | None = None,
    out: str | Path | None = None,
    csv: bool = False,
    command: str = "compress bench",
    profiles_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> BenchResult:
    """Benchmark ``artifacts`` interleaved on ``device`` and return the versioned result.

    ``runtime='auto'`` takes the device profile's first runtime that can run each artefact.
    With ``remote='user@host'`` the artefacts are copied to the device and timed there by
    ``python -m compress.bench.agent`` (``remote_python``); otherwise the same agent code runs here.
    """
    from compress.hardware import get_profile

    if not artifacts:
        raise UsageError("give at least one artefact to benchmark")
    if batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    if threads is not None and threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    cfg = _timing(warmup, iterations, duration_s, rounds, timing)
    prof = get_profile(device, profiles_dir=profiles_dir)
    if runtime != "auto":
        from compress.bench.artifacts import canonical_runtime

        runtime = canonical_runtime(runtime)
        prof.check_runtime(runtime)
    prec = prof.check_precision(precision) if precision else "fp32"
    arts = [resolve_artifact(a) for a in artifacts]
    names = _unique_names(arts)
    rts = [choose_runtime(a, runtime, list(prof.runtimes)) for a in arts]
    warnings: list[str] = []

    with tempfile.TemporaryDirectory(prefix="compress-bench-") as td:
        work = Path(td)
        items: list[dict[str, Any]] = []
        files: list[str] = []
        for art, name, rt in zip(arts, names, rts):
            kind, path = art.file_for(rt)
            if kind == "model-ref" and rt != "torch":
                path = str(_export_ref(path, work / f"art{len(items)}", batch=batch, image_size=image_size))
                kind = "onnx"
            if kind == "model-ref" and remote is not None:
                raise UsageError(
                    f"{art.name}: the torch runtime is not timed remotely; export it (compress export) "
                    "and bench the ONNX/engine file"
                )
            artifact: Any = path
            if kind == "model-ref" and path.startswith("timm:") and image_size:
                from compress.models import load_model

                artifact = load_model(path, image_size=image_size)
            items.append(
                {
                    "name": name,
                    "artifact": artifact,
                    "runtime": rt,
                    "precision": prec,
                    "threads": threads,
                    "batch": batch if kind != "tensorrt-engine" else None,
                    "device": None,
                    "options": {},
                }
            )
            files.append(path)
        canary_path = None
        if canary:
            from compress.bench.canary import canary_onnx

            canary_path = canary_onnx(work)
        canary_rt = rts[0] if rts[0] in ("onnxruntime", "openvino") else "onnxruntime"
        if remote is not None:
            from compress.remote.agent import run_agent
            from compress.remote.ssh import env_ssh_config, parse_remote

            host = parse_remote(
                remote, ssh_config=ssh_config or env_ssh_config(), python=remote_python, connect_timeout=connect_timeout
            )
            raw = run_agent(
                host,
                items=[{**it, "artifact": Path(it["artifact"])} for it in items],
                timing=cfg,
                canary=canary_path,
                canary_runtime=canary_rt,
                fallback=fallback,
            )
        else:
            from compress.bench.agent import run_spec

            spec = {
                "schema": 1,
                "items": items,
                "timing": asdict(cfg),
                "fallback": fallback,
                "seed": 0,
                "canary": {"artifact": str(canary_path), "runtime": canary_rt, "threads": threads}
                if canary_path
                else None,
            }
            with tracked(progress_or_log(progress), "timing") as step:
                raw = run_spec(spec, progress=lambda name, done, total: step(done, total))
    return _result(
        raw,
        arts=arts,
        names=names,
        files=files,
        prof=prof,
        prec=prec,
        batch=batch,
        threads=threads,
        remote=remote,
        warnings=warnings,
        out=out,
        csv=csv,
        command=command,
    )


def _result(
    raw: dict[str, Any],
    *,
    arts: list[Artifact],
    names: list[str],
    files: list[str],
    prof: Any,
    prec: str,
    batch: int,
    threads: int | None,
    remote: str | None,
    warnings: list[str],
    out: str | Path | None,
    csv: bool,
    command: str,
) -> BenchResult:
    timing = raw["timing"]
    first = timing["items"][names[0]]["estimate_ms"]
    bitems: list[BenchItem] = []
    for art, name, path in zip(arts, names, files):
        t = timing["items"][name]
        st, info = t["stats"], raw["items"][name]
        pred = _prediction(art, prof.name, list(prof.aliases))
        notes = [info["note"]] if info.get("note") else []
        if info.get("runner") == "benchmark_app":
            notes.append("percentiles are over per-run medians of benchmark_app")
        bitems.append(
            BenchItem(
                name=name,
                artifact=art.spec,
                file=str(path),
                runtime=info["runtime"],
                runner=info["runner"],
                runtime_version=info.get("runtime_version"),
                precision=str(info.get("settings", {}).get("precision") or prec),
                batch=int(t["batch"]),
                threads=threads,
                settings=info.get("settings") or {},
                median_ms=st["median_ms"],
                mean_ms=st["mean_ms"],
                std_ms=st["std_ms"],
                min_ms=st["min_ms"],
                max_ms=st["max_ms"],
                p10_ms=st["p10_ms"],
                p90_ms=st["p90_ms"],
                p99_ms=st["p99_ms"],
                cv=st["cv"],
                throughput=st["throughput"],
                iterations=st["n"],
                raw_median_ms=t["raw_stats"]["median_ms"],
                noisy=t["noisy"],
                peak_memory_mb=info.get("rss_after_load_mb"),
                ratio=t["estimate_ms"] / first,
                predicted_ms=pred,
                error_pct=(st["median_ms"] - pred) / pred * 100 if pred else None,
                notes=notes,
            )
        )
    drift = timing["drift"]
    if not drift["controlled"]:
        warnings.append(drift["note"])
    if raw.get("canary", {}).get("kind") == "numpy":
        warnings.append(raw["canary"]["note"])
    noisy = [b.name for b in bitems if b.noisy]
    if noisy:
        warnings.append(
            f"noisy measurement (coefficient of variation above {timing['config']['cv_threshold']:.0%} "
            f"after extra rounds) for: {', '.join(noisy)}; run on a quieter machine or with --duration"
        )
    from compress.hardware.modes import mode_mismatch

    wrong_mode = mode_mismatch(prof, raw.get("device_state_before"))  # a Jetson not in the mode asked for
    if wrong_mode:
        warnings.append(wrong_mode)
    b0 = bitems[0]
    res = BenchResult(
        created=now_iso(),
        device=prof.table_device,
        remote=remote,
        runtime=b0.runtime,
        precision=b0.precision,
        batch=b0.batch,
        threads=threads,
        median_ms=b0.median_ms,
        p90_ms=b0.p90_ms,
        p99_ms=b0.p99_ms,
        throughput=b0.throughput,
        iterations=b0.iterations,
        predicted_ms=b0.predicted_ms,
        error_pct=b0.error_pct,
        items=bitems,
        ratios={b.name: b.ratio for b in bitems},
        drift=drift,
        drift_controlled=bool(drift["controlled"]),
        noisy=bool(noisy),
        canary=raw.get("canary") or {},
        timing=timing["config"],
        device_state=raw.get("device_state_before") or {},
        device_state_after=raw.get("device_state_after") or {},
        peak_memory_mb=raw.get("peak_rss_mb"),
        warnings=warnings,
    )
    if out is not None:
        from compress.core.runs import RunDir

        rd = RunDir(out, command=command)
        for art in arts:
            if Path(art.spec).is_file():
                rd.add_input(art.name, art.spec)
            else:
                rd.add_input(art.name, value=art.spec)
        rd.write_json("bench.json", res)
        rd.write_text("bench.md", to_markdown(res))
        if csv:
            rd.write_text("bench.csv", to_csv(res))
        rd.save_manifest()
    return res
