"""``prune_updp``: the UPDP pipeline end to end, as named steps that can be run and tested alone:
:func:`check_options` (validation) → :func:`load_inputs` (loading) → :func:`block_latency` and
:func:`decide_blocks` (per-block decisions) → :func:`make_scorer` and :func:`choose_blocks`
(selection) → :func:`check_speedup` → :func:`train_student` (progressive training) →
:func:`merge_student` and :func:`measure_after` (merging, checking) → :func:`build_result` and
:func:`write_run` (writing). They share one :class:`UpdpRun` per call (no module state). Registered
as ``compress.prune.METHODS['updp']``; how to prune is :class:`~compress.prune.updp.options.UpdpOptions`.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.prune import METHODS
from compress.prune.updp.options import UpdpOptions, options_from


def _load(ref: str, *, weights: str | None, subnet: str | None, info, image_size: int | None):
    from compress.models.dataset import load_for_dataset

    return load_for_dataset(ref, info, weights=weights, subnet=subnet, image_size=image_size)


def _campaigns(latency, items, repeats: int) -> tuple[list[dict[str, float]], bool]:
    """Time ``items``; while the drift is uncontrolled (a busy machine), again, up to ``repeats`` campaigns
    in all. Returns every campaign's latencies and whether the last one was controlled."""
    runs: list[dict[str, float]] = []
    controlled = False
    while len(runs) < max(1, repeats):
        runs.append(latency.latencies(items))
        controlled = (getattr(latency, "drift", {}) or {}).get("controlled", True)
        if controlled:
            break
    return runs, controlled


def block_decisions(module, cands, input_shape, latency, *, min_gain: float = 0.03, uncontrolled_repeats: int = 3):
    """Time every candidate's original block and merged forms, plus the whole model.

    Under uncontrolled drift (a busy machine) one campaign can be off by several times for some
    blocks, which would pick the wrong blocks; it is repeated up to ``uncontrolled_repeats`` times in
    all and each item's median is used (as in :func:`verify_speedup`).
    """
    from compress.prune.updp.candidates import chain_of, to_pruned
    from compress.prune.updp.forms import forms_for, merge
    from compress.prune.updp.latency import BlockItem, block_inputs
    from compress.prune.updp.select import decide

    shapes = block_inputs(module, [c.name for c in cands], input_shape)
    items = [BlockItem("__model__", copy.deepcopy(module).eval(), tuple(input_shape), "original")]
    forms: dict[str, tuple[str, ...]] = {}
    for c in cands:
        orig = copy.deepcopy(c.module).eval()
        items.append(BlockItem(f"{c.name}|original", orig, shapes[c.name], "original"))
        pruned = to_pruned(copy.deepcopy(c.module), c.name)
        chain_of(pruned).lam = 1.0
        pruned.eval()
        forms[c.name] = forms_for(chain_of(pruned))
        for f in forms[c.name]:
            items.append(BlockItem(f"{c.name}|{f}", merge(pruned, f).eval(), shapes[c.name], f))
    runs, _ = _campaigns(latency, items, uncontrolled_repeats)
    ms = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    decisions = [
        decide(
            c.name, c.kind, ms[f"{c.name}|original"], {f: ms[f"{c.name}|{f}"] for f in forms[c.name]}, min_gain=min_gain
        )
        for c in cands
    ]
    return ms["__model__"], decisions


