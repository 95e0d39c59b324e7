"""``run_pipeline``: run the enabled stages in order, reusing every stage whose cache key still matches.

The run directory holds ``pipeline.json`` (status: running | failed | done, and the stage in
progress), ``manifest.json`` (versions, input hashes, seeds, stage keys), ``stages/<stage>/`` (each
stage's JSON and files) and the report set: ``summary.json`` (what ``compress check`` reads),
``report.md``, ``report.html`` and ``figures/``. A run that did not finish must be continued with
``resume=True`` (or written elsewhere), so a crashed CI job is never mistaken for a finished one.

The report set is published as a unit: it is written into a temp directory
``.report.XXXXXXXX.tmpdir`` beside ``report/``, which then trades places with ``report/`` in one
atomic step (:func:`compress.core.runs.swap_dir`); ``summary.json``, ``report.md``, ``report.html`` and
``figures`` at the top of the run directory are fixed links into ``report/``. ``pipeline.json`` then
records ``status: done`` with the sha256 of the published files: ``compress check`` trusts nothing
before that.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from compress.core import hooks
from compress.core.errors import UsageError
from compress.core.progress import Progress, progress_or_null
from compress.core.runs import (
    RunDir,
    atomic_write_json,
    link_aliases,
    new_temp_dir,
    now_iso,
    run_dir_lock,
    sha256_file,
    swap_dir,
)
from compress.core.storage import storage_errors
from compress.pipeline.cache import StageStore, stage_key
from compress.pipeline.config import PipelineCfg, load_pipeline
from compress.pipeline.quantize_stage import QuantizeStage
from compress.pipeline.stages import (
    BenchStage,
    CheckStage,
    Context,
    ExportStage,
    ProfileStage,
    PruneStage,
    SearchStage,
    Stage,
    TrainStage,
    canonical_devices,
    supernet_path,
)

# The stages in run order (the quantize stage builds on the helpers of compress.pipeline.stages, so the
# list is assembled here, above both).
STAGES: list[Stage] = [
    TrainStage(),
    ProfileStage(),
    SearchStage(),
    PruneStage(),
    QuantizeStage(),
    ExportStage(),
    BenchStage(),
    CheckStage(),
]

STATE = "pipeline.json"
SUMMARY = "summary.json"
REPORT = "report"  # the directory of the published report set
REPORT_FILES = [SUMMARY, "report.md", "report.html", "figures"]  # top-level links into report/


def _read_state(run_dir: Path) -> dict[str, Any] | None:
    import json

    p = run_dir / STATE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"status": "running", "stage": None}


def run_pipeline(
    path: str | Path,
    *,
    out: str | Path | None = None,
    resume: bool = False,
    console: Any = None,
    check_only: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Run ``PIPELINE.yaml`` into ``out`` (default ``runs/<name>``); returns the JSON result.

    ``result["passed"]`` is False when a gate failed (None when the YAML has no gates).
    Raises :class:`UsageError` for a bad YAML, an unfinished run without ``resume`` or ``resume``
    without a run; stage errors propagate after the state is recorded as failed.
    """
    path = Path(path)
    cfg = load_pipeline(path)
    run_dir = Path(out) if out is not None else Path("runs") / cfg.name
    # every input the run will need (dataset, devices, remote hosts, budgets, output dir, extras), all
    # problems at once with their fixes, before anything is written (compress.pipeline.preflight)
    from compress.pipeline.preflight import preflight, raise_if_problems

    # nothing to continue when the directory does not even exist (a held directory: the lock answers first)
    if resume and not check_only and not run_dir.exists():
        raise UsageError(f"--resume: {run_dir} holds no pipeline run to continue; run without --resume")
    pre = preflight(cfg, run_dir=run_dir)
    raise_if_problems(pre, source=str(path))
    p = progress_or_null(progress)  # the CLI passes its renderer; a notebook passes its own or none
    for note in pre.notes:
        p.note(f"note: {note}")
    if check_only:
        return {"run_dir": str(run_dir), "check_only": True, "preflight": pre.to_dict()}
    devices = canonical_devices(cfg)  # bad device names fail before anything is written
    # one writer per run directory: a second run (or a --resume) while this one lives is refused at once
    with run_dir_lock(run_dir, command="compress pipeline" + (" --resume" if resume else "")):
        return _run_locked(path, cfg, run_dir, devices, resume=resume, console=console, progress=p)


