"""``prune_updp``: the UPDP pipeline end to end (candidates → decisions → selection → progressive
training → merge → checks → model directory). Registered as ``compress.prune.METHODS['updp']``.
"""

from __future__ import annotations

import copy
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.prune import METHODS

_T0 = [time.time()]


def _log(progress: bool | Callable[[str], None], msg: str) -> None:
    msg = f"[{time.time() - _T0[0]:6.1f}s] {msg}"
    if callable(progress):
        progress(msg)  # the caller decides how to show it (the CLI: its rich console)
    elif progress:
        print(f"updp: {msg}", file=sys.stderr, flush=True)


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


@METHODS.register("updp")
def prune_updp(
    *,
    model: str,
    data: str,
    epochs: int,
    blocks: int | None = None,
    latency_ms: float | None = None,
    device: str | None = None,
    runtime: str | None = None,
    teacher: str | None = None,
    weights: str | None = None,
    subnet: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    progress: bool | Callable[[str], None] = True,
    image_size: int | None = None,
    batch_size: int = 64,
    lr: float = 1e-3,
    ramp_share: float = 0.4,
    schedule: str = "linear",
    kd_weight: float = 0.5,
    min_gain: float = 0.03,
    score_images: int = 512,
    train_limit: int | None = None,
    max_steps: int | None = None,
    latency: Any = None,
    timing_iterations: int = 60,
    threads: int | None = 1,
    selection: str = "proxy",
    selection_steps: int = 200,
    tables: str | Path | None = None,
    profiles: str | Path | None = None,
) -> dict[str, Any]:
    """Prune ``blocks`` blocks (or down to ``latency_ms``) of ``model`` by UPDP and merge them.

    ``device``/``runtime`` pick the latency target (default: this machine, ``local-cpu``, and its
    default runtime). On this machine block forms are measured on the spot with the shared runner
    and timing engine, with ``threads`` intra-op threads (default 1: blocks take microseconds, and two
    threads on a small CPU contend and time unrepeatably; ``None`` = the runtime's default). For
    another device a supernet subnet's blocks and merged forms are priced from the device's latency
    table in ``tables`` (``compress profile --device D --merged``), or from its roofline estimate
    when there is none (flagged in ``latency_source`` and warned about); nothing is measured then,
    and the whole-model check is the table's prediction. ``latency``
    (Python only) overrides that with any :class:`BlockLatency`. Returns the
    JSON-able result; with ``out`` writes ``result.json``, the merged model directory ``model/``
    (loadable with ``compress.models.load_model``) and ``manifest.json``.
    """
    import torch

    from compress.core.runs import RunDir
    from compress.data import dataset_info, load_dataset
    from compress.models import LoadedModel, save_model_dir
    from compress.nn.evaluate import top1
    from compress.prune.updp.candidates import find_candidates
    from compress.prune.updp.graph import fold_reparameterizable
    from compress.prune.updp.latency import MeasuredBlockLatency, TableBlockLatency
    from compress.prune.updp.linearize import NormSwapStep
    from compress.prune.updp.measure import count_macs, count_params, logits, recalibrate_bn
    from compress.prune.updp.progressive import ProgressiveConfig, train_progressive
    from compress.prune.updp.proxy import proxy_scorer, supernet_scorer
    from compress.prune.updp.select import select_blocks
    from compress.prune.updp.surgery import insert_pruned, merged_copy

    t0 = _T0[0] = time.time()
    if (blocks is None) == (latency_ms is None):
        raise UsageError("give either --blocks K or --latency-ms X (with --device)")
    if epochs < 0:
        raise UsageError(f"--epochs must be >= 0, got {epochs}")
    torch.manual_seed(seed)
    info = dataset_info(data)
    lm = _load(model, weights=weights, subnet=subnet, info=info, image_size=image_size)
    c, h, w = lm.input_shape
    ds = load_dataset(data, image_size=h, channels=c, seed=seed, train_limit=train_limit)
    if lm.num_classes != info.num_classes:
        raise UsageError(f"{model} has {lm.num_classes} classes but {data} has {info.num_classes}")
    base = lm.module.eval()
    folded = fold_reparameterizable(base)  # RepVGG/MobileOne train-time branches, before anything else
    if folded:
        _log(progress, f"folded the train-time branches of {len(folded)} reparameterizable blocks")
    cands, skipped = find_candidates(base)
    unsupported = [{"name": s.name, "class": s.cls, "reason": s.reason} for s in skipped]
    if not cands:
        names = ", ".join(f"{s.name} ({s.reason})" for s in skipped[:5]) or "no residual blocks found"
        raise UsageError(f"{model} has no blocks UPDP can merge; unsupported: {names}")
    _log(progress, f"{len(cands)} candidate blocks, {len(skipped)} left intact")

    # -- latency: per-block decisions on the target ---------------------------------------------
    target = None
    if latency is None:
        from compress.hardware.profile import get_profile

        prof = get_profile(device or "local-cpu", profiles_dir=profiles)
        rt = prof.check_runtime(runtime)
        if prof.kind == "cpu" and getattr(prof, "detect", False):
            # this machine: time every block and merged form on the spot
            if rt not in ("onnxruntime", "openvino"):
                raise UsageError(f"UPDP measures blocks with onnxruntime or openvino; got --runtime {rt}")
            latency = MeasuredBlockLatency(runtime=rt, threads=threads, iterations=timing_iterations)
        else:
            # another device: its latency table (measured there with `compress profile --merged`), or its
            # roofline estimate; a supernet subnet's blocks have table signatures, other models do not
            from compress.latency.predict import LatencyModel
            from compress.prune.updp.latency import subnet_block_signatures

            if lm.source.get("kind") != "subnet":
                raise UsageError(
                    f"--device {prof.name}: UPDP prices blocks for another device from its latency table, "
                    f"which covers supernet subnets only and {model} is not one; prune for --device "
                    "local-cpu (measured here) or run compress prune on the device itself"
                )
            space, cfg, sigs = subnet_block_signatures(base, lm.source, lm.input_shape)
            table = LatencyModel.load(
                device=prof.table_device, runtime=rt, space=space, tables=tables, profiles=profiles
            )
            latency = TableBlockLatency(model=table, config=cfg, blocks=sigs)
        target = {"device": prof.name, "runtime": rt, "source": latency.source}
    # another device's table prices blocks and predicts the whole model: nothing is timed here
    from_table = isinstance(latency, TableBlockLatency)
    how = "pricing" if latency.source.startswith(("table", "estimate")) else "timing"
    _log(progress, f"{how} {len(cands)} blocks and their merged forms ({latency.source})")
    base_ms, decisions = block_decisions(base, cands, lm.input_shape, latency, min_gain=min_gain)
    by_name = {d.name: d for d in decisions}

    # -- selection -------------------------------------------------------------------------------
    teacher_lm = _load(teacher, weights=None, subnet=None, info=info, image_size=h) if teacher else None
    teacher_mod = (teacher_lm.module if teacher_lm else copy.deepcopy(base)).eval()
    val = ds.val.images[:score_images]
    t_logits = logits(teacher_mod, val)
    if selection == "proxy":
        score = proxy_scorer(base, t_logits, ds.calib.images, val)
        _log(progress, "selecting blocks (accuracy proxy: KL to the unpruned model after BN recalibration)")
    elif selection == "supernet":
        pool = [d.name for d in decisions if d.eligible]
        k_train = blocks if blocks is not None else max(1, len(pool) // 2)
        _log(
            progress, f"training the weight-sharing network with random {k_train}-block masks ({selection_steps} steps)"
        )
        score = supernet_scorer(
            base,
            teacher_mod,
            pool,
            ds.train,
            t_logits,
            ds.calib.images,
            val,
            k=k_train,
            steps=selection_steps,
            batch_size=batch_size,
            seed=seed,
        )
    else:
        raise UsageError(f"unknown selection '{selection}'; choose proxy or supernet")
    sel = select_blocks(
        decisions, base_ms=base_ms, score=score, blocks=blocks, latency_ms=latency_ms, seed=seed
    )
    if not sel.mask:
        raise UsageError(
            f"the unpruned model is predicted at {base_ms:.3f} ms, already within --latency-ms {latency_ms}; nothing to prune"
        )
    for n in sel.mask:
        by_name[n].selected = True
    _log(progress, f"pruning {', '.join(sel.mask)}; checking the whole model gets faster")
    if from_table:  # the check is the table's prediction
        merged_pred = sel.predicted_ms
        check = {
            "original_ms": base_ms,
            "merged_ms": merged_pred,
            "speedup": base_ms / merged_pred,
            "faster": merged_pred < base_ms,
            "controlled": True,
            "campaigns": 0,
            "predicted": True,
            "source": latency.source,
        }
    else:
        check = verify_speedup(base, sel.mask, {n: by_name[n].form for n in sel.mask}, lm.input_shape, latency)
    if not check["faster"]:
        from compress.core.errors import Failure

        how = "" if check["controlled"] else f", median of {check['campaigns']} campaigns on a busy machine"
        raise Failure(
            f"merging {', '.join(sel.mask)} does not make the whole model faster on {latency.source} "
            f"({check['merged_ms']:.4f} ms vs {check['original_ms']:.4f} ms{how}); ask for fewer blocks or a looser budget"
        )

    # -- progressive training --------------------------------------------------------------------
    top1_before = 100 * top1(base, ds.test.images, ds.test.labels)
    student = copy.deepcopy(base)
    insert_pruned(student, list(sel.mask), lam=0.0)
    swaps = [m for m in student.modules() if isinstance(m, NormSwapStep)]
    if swaps:
        recalibrate_bn(student, ds.calib.images, only=swaps)  # warm up the new BN statistics
    cfg = ProgressiveConfig(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        ramp_share=ramp_share,
        schedule=schedule,
        kd_weight=kd_weight if teacher_mod is not None else 0.0,
        seed=seed,
        max_steps=max_steps,
    )
    run = RunDir(out, command="compress prune --method updp", seeds={"seed": seed}) if out else None
    ck = run.path / "train" if run else None
    last = [0.0]

    def prog(step, total, rec):
        if time.time() - last[0] > 5 or step == total:
            last[0] = time.time()
            _log(progress, f"step {step}/{total} λ={rec['lambda']:.2f} loss={rec['loss']:.4f}")

    train = train_progressive(student, teacher_mod, ds.train, config=cfg, ckpt_dir=ck, progress=prog)
    student.eval()
    top1_lambda1 = 100 * top1(student, ds.test.images, ds.test.labels)

    # -- merge and check -------------------------------------------------------------------------
    forms = {n: by_name[n].form for n in sel.mask}
    merged = merged_copy(student, forms)
    exact = _exactness(student, merged, ds.test.images[:64], lm.input_shape, seed)
    top1_after = 100 * top1(merged, ds.test.images, ds.test.labels)
    macs_before, macs_after = count_macs(base, lm.input_shape), count_macs(merged, lm.input_shape)
    pred_after = base_ms - sum(by_name[n].saving_ms for n in sel.mask)
    measured = None
    if target is not None and not from_table:
        from compress.prune.updp.latency import BlockItem

        ms = latency.latencies(
            [
                BlockItem("before", copy.deepcopy(base).eval(), tuple(lm.input_shape), "original"),
                BlockItem("after", merged, tuple(lm.input_shape), "merged"),
            ]
        )
        measured = {
            "before_ms": ms["before"],
            "after_ms": ms["after"],
            "speedup": ms["before"] / ms["after"],
            "drift": getattr(latency, "drift", {}),
        }
    record = {
        "name": "updp-merge",
        "blocks": [{"name": n, "kind": by_name[n].kind, "form": forms[n]} for n in sel.mask],
    }
    result: dict[str, Any] = {
        "method": "updp",
        "model": model,
        "data": data,
        "seed": seed,
        "pruned_blocks": list(sel.mask),
        "blocks": [d.to_json() for d in decisions],
        "unsupported_blocks": unsupported,
        "top1_before": top1_before,
        "top1_lambda1": top1_lambda1,
        "top1_after": top1_after,
        "macs_before": macs_before,
        "macs_after": macs_after,
        "params_before": count_params(base),
        "params_after": count_params(merged),
        "predicted_latency_ms_before": base_ms,
        "predicted_latency_ms_after": pred_after,
        "latency_source": latency.source,
        "target": target,
        "measured_latency": measured,
        "latency_entry_sources": dict(getattr(latency, "sources", {})) or None,
        "selection": {
            "method": sel.method,
            "score": sel.score,
            "masks_evaluated": sel.evaluated,
            "scorer": selection,
            "score_definition": "-KL(unpruned || masked at lambda=1, BN recalibrated)"
            + (" on the weight-sharing network" if selection == "supernet" else ", no training"),
        },
        "training": {k: v for k, v in train.items() if k != "trace"} | {"lambda_trace": train["trace"]},
        "merge_check": exact,
        "speedup_check": check,
        "split": "test",
        "seconds": round(time.time() - t0, 1),
    }
    if run is not None:
        out_lm = LoadedModel(
            module=merged,
            input_shape=lm.input_shape,
            num_classes=lm.num_classes,
            source=lm.source,
            dataset=data,
            transforms=[*lm.transforms, *([{"name": "updp-fold", "modules": folded}] if folded else []), record],
            metrics={"top1": top1_after, "top1_before": top1_before},
        )
        mdir = save_model_dir(run.path / "model", out_lm)
        result["model_dir"] = str(mdir)
        for f in ("model.json", "model.safetensors"):
            run.add_output(mdir / f)
        run.add_input("model", model if Path(model).exists() else None, value=model)
        run.write_json("result.json", result)
        run.save_manifest()
    return result


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
