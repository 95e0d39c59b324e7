"""``compress check``: evaluate release gates on a pipeline run directory."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.core.runs import atomic_write_text, read_json
from compress.pipeline.gates import (
    GateResult,
    junit_xml,
    latency_gate,
    min_top1_gate,
    parity_gate,
    quant_drop_gate,
    regression_gates,
    top1_drop_gate,
)

SUMMARY = "summary.json"


def report_set(run_dir: str | Path) -> Path:
    """The directory holding the run's report set: ``report/`` (published as a unit, see
    :mod:`compress.pipeline.runner`) when there is one, else the run directory itself (runs written
    by older versions, summaries written by other tools)."""
    d = Path(run_dir)
    return d / "report" if (d / "report" / SUMMARY).is_file() else d


def load_metrics(run_dir: str | Path) -> dict[str, Any]:
    d = Path(run_dir)
    if not d.is_dir():
        raise UsageError(f"run directory not found: {d}")
    src = report_set(d)
    if not (src / SUMMARY).is_file():
        raise UsageError(f"{d} has no {SUMMARY}: is it a `compress pipeline` run directory?")
    data = read_json(src / SUMMARY, what=SUMMARY)
    if not isinstance(data, dict):
        raise UsageError(f"{d / SUMMARY}: expected an object")
    return data


def verify_finished(run_dir: str | Path) -> None:
    """Refuse a pipeline run directory that is not a finished, self-consistent run (exit 2).

    ``pipeline.json`` must say ``done``; ``summary.json``, ``report.md`` and ``report.html`` must be
    the ones that run published (their sha256 are recorded when it finishes); every stage record must
    carry the key the run used. A directory without ``pipeline.json`` (a summary written
    by another tool) is not checked here.
    """
    import json

    from compress.core.locks import dir_lock_path, holder, holder_gone
    from compress.core.runs import sha256_file

    d = Path(run_dir)
    state_p = d / "pipeline.json"
    if not state_p.is_file():
        return
    try:
        state = json.loads(state_p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise UsageError(
            f"{state_p} is corrupted or truncated: the run did not finish cleanly; rerun the pipeline with --resume"
        ) from None
    status = state.get("status")
    if status != "done":
        info = holder(dir_lock_path(d))
        live = (
            f"; it is being written now by pid {info.get('pid')} (`{info.get('command')}`)"
            if info and not holder_gone(info)
            else ""
        )
        where = f", stopped in stage '{state['stage']}'" if state.get("stage") else ""
        raise UsageError(
            f"{d} is not a finished pipeline run (status '{status}'{where}){live}; gates are checked only "
            f"on a finished run: finish it with `compress pipeline ... --resume --out {d}`"
        )
    src = report_set(d)
    for name, sha in (state.get("report_sha256") or {}).items():
        if (src / name).is_file() and sha256_file(src / name) != sha:
            raise UsageError(
                f"{src / name} is not the one its run published (the report set was changed after the run "
                "finished); rerun the pipeline into this directory"
            )
    want = state.get("summary_sha256")
    if want and (src / SUMMARY).is_file() and sha256_file(src / SUMMARY) != want:
        raise UsageError(
            f"{d / SUMMARY} is not the summary its run wrote (changed after the run finished); "
            "rerun the pipeline into this directory"
        )
    for name, st in (state.get("stages") or {}).items():
        rec_p = d / "stages" / name / "stage.json"
        try:
            key = json.loads(rec_p.read_text(encoding="utf-8")).get("key")
        except (OSError, ValueError):
            key = None
        if key != st.get("key"):
            raise UsageError(
                f"{d}/stages/{name} does not hold the result this run's summary was made from (stage key "
                f"{key} vs {st.get('key')}); rerun the pipeline into this directory"
            )


def check(
    run_dir: str | Path,
    *,
    baseline: str | Path | None = None,
    max_latency_ms: float | None = None,
    device: str | None = None,
    min_top1: float | None = None,
    max_top1_drop: float | None = None,
    max_parity_err: float | None = None,
    max_latency_regression_pct: float | None = None,
    max_quant_drop: float | None = None,
    junit: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate every requested gate; returns ``{"passed": bool, "gates": [...]}``.

    Gates not given on the command line come from the run's own ``gates`` section (the pipeline
    YAML), so ``compress check RUN_DIR`` alone re-checks what the pipeline promised.
    """
    metrics = load_metrics(run_dir)
    cfg = dict(metrics.get("gates") or {})
    if max_latency_ms is not None and device is None:
        raise UsageError("--max-latency-ms needs --device (which device's benchmark to gate)")
    if max_latency_regression_pct is not None and baseline is None:
        raise UsageError("--max-latency-regression-pct needs --baseline RUN_DIR")
    results: list[GateResult] = []
    lat_gates: dict[str, float] = dict(cfg.get("max_latency_ms") or {})
    if max_latency_ms is not None:
        from compress.hardware.profile import get_profile

        lat_gates = {get_profile(device).name: max_latency_ms}
    for dev, ms in lat_gates.items():
        results.append(latency_gate(metrics, dev, float(ms)))
    if (v := min_top1 if min_top1 is not None else cfg.get("min_top1")) is not None:
        results.append(min_top1_gate(metrics, float(v)))
    if (v := max_top1_drop if max_top1_drop is not None else cfg.get("max_top1_drop")) is not None:
        results.append(top1_drop_gate(metrics, float(v)))
    if (v := max_parity_err if max_parity_err is not None else cfg.get("max_parity_err")) is not None:
        results.append(parity_gate(metrics, float(v)))
    if (v := max_quant_drop if max_quant_drop is not None else cfg.get("max_quant_drop")) is not None:
        results.append(quant_drop_gate(metrics, float(v)))
    if baseline is not None:
        pct = (
            max_latency_regression_pct
            if max_latency_regression_pct is not None
            else cfg.get("max_latency_regression_pct", 5.0)
        )
        results.extend(regression_gates(metrics, load_metrics(baseline), float(pct)))
    if not results:
        raise UsageError(
            "no gates to check: give --max-latency-ms/--device, --min-top1, --max-top1-drop, "
            "--max-parity-err, --max-quant-drop or --baseline, or add `gates:` to the pipeline YAML"
        )
    if junit is not None:
        atomic_write_text(junit, junit_xml(results))
    return {
        "passed": all(r.passed for r in results),
        "run_dir": str(run_dir),
        "baseline": str(baseline) if baseline else None,
        "gates": [asdict(r) for r in results],
    }
