"""``compress profile``: measure a latency table for (device, runtime, precision, batch, space).

1. enumerate every distinct block signature the search space can produce (optionally only at
   some resolutions, plus the merged forms depth pruning may choose: ``merged=True``);
2. export each block alone to ONNX and time it on the runtime - locally, or on ``remote``
   (``user@host``) through the SSH agent - with warm-up, repeated runs, a robust estimator and the
   canary for drift control;
3. save the table atomically after every stretch (a killed run resumes: measured entries are kept);
4. calibrate: measure ``calibrate`` whole subnets end to end (min, max, subnets on the
   compute-per-millisecond front search goes to, quantiles of the summed latency, random ones;
   :func:`calibration_genes`), twice each, and fit the correction (:mod:`compress.latency.calibrate`),
   stored in the table file with the subnets, their roles and the measurements.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError
from compress.core.progress import Progress, progress_or_log, tracked
from compress.core.runs import now_iso
from compress.latency.compiled import CompiledSpace, compiled_space
from compress.latency.measure import (
    BlockTimer,
    MeasureSettings,
    campaign_basis,
    drift_summary,
    entry_from_timing,
    measure_subnets,
    pick_stats,
    runtime_info,
)
from compress.latency.quantized import check_quantizable
from compress.latency.signature import BlockSignature
from compress.latency.store import lock_table, release_tables
from compress.latency.table import LatencyTable


def space_signatures(comp: CompiledSpace, space: Any, *, resolutions: list[int] | None = None) -> list[BlockSignature]:
    """Every distinct signature of the space (only subnets at ``resolutions`` when given)."""
    if not resolutions:
        return list(comp.signatures)
    bad = [r for r in resolutions if r not in space.resolutions]
    if bad:
        raise UsageError(f"resolution(s) {bad} are not in the space; choose from {space.resolutions}")
    allowed = np.asarray([space.resolutions.index(r) for r in resolutions])
    res_gene = 0  # SearchSpace gene layout: resolution first
    used: set[int] = set()
    for p, d in enumerate(comp.deps):
        ids = comp.sig_ids[p]
        if res_gene in d:
            k = int(np.where(d == res_gene)[0][0])
            sizes = comp.gene_sizes[d]
            combos = np.asarray(np.unravel_index(np.arange(ids.size), tuple(sizes))).T if d.size else np.zeros((1, 0))
            mask = np.isin(combos[:, k], allowed)
            ids = ids[mask]
        used.update(int(i) for i in ids if i >= 0)
    return [comp.signatures[i] for i in sorted(used)]


def sample_genes(space: Any, rng: np.random.Generator, n: int, *, resolutions: list[int] | None = None) -> np.ndarray:
    """``n`` random canonical gene rows, restricted to ``resolutions`` when given."""
    genes = space.sample_genes(rng, n)
    if resolutions:
        allowed = np.asarray([space.resolutions.index(r) for r in resolutions])
        genes[:, 0] = rng.choice(allowed, size=n)
    return genes


def calibration_genes(
    space: Any, model: Any, rng: np.random.Generator, n: int, *, resolutions: list[int] | None = None, pool: int = 4096
) -> tuple[np.ndarray, list[str]]:
    """The ``n`` subnets calibration measures, covering where search goes, and each one's role.

    Search picks the most accurate subnet under a latency budget, i.e. subnets with the most compute
    per predicted millisecond, at every budget; a correction fitted on uniformly random subnets is
    least accurate exactly there (and at the smallest/largest subnets). So the set is: the min and
    max configs (``extreme``); about a third from the upper front of MACs against the uncalibrated
    sum over a seeded random pool, spread over the latency range (``front``); about a third at even
    quantiles of the uncalibrated sum (``quantile``); the rest uniformly random (``random``).
    Canonical and distinct; same ``rng`` state, same rows.
    """
    from compress.latency.space_cost import SpaceCost

    ext = [space.to_genes(space.min_config()), space.to_genes(space.max_config())]
    if resolutions:
        ext = [g for g in ext if space.resolutions[int(g[0])] in resolutions]
    cand = space.canonical_genes(sample_genes(space, rng, pool, resolutions=resolutions))
    raw = model.predict_sum_genes(cand)
    macs = SpaceCost(space).macs_genes(cand).astype(np.float64)
    chosen: list[np.ndarray] = []
    roles: list[str] = []
    seen: set[bytes] = set()

    def take(g: np.ndarray, role: str) -> None:
        key = np.asarray(g, dtype=np.int64).tobytes()
        if key not in seen and len(chosen) < n:
            seen.add(key)
            chosen.append(np.asarray(g, dtype=np.int64))
            roles.append(role)

    for g in ext:
        take(g, "extreme")
    k_front = max(0, (n - len(chosen)) // 3)
    k_quant = max(0, (n - len(chosen) - k_front) // 2)
    # upper front: for each slice of the latency range, the pool row with the most MACs
    edges = np.quantile(raw, np.linspace(0, 1, k_front + 1)) if k_front else []
    for lo, hi in zip(edges[:-1], edges[1:]):
        idx = np.where((raw >= lo) & (raw <= hi))[0]
        if idx.size:
            take(cand[idx[np.argmax(macs[idx])]], "front")
    order = np.argsort(raw, kind="stable")
    for q in np.linspace(0, 1, k_quant + 2)[1:-1] if k_quant else []:
        take(cand[order[int(round(q * (len(order) - 1)))]], "quantile")
    for g in cand[rng.permutation(len(cand))]:
        if len(chosen) >= n:
            break
        take(g, "random")
    return np.stack(chosen), roles


# UPDP form name -> the merged signature kind it deploys as
MERGED_KIND_OF_FORM: dict[str, str] = {"dw_pw": "merged_dw_pw", "dense": "merged_dense", "pw": "merged_pw"}


def merged_signature(sig: BlockSignature, form: str) -> BlockSignature | None:
    """The signature of ``sig`` merged into UPDP's ``form`` (``dw_pw``, ``dense``), or ``None`` when that
    form does not apply to the kind. ``dense`` of a ResNet basic block is one (2k-1)x(2k-1) conv
    (kxk * kxk) with the block's final activation; of a bottleneck, one kxk conv with it; of a
    ConvNeXt or MBConv block, one kxk conv. ``dw_pw`` (ConvNeXt, MBConv without expansion) is the
    depthwise kxk then 1x1 conv, plus the residual add when the block keeps an identity shortcut.
    """
    kind = MERGED_KIND_OF_FORM.get(form)
    if kind is None or sig.kind not in ("convnext", "mbconv", "basic", "bottleneck"):
        return None
    base = dict(in_hw=sig.in_hw, in_ch=sig.in_ch, out_hw=sig.out_hw, out_ch=sig.out_ch, stride=sig.stride, bias=True)
    if kind == "merged_dw_pw":
        if sig.kind == "convnext" or (sig.kind == "mbconv" and not sig.has_expand):
            identity = sig.residual and sig.stride == 1 and sig.in_ch == sig.out_ch
            return BlockSignature(kind=kind, kernel=sig.kernel, residual=identity, **base)
        return None
    if kind == "merged_dense":
        k = 2 * sig.kernel - 1 if sig.kind == "basic" else sig.kernel
        act = sig.act if sig.kind in ("basic", "bottleneck") else "none"
        return BlockSignature(kind=kind, kernel=k, act=act, **base)
    return None


def merged_forms(sig: BlockSignature) -> list[BlockSignature]:
    """The merged forms UPDP may turn a block into (empty when it cannot be merged): any MBConv
    (strided and channel-changing ones too: they merge into a strided dense conv), and ConvNeXt,
    ResNet basic and bottleneck blocks with an identity shortcut."""
    if sig.kind == "mbconv":
        forms: tuple[str, ...] = ("dense", "dw_pw")
    elif sig.residual and sig.stride == 1 and sig.in_ch == sig.out_ch:
        forms = ("dw_pw", "dense") if sig.kind == "convnext" else ("dense",)
    else:
        return []
    return [m for f in forms if (m := merged_signature(sig, f)) is not None]


def table_is_raw(table: LatencyTable) -> bool:
    """True when any campaign of the table kept raw samples (its drift could not be controlled)."""
    return any(d.get("basis") == "raw" for d in table.meta.drift)


def host_meta(runtime: str) -> dict[str, Any]:
    """Device state of this machine for the table metadata (CPU model, GPU, driver, Jetson mode...)."""
    try:
        from compress.bench.device_state import device_state

        return device_state()
    except Exception as err:  # noqa: BLE001 - metadata must never break a measurement
        from compress.hardware.local import cpu_model

        return {"cpu_model": cpu_model(), "note": f"device_state unavailable: {err}"}


@dataclass
class ProfileResult:
    path: str
    device: str
    runtime: str
    precision: str
    batch: int
    space: str
    signatures: int
    measured_now: int
    already_measured: int
    drift: dict[str, Any]
    wall_s: float
    calibration: dict[str, Any] | None = None
    remote: str | None = None
    notes: list[str] = field(default_factory=list)


def _open_table(
    *,
    device: str,
    runtime: str,
    precision: str,
    batch: int,
    space: Any,
    label: str,
    tables: str | Path | None,
    settings: MeasureSettings,
    rt_info: dict[str, Any],
    remote: str | None,
    wait: float = 0.0,
) -> LatencyTable:
    path = LatencyTable.locate(
        device=device, runtime=runtime, precision=precision, batch=batch, space=label, tables=tables
    )
    # one writer per table: wait for another run measuring it, then load what it measured (kept, not redone)
    lock_table(path, tables=tables, wait=wait)
    if path.is_file():
        table = LatencyTable.load(path)
        if table.meta.space_hash and table.meta.space_hash != space.hash():
            raise UsageError(
                f"{path} was measured for another '{space.family}' space (hash "
                f"{table.meta.space_hash}); remove it or choose another --tables directory"
            )
        if table.meta.estimator != settings.estimator:
            raise UsageError(
                f"{path} uses estimator '{table.meta.estimator}', not '{settings.estimator}'; "
                "keep one estimator per table"
            )
        if table.meta.threads != settings.threads:

            def name(t: int | None) -> str:
                return "the runtime's default threads" if t is None else f"--threads {t}"

            raise UsageError(
                f"{path} was measured with {name(table.meta.threads)}, not {name(settings.threads)}; "
                "use the same setting or another --tables directory"
            )
        return table
    table = LatencyTable.new(
        device=device,
        runtime=runtime,
        precision=precision,
        batch=batch,
        space=label,
        runtime_version=str(rt_info["version"]) if rt_info.get("version") else None,
        threads=settings.threads,
        space_hash=space.hash(),
        estimator=settings.estimator,
        remote=remote,
    )
    table.path = path
    return table


def _releases_table_locks(fn: Callable[..., ProfileResult]) -> Callable[..., ProfileResult]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> ProfileResult:
        try:
            return fn(*args, **kwargs)
        finally:
            release_tables()

    return wrapper


@_releases_table_locks
def profile_table(
    *,
    device: str,
    runtime: str | None = None,
    precision: str | None = None,
    supernet: Any = None,
    batch: int = 1,
    resolutions: list[int] | None = None,
    merged: bool = False,
    remote: str | None = None,
    ssh_config: str | Path | None = None,
    remote_python: str = "python3",
    tables: str | Path | None = None,
    threads: int | None = None,
    iterations: int = 50,
    warmup: int = 20,
    canary_every: int = 8,
    estimator: str = "p10",
    calibrate: int = 20,
    calibrate_iterations: int = 30,
    seed: int = 0,
    progress: Progress | None = None,
    profiles: str | Path | None = None,
    lock_wait: float = 600.0,
) -> ProfileResult:
    """Measure (or complete) the table; see the module docstring. Returns a summary.

    The table is locked while it is measured: another run measuring the same table is waited for
    (up to ``lock_wait`` seconds, then refused naming it), and what it measured is kept.
    """
    from compress.hardware import get_profile
    from compress.latency.spaces import resolve_space, space_label
    from compress.latency.store import tables_dir

    t0 = time.perf_counter()
    prof = get_profile(device, profiles_dir=profiles)
    rt = prof.check_runtime(runtime)
    prec = prof.check_precision(precision)
    check_quantizable(rt, prec)
    if batch < 1:
        raise UsageError(f"--batch must be >= 1, got {batch}")
    space = resolve_space(supernet)
    label = space_label(space)
    comp = compiled_space(space, cache_dir=tables_dir(tables) / "_compiled")
    sigs = space_signatures(comp, space, resolutions=resolutions)
    if merged:
        sigs = sorted(set(sigs) | {m for s in sigs for m in merged_forms(s)})
    settings = MeasureSettings(
        runtime=rt,
        precision=prec,
        batch=batch,
        threads=threads,
        iterations=iterations,
        warmup=warmup,
        canary_every=canary_every,
        estimator=estimator,
        seed=seed,
    )
    rt_info = runtime_info(rt) if remote is None else {"runtime": rt}
    if remote is None and not rt_info.get("available", False):
        from compress.core.errors import MissingDependency

        raise MissingDependency(
            f"{rt} is not available here ({rt_info.get('install', 'not installed')}); "
            f"or measure on the device: compress profile --device {prof.name} --runtime {rt} "
            "--remote user@host"
        )
    table = _open_table(
        device=prof.table_device,
        runtime=rt,
        precision=prec,
        batch=batch,
        space=space,
        label=label,
        tables=tables,
        settings=settings,
        rt_info=rt_info,
        remote=remote,
        wait=lock_wait,
    )
    if prof.power_mode:  # tables are per power mode (Jetson nvpmodel): record it, refuse another mode's
        from compress.hardware.modes import check_table_mode

        check_table_mode(prof, table.meta, table.path)
        table.meta.power_mode = prof.power_mode
    todo = table.missing(sigs)
    already = len(sigs) - len(todo)
    if remote is None:
        table.meta.host = host_meta(rt)
        if prof.power_mode:
            from compress.hardware.profile import check_measured_mode

            check_measured_mode(prof.name, prof.power_mode, table.meta.host, where="this machine")
        drift = _profile_local(table, todo, settings, progress_or_log(progress))
    else:
        from compress.latency.remote import profile_remote

        drift = profile_remote(
            table,
            todo,
            settings,
            remote=remote,
            ssh_config=ssh_config,
            remote_python=remote_python,
            progress=progress_or_log(progress),
        )
    table.meta.timing = {
        "warmup": warmup,
        "iterations": iterations,
        "canary_every": canary_every,
        "estimator": estimator,
        "drift_threshold": settings.drift_threshold,
        "canary_reference_ms": table.meta.timing.get("canary_reference_ms") or drift.get("reference_ms"),
    }
    if todo:
        table.meta.drift.append(
            {
                **drift_summary(drift),
                "when": now_iso(),
                "blocks": len(todo),
                "phase": "table",
            }
        )
    table.save()
    cal = None
    if calibrate and remote is None:
        cal = calibrate_table(
            table,
            supernet=supernet,
            space=space,
            settings=settings,
            n=calibrate,
            iterations=calibrate_iterations,
            seed=seed,
            resolutions=resolutions,
            progress=progress,
        )
    notes = []
    bad = [d for d in table.meta.drift if d.get("status") == "uncontrolled"]
    if bad:
        notes.append(
            "drift was NOT controlled in part of the measurement (the reference model moved within a "
            "stretch even after re-measuring); re-run `compress profile` on a quiet machine"
        )
    if calibrate and remote is not None:
        notes.append("calibration over --remote is not implemented yet: the table predicts the uncalibrated sum")
    return ProfileResult(
        path=str(table.path),
        device=prof.name,
        runtime=rt,
        precision=prec,
        batch=batch,
        space=label,
        signatures=len(sigs),
        measured_now=len(todo),
        already_measured=already,
        drift=table.meta.drift[-1] if table.meta.drift else {},
        wall_s=time.perf_counter() - t0,
        calibration=cal,
        remote=remote,
        notes=notes,
    )


def _profile_local(
    table: LatencyTable, todo: list[BlockSignature], settings: MeasureSettings, progress: Progress
) -> dict[str, Any]:
    """Time ``todo`` here; entries are written (and the table saved) after every settled stretch."""
    from compress.latency.blocks import build_module
    from compress.latency.measure import block_artifact

    if not todo:
        return {"status": "stable", "note": "nothing to measure"}
    prev_ref = table.meta.timing.get("canary_reference_ms")
    by_name = {s.key(): s for s in todo}

    def scale(timer: BlockTimer) -> float:
        ref = timer.mon.reference_ms
        return float(prev_ref) / ref if (prev_ref and ref) else 1.0

    with BlockTimer(settings) as timer:

        def on_settle(names: list[str]) -> None:  # checkpoint (first pass); rewritten with the best pass at the end
            f = scale(timer)
            st = timer.mon.drift().status
            for n in names:
                if n in by_name:
                    table.add(
                        by_name[n],
                        entry_from_timing(timer.mon.item(n), basis=campaign_basis(st), drift_status=st, scale=f),
                    )
            table.save()

        timer.on_settle = on_settle
        arts = []
        for i, sig in enumerate(todo):
            arts.append(
                block_artifact(build_module(sig, seed=settings.seed), sig.input_shape, timer.workdir, f"b{i}", settings)
            )
        # every block is timed in ``block_passes`` passes (alternating direction) and its entry is the
        # pass with the lower estimate: a short slow spell inflates one pass, never both
        passes = max(1, settings.block_passes)
        with tracked(progress, "blocks", passes * len(todo)) as step:
            for p in range(passes):
                order = range(len(todo)) if p % 2 == 0 else range(len(todo) - 1, -1, -1)
                for j, i in enumerate(order):
                    key = todo[i].key()
                    timer.add(key if p == 0 else f"{key}#p{p}", arts[i][0], opts=arts[i][1])
                    step(p * len(todo) + j + 1)
        run = timer.finish()
        f = scale(timer)
        basis = campaign_basis(run.drift.status)
        for key, sig in by_name.items():  # final normalisation (the reference may have improved), best pass
            its = [run.items[key]] + [run.items[f"{key}#p{p}"] for p in range(1, passes)]
            best = min(its, key=lambda it: pick_stats(it, basis).estimate(settings.estimator))
            table.add(sig, entry_from_timing(best, basis=basis, drift_status=run.drift.status, scale=f))
        return {**run.drift.to_dict(), "basis": basis}


def calibrate_table(
    table: LatencyTable,
    *,
    supernet: Any,
    space: Any,
    settings: MeasureSettings,
    n: int = 20,
    iterations: int = 30,
    seed: int = 0,
    resolutions: list[int] | None = None,
    progress: Progress | None = None,
    repeats: int = 2,
) -> dict[str, Any]:
    """Measure ``n`` subnets (:func:`calibration_genes`) end to end, fit the correction, store it in the table."""
    from compress.latency.calibrate import fit
    from compress.latency.predict import LatencyModel
    from compress.latency.spaces import resolve_supernet

    net = resolve_supernet(supernet if supernet is not None else space, seed=seed)
    rng = np.random.default_rng(seed + 7919)
    model = LatencyModel.from_table(table, space)
    genes, roles = calibration_genes(space, model, rng, n, resolutions=resolutions)
    cfgs = [space.from_genes(g) for g in genes]
    st = MeasureSettings(**{**settings.__dict__, "iterations": iterations, "canary_every": 4})
    # two passes (the second in reverse order), averaged: the target `compress latency validate`
    # compares with, and a slow spell on a shared machine does not hit one subnet twice
    with tracked(progress_or_log(progress), "calibrate") as step:
        ms, drift = measure_subnets(
            net, cfgs, st, repeats=repeats, force_raw=table_is_raw(table), progress=lambda d, t: step(d, t)
        )
    target = ms.mean(axis=0)
    feats = model.features_genes(genes, per_kind=True)
    cal = fit(feats, target)
    cal.roles = roles
    cal.drift = {k: drift.get(k) for k in ("status", "controlled", "max_drift", "remeasured", "note", "basis")}
    cal.configs = [c.key() for c in cfgs]
    cal.measured_ms = [float(x) for x in target]
    cal.created = now_iso()
    table.calibration = cal.to_dict()
    table.save()
    return {
        "model": cal.model,
        "loo_mape": cal.loo_mape,
        "uncalibrated_mape": cal.uncalibrated_mape,
        "samples": cal.samples,
        "drift": cal.drift["status"],
        "loo_max_error_pct": cal.loo_max_error_pct,
    }
