"""``prune_ftwt``: FTWT dynamic channel gating, end to end (registered as ``METHODS['ftwt']``).

>>> from compress.prune import prune
>>> res = prune(method="ftwt", model="small:resnet", data="digits", epochs=2, out="runs/ftwt")  # doctest: +SKIP
>>> res["flops_reduction_mean"], res["top1_after"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compress.core.config import StrictModel, validate
from compress.core.errors import UsageError, unknown
from compress.prune import METHODS

RUNTIME_NOTE = (
    "FLOPs reduction is analytic (per-sample channel accounting). Dense runtimes such as ONNX "
    "Runtime and OpenVINO compute every channel and then multiply by the mask, so they cannot "
    "exploit the masks: the gated model is not faster there (see latency, measured when asked)."
)


class FtwtOptions(StrictModel):
    """Training and reporting options of :func:`prune_ftwt` (``**opts``); unknown keys are errors."""

    lr: float = Field(0.01, gt=0, description="backbone SGD learning rate (cosine schedule)")
    mlr: float = Field(0.1, gt=0, description="predictor SGD learning rate (constant)")
    batch_size: int = Field(128, ge=1)
    cooldown: float = Field(0.5, ge=0, le=1, description="mask loss on for this share of the epochs")
    w_mask: float = Field(1.0, ge=0)
    pool: Literal["avg", "max"] = "avg"
    softmax: bool = True
    augment: bool = False
    image_size: int | None = Field(None, ge=4)
    train_limit: int | None = Field(None, ge=1)
    eval_limit: int | None = Field(None, ge=1, description="evaluate/account on the first N test images")
    pretrain_epochs: int = Field(0, ge=0, description="train the dense model first (for untrained models)")
    pretrain_lr: float = Field(0.05, gt=0)
    export: bool = Field(True, description="export model.onnx with the gates and check ORT parity (needs out)")
    latency: bool = Field(False, description="time gated vs dense ONNX on ONNX Runtime (needs out)")
    threads: int | None = Field(None, ge=1, description="torch threads for training")


def _resolve_data(data: Any, *, image_size: int | None, channels: int | None, seed: int, train_limit: int | None):
    from compress.data import LoadedDataset, load_dataset

    if isinstance(data, LoadedDataset):
        return data
    if not isinstance(data, str) or not data:
        raise UsageError("data must be a dataset name (e.g. fashion-mnist, digits, imagefolder:PATH)")
    return load_dataset(data, image_size=image_size, channels=channels, seed=seed, train_limit=train_limit)


def _resolve_model(model: Any, *, weights: Any, subnet: Any, info: Any, image_size: int | None):
    from compress.models import LoadedModel, load_model

    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, (str, Path)) or not str(model):
        raise UsageError(
            "model must be a model reference (timm:NAME, small:NAME, a model directory, "
            "a supernet checkpoint with subnet=...) or a LoadedModel"
        )
    opts: dict[str, Any] = {
        "num_classes": info.num_classes,
        "in_chans": info.channels,
        "image_size": image_size or info.native_size or 32,
    }
    if weights is not None:
        opts["weights"] = str(weights)
    if subnet is not None:
        opts["subnet"] = subnet
    return load_model(str(model), **opts)


def prune_ftwt(
    *,
    model: Any,
    data: Any,
    epochs: int,
    mass: float = 0.95,
    mode: str = "decoupled",
    seed: int = 0,
    out: str | Path | None = None,
    weights: str | Path | None = None,
    subnet: Any = None,
    progress: bool = True,
    **opts: Any,
) -> dict[str, Any]:
    """Put FTWT gates on ``model``, train them on ``data`` and report top-1 and per-sample FLOPs.

    ``mass`` is the heatmap-mass threshold r in (0, 1]; ``mode`` is ``decoupled`` (the predictor sees a
    detached input; default) or ``joint``. ``opts`` are :class:`FtwtOptions`. With ``out``, writes
    ``model/`` (a model directory that reloads with the gates), ``metrics.json``, ``history.json``,
    ``model.onnx`` (gates in-graph) and ``manifest.json``; training checkpoints there and resumes.
    Returns a JSON-able dict with at least ``top1_before``, ``top1_after``, ``flops_reduction_mean``,
    ``flops_reduction_p10``, ``flops_reduction_p90``.
    """
    from compress.prune.ftwt.gates import MODES

    if mode not in MODES:
        raise unknown("FTWT mode", str(mode), MODES)
    try:
        mass = float(mass)
    except (TypeError, ValueError):
        raise UsageError(f"mass must be a number in (0, 1], got {mass!r}") from None
    if not 0.0 < mass <= 1.0:
        raise UsageError(
            f"mass must be in (0, 1] (the share of peak-activation mass the kept filters cover), got {mass}"
        )
    if not isinstance(epochs, int) or epochs < 1:
        raise UsageError(f"epochs must be a positive integer, got {epochs!r}")
    o = validate(FtwtOptions, opts, source="ftwt options")
    if o.latency and out is None:
        raise UsageError("latency=True needs an output directory (out=...) for the exported models")
    if out is None:  # export writes model.onnx into the run directory; without one there is nothing to write
        o = o.model_copy(update={"export": False})

    import torch

    from compress.core.runs import RunDir
    from compress.data import dataset_info
    from compress.models import LoadedModel, save_model_dir
    from compress.prune.ftwt.accounting import measure_flops
    from compress.prune.ftwt.source import TRANSFORM_NAME
    from compress.prune.ftwt.train import TrainConfig, evaluate, train
    from compress.prune.ftwt.wrap import insert_gates

    if o.threads:
        torch.set_num_threads(o.threads)
    log = (lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None)
    from compress.data import LoadedDataset

    if not isinstance(data, (str, LoadedDataset)) or not data:
        raise UsageError(
            "data must be a dataset name (e.g. fashion-mnist, digits, imagefolder:PATH) or a LoadedDataset"
        )
    data_name = data if isinstance(data, str) else data.info.name
    info = dataset_info(data) if isinstance(data, str) else data.info
    lm = _resolve_model(model, weights=weights, subnet=subnet, info=info, image_size=o.image_size)
    c, h, _w = lm.input_shape
    ds = _resolve_data(data, image_size=h, channels=c, seed=seed, train_limit=o.train_limit)
    if tuple(ds.input_shape) != tuple(lm.input_shape):
        raise UsageError(
            f"the model takes {tuple(lm.input_shape)} inputs but the dataset gives {tuple(ds.input_shape)}"
        )
    if lm.num_classes != ds.info.num_classes:
        raise UsageError(
            f"the model has {lm.num_classes} classes but {ds.info.name} has {ds.info.num_classes}; "
            "give a model built for this dataset"
        )
    test = ds.test.subset(o.eval_limit) if o.eval_limit else ds.test
    run = RunDir(out, command="compress prune --method ftwt", seeds={"seed": seed}) if out is not None else None
    if run is not None:
        run.add_input("model", value=lm.source)
        run.add_input("data", value=ds.meta)
        if weights is not None:
            run.add_input("weights", weights)

    module = copy.deepcopy(lm.module) if isinstance(model, LoadedModel) else lm.module  # never mutate the caller's
    torch.manual_seed(seed)
    if o.pretrain_epochs:
        pcfg = TrainConfig(
            epochs=o.pretrain_epochs, lr=o.pretrain_lr, batch_size=o.batch_size, augment=o.augment, seed=seed
        )
        train(
            module,
            ds.train,
            cfg=pcfg,
            checkpoint=run.file("pretrain_ckpt.pt") if run else None,
            progress=progress,
            desc="pretrain",
            log=log,
        )
    dense = copy.deepcopy(module).eval()
    top1_before = evaluate(module, test)
    flops_before = measure_flops(module, test.images)
    log(f"before: top1={top1_before:.4f}, dense MACs/sample={flops_before['dense_macs']:,}")

    example = ds.val.images[:8]
    module, sites = insert_gates(module, example=example, pool=o.pool, softmax=o.softmax, mode=mode)
    log(f"gated {len(sites)} Conv-BN(-act) layers ({mode}, mass r={mass})")
    cfg = TrainConfig(
        epochs=epochs,
        mass=mass,
        lr=o.lr,
        mlr=o.mlr,
        batch_size=o.batch_size,
        cooldown=o.cooldown,
        w_mask=o.w_mask,
        augment=o.augment,
        seed=seed,
    )
    history = train(
        module,
        ds.train,
        cfg=cfg,
        checkpoint=run.file("train_ckpt.pt") if run else None,
        progress=progress,
        desc="ftwt",
        val=ds.val,
        log=log,
    )
    top1_after = evaluate(module, test)
    acc = measure_flops(module, test.images)
    per_sample = acc.pop("per_sample_macs")
    log(
        f"after: top1={top1_after:.4f}, FLOPs reduction mean={acc['flops_reduction_mean']:.3f} "
        f"(p10 {acc['flops_reduction_p10']:.3f}, p90 {acc['flops_reduction_p90']:.3f})"
    )

    record = {
        "name": TRANSFORM_NAME,
        "kind": "gate",
        "sites": sites,
        "pool": o.pool,
        "softmax": o.softmax,
        "mode": mode,
        "mass": mass,
    }
    gated = LoadedModel(
        module=module,
        input_shape=lm.input_shape,
        num_classes=lm.num_classes,
        source=lm.source,
        dataset=ds.info.name,
        transforms=[*lm.transforms, record],
        metrics={"top1": top1_after, "flops_reduction_mean": acc["flops_reduction_mean"]},
    )
    result: dict[str, Any] = {
        "method": "ftwt",
        "mode": mode,
        "mass": mass,
        "epochs": epochs,
        "seed": seed,
        "data": data_name,
        "model": lm.source,
        "gated_layers": len(sites),
        "top1_before": top1_before,
        "top1_after": top1_after,
        **{k: v for k, v in acc.items() if k != "layers"},
        "flops_reduction_before_mean": flops_before["flops_reduction_mean"],
        "test_samples": len(test),
        "options": o.model_dump(),
        "runtime_note": RUNTIME_NOTE,
        "layers": acc["layers"],
        "history": history,
    }
    if run is not None:
        mdir = save_model_dir(run.file("model"), gated)
        for f in ("model.json", "model.safetensors"):
            run.add_output(mdir / f)
        result["model_dir"] = str(mdir)
        import numpy as np

        np.save(run.file("per_sample_macs.npy"), per_sample.numpy())
        run.add_output(run.file("per_sample_macs.npy"))
        if o.export:
            from compress.prune.ftwt.deploy import export_gated, onnx_parity

            ex = export_gated(gated, run.file("model.onnx"))
            run.add_output(run.file("model.onnx"))
            par = onnx_parity(gated, run.file("model.onnx"), test.images[:128])
            result["export"] = {"onnx": ex, "parity": par}
            from compress.core.errors import MissingDependency

            try:
                result["export"]["parity_openvino"] = onnx_parity(
                    gated, run.file("model.onnx"), test.images[:128], runtime="openvino"
                )
            except MissingDependency as err:
                result["export"]["parity_openvino"] = {"runtime": "openvino", "skipped": str(err)}
            log(
                f"ONNX export with in-graph gates ({ex['greater_ops']} Greater ops); ORT parity max rel err "
                f"{par['max_rel_err']:.2e}, top-1 agreement {par['top1_agreement']:.4f}"
            )
        if o.latency:
            from compress.prune.ftwt.deploy import gated_vs_dense_latency

            dense_lm = LoadedModel(
                module=dense,
                input_shape=lm.input_shape,
                num_classes=lm.num_classes,
                source=lm.source,
                transforms=list(lm.transforms),
            )
            result["latency"] = gated_vs_dense_latency(gated, dense_lm, run.file("latency"), seed=seed)
        run.write_json("metrics.json", {k: v for k, v in result.items() if k != "history"})
        run.write_json("history.json", history)
        run.save_manifest()
        result["out"] = str(run.path)
    return result


if "ftwt" not in METHODS:
    METHODS.add("ftwt", prune_ftwt)