def _run_locked(
    path: Path,
    cfg: PipelineCfg,
    run_dir: Path,
    devices: list[dict[str, Any]],
    *,
    resume: bool,
    console: Any,
    progress: Progress,
) -> dict[str, Any]:
    prev = _read_state(run_dir)
    if resume and prev is None:
        raise UsageError(f"--resume: {run_dir} holds no pipeline run to continue; run without --resume")
    if prev is not None and prev.get("status") != "done" and not prev.get("usage_error") and not resume:
        where = f" (stopped in stage '{prev['stage']}')" if prev.get("stage") else ""
        raise UsageError(
            f"{run_dir} holds an unfinished pipeline run{where}; pass --resume to continue it or choose another --out"
        )
    ctx = Context(
        cfg=cfg, run_dir=run_dir, stage_dir=lambda name: run_dir / "stages" / name, console=console, progress=progress
    )
    _preflight(ctx)  # usage errors (missing checkpoint, bad prune device, ...) before anything is written
    store = StageStore(run_dir)
    ctx.stage_dir = store.final
    if not resume:
        store.discard_partials()
    state: dict[str, Any] = {
        "status": "running",
        "pipeline": str(path),
        "pipeline_sha256": sha256_file(path),
        "started": now_iso(),
        "resumed": bool(resume),
        "stage": None,
        "stages": {},
    }
    atomic_write_json(run_dir / STATE, state)
    run = RunDir(run_dir, command="compress pipeline", seeds={"seed": cfg.seed})
    run.add_input("pipeline", path)
    run.set("pipeline", cfg.model_dump(mode="json"))
    enabled = [s for s in STAGES if s.enabled(cfg)]
    t_all = time.perf_counter()
    gen: Path | None = None  # the report set being written (swapped in after the last stage)
    try:
        for i, st in enumerate(enabled, 1):
            if st.name == "check":  # the check stage gates the summary of this run, not the published one
                gen = new_temp_dir(run_dir / REPORT)
                ctx.report_dir = gen
                write_summary(ctx, devices)
            upstream = {n: ctx.records[n]["key"] for n in st.needs if n in ctx.records}
            conf = st.config(cfg)
            inputs = st.inputs(ctx)
            key = stage_key(st.name, st.version, conf, upstream, inputs)
            rec = store.lookup(st.name, key)
            if rec is not None:
                ctx.records[st.name] = rec
                state["stages"][st.name] = {"key": key, "cached": True}
                ctx.log(f"[{i}/{len(enabled)}] {st.name} cached ({key})")
                continue
            state["stage"] = st.name
            atomic_write_json(run_dir / STATE, state)
            work, resumed = store.begin(st.name, key, resume=resume)
            ctx.log(f"[{i}/{len(enabled)}] {st.name}" + (" (resuming kept work)" if resumed else ""))
            t0 = time.perf_counter()
            result = st.run(ctx, work, resumed)
            rec = store.commit(st.name, key, result, inputs={"config": conf, "upstream": upstream, "files": inputs})
            ctx.records[st.name] = rec
            secs = round(time.perf_counter() - t0, 2)
            state["stages"][st.name] = {"key": key, "cached": False, "seconds": secs}
            ctx.log(f"  done in {secs:.1f} s")
        state["stage"] = None
        if gen is None:
            gen = new_temp_dir(run_dir / REPORT)
            ctx.report_dir = gen
        summary = write_summary(ctx, devices)
        from compress.pipeline.report import write_report

        ctx.log("writing the report")
        report = {k: run_dir / v.relative_to(gen) for k, v in write_report(ctx, summary, out=gen).items()}
        hooks.fire("pipeline.report", step="staged", run_dir=run_dir)
        with storage_errors(run_dir / REPORT):
            swap_dir(gen, run_dir / REPORT)  # the one step that makes the new set visible
        hooks.fire("pipeline.report", step="swapped", run_dir=run_dir)
        link_aliases(run_dir / REPORT, REPORT_FILES)
        hooks.fire("pipeline.report", step="linked", run_dir=run_dir)
    except BaseException as err:
        if gen is not None and gen.exists():  # an unpublished report set (a kill leaves it to the next run)
            import shutil

            shutil.rmtree(gen, ignore_errors=True)
        state["status"] = "failed"
        state["usage_error"] = isinstance(err, UsageError)  # the YAML must change anyway: no --resume needed
        state["error"] = f"{type(err).__name__}: {err}"
        state["traceback"] = traceback.format_exc(limit=6)
        atomic_write_json(run_dir / STATE, state)
        raise
    chk = ctx.records.get("check", {}).get("result", {})
    # the commit point of the report set: `compress check` trusts summary.json only with this hash
    state.update(
        status="done",
        finished=now_iso(),
        seconds=round(time.perf_counter() - t_all, 1),
        summary_sha256=sha256_file(run_dir / REPORT / SUMMARY),
        report_sha256={n: sha256_file(run_dir / REPORT / n) for n in REPORT_FILES[:3]},
    )
    atomic_write_json(run_dir / STATE, state)
    if "search" in ctx.records or "train" in ctx.records:
        run.add_input("supernet", supernet_path(ctx))
    run.set("stages", state["stages"])
    for name in REPORT_FILES[:3]:
        if (run_dir / name).is_file():
            run.add_output(run_dir / name)
    run.save_manifest()
    return {
        "run_dir": str(run_dir),
        "passed": chk.get("passed"),
        "stages": state["stages"],
        "report": {k: str(v) for k, v in report.items()},
        "summary": summary,
        "gates": chk.get("gates", []),
        "seconds": state["seconds"],
    }