def verify_speedup(module, mask, forms, input_shape, latency, *, uncontrolled_repeats: int = 3) -> dict[str, Any]:
    """Time the whole model with the selected blocks merged (structure only, weights as they are)
    against the original, side by side, so a selection that is not faster is caught before training.

    When the timing engine reports uncontrolled drift (a busy machine), one side-by-side campaign is
    not evidence either way: it is repeated up to ``uncontrolled_repeats`` times in all and the
    median speed-up decides.
    """
    from compress.prune.updp.latency import BlockItem
    from compress.prune.updp.surgery import insert_pruned, merge_model

    m = copy.deepcopy(module)
    insert_pruned(m, list(mask), lam=1.0)
    merged = merge_model(m.eval(), dict(forms))
    items = [
        BlockItem("original", copy.deepcopy(module).eval(), tuple(input_shape), "original"),
        BlockItem("merged", merged, tuple(input_shape), "merged"),
    ]
    campaigns, controlled = _campaigns(latency, items, uncontrolled_repeats)
    runs = [(ms["original"], ms["merged"]) for ms in campaigns]
    speedups = [o / m_ for o, m_ in runs]
    k = sorted(range(len(speedups)), key=speedups.__getitem__)[len(speedups) // 2]  # median campaign (upper of two)
    return {
        "original_ms": runs[k][0],
        "merged_ms": runs[k][1],
        "speedup": speedups[k],
        "faster": speedups[k] > 1.0,
        "controlled": controlled,
        "campaigns": len(runs),
        "speedups": [round(v, 4) for v in speedups],
        "source": latency.source,
    }


@dataclass
class UpdpRun:
    """What the steps of :func:`prune_updp` hand each other (one call's state, nothing global)."""

    model: str
    data: str
    seed: int
    options: UpdpOptions
    log: Callable[[str], None]
    t0: float = field(default_factory=time.time)
    lm: Any = None  # the loaded model (compress.models.LoadedModel)
    info: Any = None  # the dataset's description
    ds: Any = None  # the dataset splits
    base: Any = None  # the unpruned module (train-time branches folded)
    folded: list = field(default_factory=list)
    cands: list = field(default_factory=list)
    unsupported: list[dict] = field(default_factory=list)
    latency: Any = None  # the BlockLatency pricing blocks
    target: dict | None = None
    base_ms: float = math.nan
    decisions: list = field(default_factory=list)
    teacher: Any = None
    sel: Any = None  # the Selection
    check: dict = field(default_factory=dict)

    @property
    def by_name(self) -> dict:
        return {d.name: d for d in self.decisions}

    @property
    def from_table(self) -> bool:
        from compress.prune.updp.latency import TableBlockLatency

        return isinstance(self.latency, TableBlockLatency)

    @property
    def forms(self) -> dict[str, str]:
        return {n: self.by_name[n].form for n in self.sel.mask}


def _clock(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    """A logger that stamps each line with the seconds since this call started (no module state)."""
    t0 = time.time()

    def log(msg: str) -> None:
        msg = f"[{time.time() - t0:6.1f}s] {msg}"
        if callable(progress):
            progress(msg)  # the caller decides how to show it (the CLI: its rich console)
        elif progress:
            print(f"updp: {msg}", file=sys.stderr, flush=True)

    return log


def check_options(options: UpdpOptions) -> None:
    """Step 1, validation: what the options model cannot check field by field."""
    if (options.blocks is None) == (options.latency_ms is None):
        raise UsageError("give either --blocks K or --latency-ms X (with --device)")


def load_inputs(run: UpdpRun, *, weights: str | None, subnet: str | None) -> None:
    """Step 2, loading: the model, the dataset at its input size, the folded module and its candidates."""
    import torch

    from compress.data import dataset_info, load_dataset
    from compress.prune.updp.candidates import find_candidates
    from compress.prune.updp.graph import fold_reparameterizable

    o = run.options
    torch.manual_seed(run.seed)
    run.info = info = dataset_info(run.data)
    run.lm = _load(run.model, weights=weights, subnet=subnet, info=info, image_size=o.image_size)
    c, h, _ = run.lm.input_shape
    run.ds = load_dataset(run.data, image_size=h, channels=c, seed=run.seed, train_limit=o.train_limit)
    if run.lm.num_classes != info.num_classes:
        raise UsageError(f"{run.model} has {run.lm.num_classes} classes but {run.data} has {info.num_classes}")
    run.base = run.lm.module.eval()
    run.folded = fold_reparameterizable(run.base)  # RepVGG/MobileOne train-time branches, before anything else
    if run.folded:
        run.log(f"folded the train-time branches of {len(run.folded)} reparameterizable blocks")
    run.cands, skipped = find_candidates(run.base)
    run.unsupported = [{"name": s.name, "class": s.cls, "reason": s.reason} for s in skipped]
    if not run.cands:
        names = ", ".join(f"{s.name} ({s.reason})" for s in skipped[:5]) or "no residual blocks found"
        raise UsageError(f"{run.model} has no blocks UPDP can merge; unsupported: {names}")
    run.log(f"{len(run.cands)} candidate blocks, {len(skipped)} left intact")


def block_latency(run: UpdpRun, *, tables: str | Path | None, profiles: str | Path | None) -> None:
    """Step 3a: what prices the blocks. This machine: every block and merged form timed on the spot;
    another device: its latency table (``compress profile --merged``) or its roofline estimate, which
    cover supernet subnets only."""
    from compress.hardware.profile import get_profile
    from compress.prune.updp.latency import MeasuredBlockLatency, TableBlockLatency

    o = run.options
    prof = get_profile(o.device or "local-cpu", profiles_dir=profiles)
    rt = prof.check_runtime(o.runtime)
    if prof.kind == "cpu" and getattr(prof, "detect", False):
        if rt not in ("onnxruntime", "openvino"):
            raise UsageError(f"UPDP measures blocks with onnxruntime or openvino; got --runtime {rt}")
        run.latency = MeasuredBlockLatency(runtime=rt, threads=o.threads, iterations=o.timing_iterations)
    else:
        from compress.latency.predict import LatencyModel
        from compress.prune.updp.latency import subnet_block_signatures

        if run.lm.source.get("kind") != "subnet":
            raise UsageError(
                f"--device {prof.name}: UPDP prices blocks for another device from its latency table, "
                f"which covers supernet subnets only and {run.model} is not one; prune for --device "
                "local-cpu (measured here) or run compress prune on the device itself"
            )
        space, cfg, sigs = subnet_block_signatures(run.base, run.lm.source, run.lm.input_shape)
        table = LatencyModel.load(device=prof.table_device, runtime=rt, space=space, tables=tables, profiles=profiles)
        run.latency = TableBlockLatency(model=table, config=cfg, blocks=sigs)
    run.target = {"device": prof.name, "runtime": rt, "source": run.latency.source}


def decide_blocks(run: UpdpRun) -> None:
    """Step 3b: time (or price) every candidate and its merged forms; the per-block decisions."""
    how = "pricing" if run.latency.source.startswith(("table", "estimate")) else "timing"
    run.log(f"{how} {len(run.cands)} blocks and their merged forms ({run.latency.source})")
    run.base_ms, run.decisions = block_decisions(
        run.base, run.cands, run.lm.input_shape, run.latency, min_gain=run.options.min_gain
    )


def make_scorer(run: UpdpRun) -> Callable:
    """Step 4a: the accuracy score of a mask (the proxy, or masks scored on a weight-sharing network)."""
    from compress.prune.updp.measure import logits
    from compress.prune.updp.proxy import proxy_scorer, supernet_scorer

    o, ds = run.options, run.ds
    if o.teacher:  # loaded here, after the timing, as before the split (model init draws from torch's RNG)
        t = _load(o.teacher, weights=None, subnet=None, info=run.info, image_size=run.lm.input_shape[1])
        run.teacher = t.module.eval()
    else:
        run.teacher = copy.deepcopy(run.base).eval()
    val = ds.val.images[: o.score_images]
    t_logits = logits(run.teacher, val)
    if o.selection == "proxy":
        run.log("selecting blocks (accuracy proxy: KL to the unpruned model after BN recalibration)")
        return proxy_scorer(run.base, t_logits, ds.calib.images, val)
    pool = [d.name for d in run.decisions if d.eligible]
    k_train = o.blocks if o.blocks is not None else max(1, len(pool) // 2)
    run.log(f"training the weight-sharing network with random {k_train}-block masks ({o.selection_steps} steps)")
    return supernet_scorer(
        run.base,
        run.teacher,
        pool,
        ds.train,
        t_logits,
        ds.calib.images,
        val,
        k=k_train,
        steps=o.selection_steps,
        batch_size=o.batch_size,
        seed=run.seed,
    )


def choose_blocks(run: UpdpRun, score: Callable) -> None:
    """Step 4b, selection: the blocks to prune (see :mod:`compress.prune.updp.select`)."""
    from compress.prune.updp.select import select_blocks

    o = run.options
    run.sel = select_blocks(
        run.decisions, base_ms=run.base_ms, score=score, blocks=o.blocks, latency_ms=o.latency_ms, seed=run.seed
    )
    if not run.sel.mask:
        raise UsageError(
            f"the unpruned model is predicted at {run.base_ms:.3f} ms, already within --latency-ms {o.latency_ms}; nothing to prune"
        )
    by_name = run.by_name
    for n in run.sel.mask:
        by_name[n].selected = True
    run.log(f"pruning {', '.join(run.sel.mask)}; checking the whole model gets faster")


def check_speedup(run: UpdpRun) -> None:
    """Step 5: the whole model with the selection merged must be faster (a table: its prediction)."""
    if run.from_table:
        merged_pred = run.sel.predicted_ms
        run.check = {
            "original_ms": run.base_ms,
            "merged_ms": merged_pred,
            "speedup": run.base_ms / merged_pred,
            "faster": merged_pred < run.base_ms,
            "controlled": True,
            "campaigns": 0,
            "predicted": True,
            "source": run.latency.source,
        }
    else:
        run.check = verify_speedup(run.base, run.sel.mask, run.forms, run.lm.input_shape, run.latency)
    if not run.check["faster"]:
        from compress.core.errors import Failure

        c = run.check
        how = "" if c["controlled"] else f", median of {c['campaigns']} campaigns on a busy machine"
        raise Failure(
            f"merging {', '.join(run.sel.mask)} does not make the whole model faster on {run.latency.source} "
            f"({c['merged_ms']:.4f} ms vs {c['original_ms']:.4f} ms{how}); ask for fewer blocks or a looser budget"
        )


def train_student(run: UpdpRun, ckpt_dir: Path | None) -> tuple[Any, dict]:
    """Step 6, training: the selected blocks in pruned form, λ ramped from 0 to 1 with KD (resumes
    from ``ckpt_dir``). Returns the student at λ = 1 and the training record."""
    from compress.prune.updp.linearize import NormSwapStep
    from compress.prune.updp.measure import recalibrate_bn
    from compress.prune.updp.progressive import ProgressiveConfig, train_progressive
    from compress.prune.updp.surgery import insert_pruned

    o = run.options
    student = copy.deepcopy(run.base)
    insert_pruned(student, list(run.sel.mask), lam=0.0)
    swaps = [m for m in student.modules() if isinstance(m, NormSwapStep)]
    if swaps:
        recalibrate_bn(student, run.ds.calib.images, only=swaps)  # warm up the new BN statistics
    cfg = ProgressiveConfig(
        epochs=o.epochs,
        batch_size=o.batch_size,
        lr=o.lr,
        ramp_share=o.ramp_share,
        schedule=o.schedule,
        kd_weight=o.kd_weight,
        seed=run.seed,
        max_steps=o.max_steps,
    )
    last = [0.0]

    def prog(step, total, rec):
        if time.time() - last[0] > 5 or step == total:
            last[0] = time.time()
            run.log(f"step {step}/{total} λ={rec['lambda']:.2f} loss={rec['loss']:.4f}")

    train = train_progressive(student, run.teacher, run.ds.train, config=cfg, ckpt_dir=ckpt_dir, progress=prog)
    student.eval()
    return student, train


def merge_student(run: UpdpRun, student) -> tuple[Any, dict[str, Any]]:
    """Step 7, merging and checking: the merged model, and how exactly it equals the λ = 1 student."""
    from compress.prune.updp.surgery import merged_copy

    merged = merged_copy(student, run.forms)
    return merged, _exactness(student, merged, run.ds.test.images[:64], run.lm.input_shape, run.seed)


def measure_after(run: UpdpRun, merged) -> dict[str, Any] | None:
    """Step 7b: on this machine, the whole model timed before and after (None when priced by a table)."""
    if run.target is None or run.from_table:
        return None
    from compress.prune.updp.latency import BlockItem

    shape = tuple(run.lm.input_shape)
    ms = run.latency.latencies(
        [
            BlockItem("before", copy.deepcopy(run.base).eval(), shape, "original"),
            BlockItem("after", merged, shape, "merged"),
        ]
    )
    return {
        "before_ms": ms["before"],
        "after_ms": ms["after"],
        "speedup": ms["before"] / ms["after"],
        "drift": getattr(run.latency, "drift", {}),
    }


@METHODS.register("updp")
def prune_updp(
    *,
    model: str,
    data: str,
    seed: int = 0,
    options: UpdpOptions | None = None,
    weights: str | None = None,
    subnet: str | None = None,
    out: str | Path | None = None,
    progress: bool | Callable[[str], None] = True,
    latency: Any = None,
    tables: str | Path | None = None,
    profiles: str | Path | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Prune ``blocks`` blocks (or down to ``latency_ms``) of ``model`` by UPDP and merge them.

    How to prune is an :class:`~compress.prune.updp.options.UpdpOptions` (``options=``), or its
    fields as keywords (``blocks=2, epochs=1``; both: the keywords win). ``device``/``runtime`` pick
    the latency target (default: this machine, ``local-cpu``, and its default runtime). On this
    machine block forms are measured on the spot with the shared runner and timing engine, with
    ``threads`` intra-op threads (default 1: blocks take microseconds, and two threads on a small
    CPU contend and time unrepeatably; ``None`` = the runtime's default). For another device a
    supernet subnet's blocks and merged forms are priced from the device's latency table in
    ``tables`` (``compress profile --device D --merged``), or from its roofline estimate when there
    is none (flagged in ``latency_source`` and warned about); nothing is measured then, and the
    whole-model check is the table's prediction. ``latency`` (Python only) overrides that with any
    :class:`BlockLatency`. Returns the JSON-able result; with ``out`` writes ``result.json``, the
    merged model directory ``model/`` (loadable with ``compress.models.load_model``) and
    ``manifest.json``.
    """
    from compress.core.runs import RunDir

    opts = options_from(options, fields)
    check_options(opts)
    run = UpdpRun(model=model, data=data, seed=seed, options=opts, log=_clock(progress))
    load_inputs(run, weights=weights, subnet=subnet)
    if latency is None:
        block_latency(run, tables=tables, profiles=profiles)
    run.latency = latency if latency is not None else run.latency
    decide_blocks(run)
    choose_blocks(run, make_scorer(run))
    check_speedup(run)
    rundir = RunDir(out, command="compress prune --method updp", seeds={"seed": seed}) if out else None
    student, train = train_student(run, rundir.path / "train" if rundir else None)
    merged, exact = merge_student(run, student)
    result = build_result(run, student, merged, train=train, exact=exact, measured=measure_after(run, merged))
    if rundir is not None:
        write_run(run, rundir, merged, result)
    return result


def build_result(run: UpdpRun, student, merged, *, train: dict, exact: dict, measured: dict | None) -> dict[str, Any]:
    """Step 8a: the JSON-able result (top-1 in percent: the presentation edge)."""
    from compress.nn.evaluate import top1
    from compress.prune.updp.measure import count_macs, count_params

    test, shape, sel = run.ds.test, run.lm.input_shape, run.sel
    by_name, o = run.by_name, run.options
    return {
        "method": "updp",
        "model": run.model,
        "data": run.data,
        "seed": run.seed,
        "pruned_blocks": list(sel.mask),
        "blocks": [d.to_json() for d in run.decisions],
        "unsupported_blocks": run.unsupported,
        "top1_before": 100 * top1(run.base, test.images, test.labels),
        "top1_lambda1": 100 * top1(student, test.images, test.labels),
        "top1_after": 100 * top1(merged, test.images, test.labels),
        "macs_before": count_macs(run.base, shape),
        "macs_after": count_macs(merged, shape),
        "params_before": count_params(run.base),
        "params_after": count_params(merged),
        "predicted_latency_ms_before": run.base_ms,
        "predicted_latency_ms_after": run.base_ms - sum(by_name[n].saving_ms for n in sel.mask),
        "latency_source": run.latency.source,
        "target": run.target,
        "measured_latency": measured,
        "latency_entry_sources": dict(getattr(run.latency, "sources", {})) or None,
        "selection": {
            "method": sel.method,
            "score": sel.score,
            "masks_evaluated": sel.evaluated,
            "scorer": o.selection,
            "score_definition": "-KL(unpruned || masked at lambda=1, BN recalibrated)"
            + (" on the weight-sharing network" if o.selection == "supernet" else ", no training"),
        },
        "training": {k: v for k, v in train.items() if k != "trace"} | {"lambda_trace": train["trace"]},
        "merge_check": exact,
        "speedup_check": run.check,
        "split": "test",
        "seconds": round(time.time() - run.t0, 1),
    }


def write_run(run: UpdpRun, rundir, merged, result: dict[str, Any]) -> None:
    """Step 8b, writing: the merged model directory, ``result.json`` and the manifest."""
    from compress.models import LoadedModel, save_model_dir

    lm = run.lm
    record = {
        "name": "updp-merge",
        "blocks": [{"name": n, "kind": run.by_name[n].kind, "form": f} for n, f in run.forms.items()],
    }
    folded = [{"name": "updp-fold", "modules": run.folded}] if run.folded else []
    out_lm = LoadedModel(
        module=merged,
        input_shape=lm.input_shape,
        num_classes=lm.num_classes,
        source=lm.source,
        dataset=run.data,
        transforms=[*lm.transforms, *folded, record],
        metrics={"top1": result["top1_after"], "top1_before": result["top1_before"]},
    )
    mdir = save_model_dir(rundir.path / "model", out_lm)
    result["model_dir"] = str(mdir)
    for f in ("model.json", "model.safetensors"):
        rundir.add_output(mdir / f)
    rundir.add_input("model", run.model if Path(run.model).exists() else None, value=run.model)
    rundir.write_json("result.json", result)
    rundir.save_manifest()


def list_blocks(
    *,
    model: str,
    data: str | None = None,
    weights: str | None = None,
    subnet: str | None = None,
    image_size: int | None = None,
) -> dict[str, Any]:
    """Every UPDP candidate block of ``model`` (kind, convs, stride, residual, merged forms) and every
    block left intact with the reason, after folding train-time branches; nothing is trained or timed."""
    import copy as _copy
    from types import SimpleNamespace

    from compress.prune.updp.candidates import chain_of, find_candidates, to_pruned
    from compress.prune.updp.forms import forms_for
    from compress.prune.updp.graph import fold_reparameterizable

    if data is not None:
        from compress.data import dataset_info

        info = dataset_info(data)
    else:
        info = SimpleNamespace(num_classes=1000, channels=3, native_size=image_size or 224)
    lm = _load(model, weights=weights, subnet=subnet, info=info, image_size=image_size)
    base = lm.module.eval()
    folded = fold_reparameterizable(base)
    cands, skipped = find_candidates(base)
    rows = []
    for c in cands:
        chain = chain_of(to_pruned(_copy.deepcopy(c.module), c.name))
        rows.append(
            {
                "name": c.name,
                "class": type(c.module).__name__,
                "kind": c.kind,
                "convs": len(chain.convs),
                "kernel": 1 + 2 * chain.total_pad,
                "stride": chain.stride,
                "residual": chain.residual,
                "post_act": chain.post_act is not None,
                "forms": list(forms_for(chain)),
            }
        )
    return {
        "model": model,
        "input_shape": list(lm.input_shape),
        "folded": folded,
        "candidates": rows,
        "skipped": [{"name": s.name, "class": s.cls, "reason": s.reason} for s in skipped],
    }


def _exactness(student, merged, images, input_shape, seed) -> dict[str, Any]:
    """max|y_merged − y_λ=1| / max|y| on real test images and on random inputs (fp32, eval)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    rand = torch.randn(8, *input_shape, generator=g) * 2
    out = {}
    with torch.no_grad():
        for name, x in (("real", images), ("random", rand)):
            y, ym = student(x), merged(x)
            out[name] = float((ym - y).abs().max() / y.abs().max().clamp_min(1e-12))
    out["max_rel_error"] = max(out["real"], out["random"])
    out["ok"] = bool(out["max_rel_error"] <= 1e-5) and not math.isnan(out["max_rel_error"])
    return out
