"""Profile a table on a device over SSH (``compress profile --remote user@host``).

Blocks are exported to ONNX here and sent in chunks to the benchmark agent
(``compress.remote.agent.run_agent``: OpenSSH client, the user's config and keys, a temporary
directory on the device removed afterwards). Each chunk is timed interleaved with the canary on
the device; the table is saved after every chunk, so an interrupted run resumes. Chunks are put
on one scale through the canary: every chunk's values are multiplied by
``first reference / this chunk's reference``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from compress.bench.timing import TimingConfig
from compress.core.errors import Failure
from compress.core.progress import Progress, progress_or_log
from compress.core.runs import now_iso
from compress.latency.measure import MeasureSettings
from compress.latency.signature import BlockSignature
from compress.latency.table import Entry, LatencyTable

CHUNK = 48


def _entry(d: dict[str, Any], *, scale: float, status: str | None) -> Entry:
    # as in measure.pick_stats: the canary's drift is no valid correction in an uncontrolled run
    raw = status == "uncontrolled" and "raw_stats" in d
    st = d["raw_stats"] if raw else d["stats"]
    scale = 1.0 if raw else scale
    return Entry(
        count=int(st["n"]),
        median_ms=st["median_ms"] * scale,
        mean_ms=st["mean_ms"] * scale,
        std_ms=st["std_ms"] * scale,
        min_ms=st["min_ms"] * scale,
        p10_ms=st["p10_ms"] * scale,
        source="measured",
        noisy=bool(d.get("noisy")),
        drift_status=status,
        measured_at=now_iso(),
        note="raw samples: the canary moved during this chunk" if raw else None,
    )


def profile_remote(
    table: LatencyTable,
    todo: list[BlockSignature],
    settings: MeasureSettings,
    *,
    remote: str,
    ssh_config: str | Path | None = None,
    remote_python: str = "python3",
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> dict[str, Any]:
    """Time ``todo`` on ``remote``; returns the drift record of the whole campaign."""
    from compress.bench.canary import canary_onnx
    from compress.latency.blocks import build_module, export_onnx
    from compress.remote import parse_remote
    from compress.remote.agent import run_agent
    from compress.remote.ssh import env_ssh_config

    host = parse_remote(remote, ssh_config=ssh_config or env_ssh_config(), python=remote_python)
    host.check()
    if not todo:
        return {"status": "stable", "note": "nothing to measure"}
    timing = TimingConfig(
        warmup=settings.warmup,
        iterations=settings.iterations,
        rounds=2,
        canary_iterations=settings.canary_iterations,
        drift_threshold=settings.drift_threshold,
        max_remeasure=settings.max_remeasure,
        estimator=settings.estimator,
        max_extra_rounds=1,
    )
    prev_ref = table.meta.timing.get("canary_reference_ms")
    statuses: list[str] = []
    drifts: list[dict[str, Any]] = []
    done = 0
    p = progress_or_log(progress)
    p.start("blocks", len(todo))
    with tempfile.TemporaryDirectory(prefix="compress-remote-profile-") as td:
        work = Path(td)
        canary = canary_onnx(work)
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            items = []
            for i, sig in enumerate(part):
                path = export_onnx(
                    build_module(sig, seed=settings.seed),
                    sig.input_shape,
                    work / f"b{start + i}.onnx",
                    batch=settings.batch,
                )
                items.append(
                    {
                        "name": sig.key(),
                        "artifact": path,
                        "runtime": settings.runtime,
                        "precision": settings.precision,
                        "threads": settings.threads,
                        "batch": settings.batch,
                        "device": settings.device,
                    }
                )
            res = run_agent(
                host, items=items, timing=timing, canary=canary, canary_runtime=settings.runtime, seed=settings.seed
            )
            tim = res.get("timing") or {}
            drift = tim.get("drift") or {}
            ref = drift.get("reference_ms")
            if prev_ref is None and ref:
                prev_ref = ref
                table.meta.timing["canary_reference_ms"] = ref
            scale = float(prev_ref) / float(ref) if (prev_ref and ref) else 1.0
            for sig in part:
                d = (tim.get("items") or {}).get(sig.key())
                if d is None:
                    raise Failure(f"the agent on {remote} returned no timing for block {sig.key()}")
                table.add(sig, _entry(d, scale=scale, status=drift.get("status")))
            if not table.meta.runtime_version:
                infos = res.get("items") or {}
                table.meta.runtime_version = next(
                    (str(i.get("runtime_version")) for i in infos.values() if i.get("runtime_version")), None
                )
            if not table.meta.host:
                table.meta.host = {**(res.get("device_state_before") or {}), "remote": remote}
                if table.meta.power_mode:  # a Jetson in another nvpmodel mode: refuse before saving
                    from compress.hardware.profile import check_measured_mode

                    check_measured_mode(
                        table.meta.device.split("@")[0], table.meta.power_mode, table.meta.host, where=remote
                    )
            statuses.append(str(drift.get("status")))
            drifts.append(drift)
            table.save()
            done += len(part)
            p.update("blocks", done, len(todo))
    p.finish("blocks")
    worst = (
        "uncontrolled"
        if "uncontrolled" in statuses
        else "no_canary"
        if "no_canary" in statuses
        else "normalised"
        if "normalised" in statuses
        else "stable"
    )
    return {
        "status": worst,
        "controlled": worst in ("stable", "normalised"),
        "reference_ms": prev_ref,
        "basis": "raw" if "uncontrolled" in statuses else "normalised",
        "max_drift": max((float(d.get("max_drift") or 0) for d in drifts), default=0.0),
        "remeasured": sum(int(d.get("remeasured") or 0) for d in drifts),
        "normalised": sum(int(d.get("normalised") or 0) for d in drifts),
        "uncontrolled": sum(int(d.get("uncontrolled") or 0) for d in drifts),
        "note": f"{len(drifts)} chunk(s) timed on {remote}; " + "; ".join(sorted({str(d.get("note")) for d in drifts})),
    }