def _preflight(ctx: Context) -> None:
    from compress.pipeline.stages import external_tables, prune_device

    cfg = ctx.cfg
    if cfg.train is None and cfg.model is None:
        supernet_path(ctx)
    if cfg.model is None:
        prune_device(ctx)
        external_tables(cfg)
    if cfg.model is not None and cfg.model.weights and not Path(cfg.model.weights).expanduser().is_file():
        raise UsageError(f"model.weights: file not found: {cfg.model.weights}")
    if cfg.model is not None and cfg.model.file is not None:
        from compress.pipeline.preflight import model_file_problem

        prob = model_file_problem(cfg.model.file)
        if prob is not None:
            raise UsageError(f"{prob.problem}; fix: {prob.fix}")


def write_summary(ctx: Context, devices: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary.json``: the metrics ``compress check`` gates on (format: compress.pipeline.gates)."""
    from compress.hardware import get_profile

    cfg: PipelineCfg = ctx.cfg
    s: dict[str, Any] = {
        "schema": 1,
        "name": cfg.name,
        "seed": cfg.seed,
        "latency": {},
        "accuracy": {},
        "parity": {},
        "search": {},
        "benchmarks": {},
    }
    gates = cfg.gates.model_dump(mode="json")
    gates["max_latency_ms"] = {get_profile(k).name: v for k, v in (gates.get("max_latency_ms") or {}).items()}
    s["gates"] = gates
    if "search" in ctx.records:
        for dev, r in ctx.result("search")["devices"].items():
            sel = r["selected"]
            s["search"][dev] = {
                "latency_source": r["latency_source"],
                "runtime": r["runtime"],
                "budget_ms": r["budget_ms"],
                "predicted_latency_ms": sel["predicted_latency_ms"],
                "predicted_top1": sel["predicted_top1"],
                "params": sel["params"],
                "macs": sel["macs"],
                "config": sel["config"],
            }
    if "prune" in ctx.records:
        pr = ctx.result("prune")
        if pr.get("top1_after") is not None:
            s["accuracy"] = {
                "top1": pr["top1_after"],
                "top1_before": pr["top1_before"],
                "top1_after": pr["top1_after"],
                "split": "test",
                "unit": "%",
            }
    if "export" in ctx.records:
        for f in ctx.result("export")["formats"]:
            if f.get("max_rel_err") is not None:
                s["parity"][f["format"]] = {
                    "max_abs_err": f["max_abs_err"],
                    "max_rel_err": f["max_rel_err"],
                    "passed": f["passed"],
                    "top1_agreement": f.get("top1_agreement"),
                }
    if "bench" in ctx.records:
        b = ctx.result("bench")
        s["benchmarks"] = b["items"]
        prim = b["items"].get(b["primary"])
        if prim is not None:
            s["latency"][b["device"]] = {**prim, "artefact": b["primary"]}
    from compress.pipeline.quantize_stage import summary_section

    if q := summary_section(ctx):  # fp32 vs quantized per runtime (the max_quant_drop gate reads it)
        s["quantization"] = q
    s["devices"] = [d["name"] for d in devices]
    atomic_write_json((ctx.report_dir or ctx.run_dir) / SUMMARY, s)
    return s
