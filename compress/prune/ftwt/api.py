"""``prune_ftwt``: FTWT dynamic channel gating, end to end (registered as ``METHODS['ftwt']``).

>>> from compress.prune import prune
>>> res = prune(method="ftwt", model="small:resnet", data="digits", epochs=2, out="runs/ftwt")  # doctest: +SKIP
>>> res["flops_reduction_mean"], res["top1_after"]  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from compress.core.config import StrictModel, validate
from compress.core.errors import UsageError, unknown
from compress.prune import METHODS
from compress.prune.ftwt import DEFAULT_MASS

RUNTIME_NOTE = (
    "FLOPs reduction is analytic (per-sample channel accounting). Dense runtimes such as ONNX "
    "Runtime and OpenVINO compute every channel and then multiply by the mask, so they cannot "
    "exploit the masks: the gated model is not faster there (see latency, measured when asked)."
)


class FtwtOptions(StrictModel):
    """Options of :func:`prune_ftwt`: ``mass`` and ``mode`` (also keyword arguments) and the training
    and reporting extras (``**opts``); unknown keys are errors. Every FTWT default lives here (the
    mass default in :data:`compress.prune.ftwt.DEFAULT_MASS`), read by the CLI and the pipeline."""

    mass: float = Field(DEFAULT_MASS, gt=0, le=1, description="heatmap-mass threshold r: share of peak mass kept")
    mode: Literal["decoupled", "joint"] = Field("decoupled", description="predictor input detached (decoupled) or not")
    lr: float = Field(0.01, gt=0, description="backbone SGD learning rate (released code: 1e-2)")
    schedule: Literal["cosine", "step"] = Field(
        "cosine", description="backbone schedule: cosine, or the released steps (x0.1 at 81/122/151 of 200 epochs)"
    )
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
    gather_latency: bool = Field(
        False, description="time batch-1 gather-executed vs dense in torch on CPU (compress.prune.ftwt.execute)"
    )
    threads: int | None = Field(None, ge=1, description="torch threads for training")


@dataclass
class _Job:
    """What the steps of :func:`prune_ftwt` share: the validated inputs and the loaded pieces."""

    o: FtwtOptions
    epochs: int
    seed: int
    progress: bool
    log: Callable[[str], None]
    lm: Any = None  # LoadedModel
    ds: Any = None  # LoadedDataset
    test: Any = None  # the evaluation Split
    data_name: str = ""
    run: Any = None  # RunDir or None


def _resolve_data(data: Any, *, image_size: int | None, channels: int | None, seed: int, train_limit: int | None):
    from compress.data import LoadedDataset, load_dataset

    if isinstance(data, LoadedDataset):
        return data
    if not isinstance(data, str) or not data:
        raise UsageError("data must be a dataset name (e.g. fashion-mnist, digits, imagefolder:PATH)")
    return load_dataset(data, image_size=image_size, channels=channels, seed=seed, train_limit=train_limit)


def _resolve_model(model: Any, *, weights: Any, subnet: Any, info: Any, image_size: int | None):
    from compress.models import LoadedModel
    from compress.models.dataset import load_for_dataset

    if isinstance(model, LoadedModel):
        return model
    if not isinstance(model, (str, Path)) or not str(model):
        raise UsageError(
            "model must be a model reference (timm:NAME, small:NAME, a model directory, "
            "a supernet checkpoint with subnet=...) or a LoadedModel"
        )
    # FTWT's small CIFAR-style models keep the native size (28x28 Fashion-MNIST stays 28): no minimum
    return load_for_dataset(model, info, weights=weights, subnet=subnet, image_size=image_size, min_image_size=0)


def validate_options(epochs: Any, mass: Any, mode: Any, opts: dict[str, Any], *, out: Any) -> FtwtOptions:
    """Step 1: check the arguments; ``mass``/``mode`` None mean the defaults of :class:`FtwtOptions`."""
    from compress.prune.ftwt.gates import MODES

    if mode is not None and mode not in MODES:
        raise unknown("FTWT mode", str(mode), MODES)
    if mass is not None:
        try:
            mass = float(mass)
        except (TypeError, ValueError):
            raise UsageError(f"mass must be a number in (0, 1], got {mass!r}") from None
        if not 0.0 < mass <= 1.0:
            raise UsageError(
                f"mass must be in (0, 1] (the share of peak-activation mass the kept filters cover), got {mass}"
            )
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise UsageError(f"epochs must be a positive integer, got {epochs!r}")
    given = {k: v for k, v in (("mass", mass), ("mode", mode)) if v is not None}
    o = validate(FtwtOptions, {**opts, **given}, source="ftwt options")
    if (o.latency or o.gather_latency) and out is None:
        raise UsageError("latency=True / gather_latency=True need an output directory (out=...)")
    if out is None:  # export writes model.onnx into the run directory; without one there is nothing to write
        o = o.model_copy(update={"export": False})
    return o


def load_inputs(job: _Job, model: Any, data: Any, *, weights: Any, subnet: Any) -> None:
    """Step 2: the model and the dataset, checked against each other."""
    from compress.data import LoadedDataset, dataset_info

    if not isinstance(data, (str, LoadedDataset)) or not data:
        raise UsageError(
            "data must be a dataset name (e.g. fashion-mnist, digits, imagefolder:PATH) or a LoadedDataset"
        )
    job.data_name = data if isinstance(data, str) else data.info.name
    info = dataset_info(data) if isinstance(data, str) else data.info
    lm = _resolve_model(model, weights=weights, subnet=subnet, info=info, image_size=job.o.image_size)
    c, h, _w = lm.input_shape
    ds = _resolve_data(data, image_size=h, channels=c, seed=job.seed, train_limit=job.o.train_limit)
    if tuple(ds.input_shape) != tuple(lm.input_shape):
        raise UsageError(
            f"the model takes {tuple(lm.input_shape)} inputs but the dataset gives {tuple(ds.input_shape)}"
        )
    if lm.num_classes != ds.info.num_classes:
        raise UsageError(
            f"the model has {lm.num_classes} classes but {ds.info.name} has {ds.info.num_classes}; "
            "give a model built for this dataset"
        )
    job.lm, job.ds = lm, ds
    job.test = ds.test.subset(job.o.eval_limit) if job.o.eval_limit else ds.test


def open_run(job: _Job, out: Any, *, weights: Any) -> None:
    """Step 3: the run directory (manifest inputs), when ``out`` is given."""
    from compress.core.runs import RunDir

    if out is None:
        return
    job.run = RunDir(out, command="compress prune --method ftwt", seeds={"seed": job.seed})
    job.run.add_input("model", value=job.lm.source)
    job.run.add_input("data", value=job.ds.meta)
    if weights is not None:
        job.run.add_input("weights", weights)


def pretrain_dense(job: _Job, module: Any) -> None:
    """Step 4 (optional): train the dense model first (``pretrain_epochs``), cosine schedule."""
    from compress.prune.ftwt.train import FtwtTrainConfig, train

    o = job.o
    if not o.pretrain_epochs:
        return
    cfg = FtwtTrainConfig(
        epochs=o.pretrain_epochs,
        lr=o.pretrain_lr,
        batch_size=o.batch_size,
        augment=o.augment,
        seed=job.seed,
        schedule="cosine",
    )
    ckpt = job.run.file("pretrain_ckpt.pt") if job.run else None
    train(module, job.ds.train, cfg=cfg, checkpoint=ckpt, progress=job.progress, desc="pretrain", log=job.log)


def train_gates(job: _Job, module: Any) -> list[dict[str, Any]]:
    """Step 6: FTWT training of the gated model (mask loss, cooldown, two optimisers, resume)."""
    from compress.prune.ftwt.train import FtwtTrainConfig, train

    o = job.o
    cfg = FtwtTrainConfig(
        epochs=job.epochs,
        mass=o.mass,
        lr=o.lr,
        mlr=o.mlr,
        batch_size=o.batch_size,
        cooldown=o.cooldown,
        w_mask=o.w_mask,
        augment=o.augment,
        seed=job.seed,
        schedule=o.schedule,
    )
    ckpt = job.run.file("train_ckpt.pt") if job.run else None
    return train(
        module, job.ds.train, cfg=cfg, checkpoint=ckpt, progress=job.progress, desc="ftwt", val=job.ds.val, log=job.log
    )


def measure_gated(job: _Job, module: Any) -> tuple[float, dict[str, Any], Any]:
    """Step 7: top-1 and per-image FLOPs of the gated model, with the input-dependence report
    (class names attached). Returns ``(top1, accounting, per_sample_macs)``."""
    from compress.nn.evaluate import top1 as top1_of
    from compress.prune.ftwt.accounting import measure_flops

    top1 = top1_of(module, job.test.images, job.test.labels, batch_size=512)
    acc = measure_flops(module, job.test.images, labels=job.test.labels)
    acc.pop("per_sample_masks", None)
    names = tuple(getattr(job.ds.info, "classes", ()) or ())
    for c in acc.get("input_dependence", {}).get("by_class", []):
        c["name"] = names[c["label"]] if c["label"] < len(names) else str(c["label"])
    return top1, acc, acc.pop("per_sample_macs")


def build_result(job: _Job, *, sites: list, history: list, before: dict[str, Any], after: dict[str, Any]) -> dict:
    """Step 8: the JSON-able result (``before``: top1 + dense accounting; ``after``: top1 + gated)."""
    o, acc = job.o, after["acc"]
    dep = acc.get("input_dependence", {})
    return {
        "method": "ftwt",
        "mode": o.mode,
        "mass": o.mass,
        "epochs": job.epochs,
        "seed": job.seed,
        "data": job.data_name,
        "model": job.lm.source,
        "gated_layers": len(sites),
        "top1_before": before["top1"],
        "top1_after": after["top1"],
        **{k: v for k, v in acc.items() if k not in ("layers", "input_dependence")},
        "mask_entropy_mean": dep.get("mask_entropy_mean"),
        "flops_reduction_before_mean": before["acc"]["flops_reduction_mean"],
        "test_samples": len(job.test),
        "options": o.model_dump(),
        "runtime_note": RUNTIME_NOTE,
        "input_dependence": dep,
        "layers": acc["layers"],
        "history": history,
    }


def write_outputs(job: _Job, result: dict[str, Any], gated: Any, dense: Any, per_sample: Any) -> None:
    """Step 9: model directory, per-image MACs, histogram plot, ONNX export + parity, latencies,
    metrics, manifest."""
    import numpy as np

    from compress.models import save_model_dir

    run, test = job.run, job.test
    mdir = save_model_dir(run.file("model"), gated)
    for f in ("model.json", "model.safetensors"):
        run.add_output(mdir / f)
    result["model_dir"] = str(mdir)
    np.save(run.file("per_sample_macs.npy"), per_sample.numpy())
    run.add_output(run.file("per_sample_macs.npy"))
    if result["input_dependence"]:
        run.add_output(plot_histogram(result, run.file("flops_hist.png")))
    if job.o.export:
        result["export"] = export_and_check(job, gated)
    if job.o.latency:
        from compress.prune.ftwt.deploy import gated_vs_dense_latency

        result["latency"] = gated_vs_dense_latency(gated, dense, run.file("latency"), seed=job.seed)
    if job.o.gather_latency:
        from compress.prune.ftwt.execute import gather_vs_dense_latency

        n = min(64, len(test))
        result["gather_latency"] = gather_vs_dense_latency(gated.module, dense.module, test.images[:n], seed=job.seed)
    run.write_json("metrics.json", {k: v for k, v in result.items() if k != "history"})
    run.write_json("history.json", result["history"])
    run.save_manifest()
    result["out"] = str(run.path)


def export_and_check(job: _Job, gated: Any) -> dict[str, Any]:
    """ONNX export with in-graph gates, parity on ONNX Runtime and (when installed) OpenVINO."""
    from compress.core.errors import MissingDependency
    from compress.prune.ftwt.deploy import export_gated, onnx_parity

    path, images = job.run.file("model.onnx"), job.test.images[:128]
    ex = export_gated(gated, path)
    job.run.add_output(path)
    par = onnx_parity(gated, path, images)
    res: dict[str, Any] = {"onnx": ex, "parity": par}
    try:
        res["parity_openvino"] = onnx_parity(gated, path, images, runtime="openvino")
    except MissingDependency as err:
        res["parity_openvino"] = {"runtime": "openvino", "skipped": str(err)}
    job.log(
        f"ONNX export with in-graph gates ({ex['greater_ops']} Greater ops); ORT parity max rel err "
        f"{par['max_rel_err']:.2e}, top-1 agreement {par['top1_agreement']:.4f}"
    )
    return res


def plot_histogram(result: dict[str, Any], path: Path) -> Path:
    """The per-image FLOPs reduction histogram (with p10/p50/p90 marked) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compress.core.runs import atomic_write_png

    h = result["input_dependence"]["histogram"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.stairs(h["counts"], [100 * e for e in h["edges"]], fill=True, alpha=0.6)
    for q in ("p10", "p50", "p90"):
        ax.axvline(100 * result[f"flops_reduction_{q}"], ls="--", lw=0.8, color="k")
    ax.set_xlabel("per-image FLOPs reduction (%)  (dashed: p10 / p50 / p90)")
    ax.set_ylabel("test images")
    ax.set_title(f"FTWT r={result['mass']} {result['mode']}: mean {100 * result['flops_reduction_mean']:.1f}%")
    fig.tight_layout()
    atomic_write_png(fig, path, dpi=100)
    plt.close(fig)
    return path


def prune_ftwt(
    *,
    model: Any,
    data: Any,
    epochs: int,
    mass: float | None = None,
    mode: str | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    weights: str | Path | None = None,
    subnet: Any = None,
    progress: bool = True,
    **opts: Any,
) -> dict[str, Any]:
    """Put FTWT gates on ``model``, train them on ``data`` and report top-1 and per-sample FLOPs.

    ``mass`` is the heatmap-mass threshold r in (0, 1] (default :data:`~compress.prune.ftwt.DEFAULT_MASS`);
    ``mode`` is ``decoupled`` (the predictor sees a detached input; default) or ``joint``. ``opts``
    are :class:`FtwtOptions`. With ``out``, writes ``model/`` (a model directory that reloads with the
    gates), ``metrics.json``, ``history.json``, ``per_sample_macs.npy``, ``flops_hist.png``,
    ``model.onnx`` (gates in-graph) and ``manifest.json``; training checkpoints there and resumes.
    Returns a JSON-able dict with at least ``top1_before``, ``top1_after``, ``flops_reduction_mean``,
    ``flops_reduction_p10/p50/p90``, ``mask_entropy_mean`` and ``input_dependence``.
    """
    o = validate_options(epochs, mass, mode, opts, out=out)

    import torch

    from compress.models import LoadedModel
    from compress.nn.evaluate import top1
    from compress.prune.ftwt.accounting import measure_flops
    from compress.prune.ftwt.source import TRANSFORM_NAME
    from compress.prune.ftwt.wrap import insert_gates

    if o.threads:
        torch.set_num_threads(o.threads)
    log = (lambda s: print(s, file=sys.stderr)) if progress else (lambda s: None)
    job = _Job(o=o, epochs=epochs, seed=seed, progress=progress, log=log)
    load_inputs(job, model, data, weights=weights, subnet=subnet)
    open_run(job, out, weights=weights)
    lm = job.lm
    module = copy.deepcopy(lm.module) if isinstance(model, LoadedModel) else lm.module  # never mutate the caller's
    torch.manual_seed(seed)
    pretrain_dense(job, module)
    dense = copy.deepcopy(module).eval()
    before = {"top1": top1(module, job.test.images, job.test.labels, batch_size=512)}
    before["acc"] = measure_flops(module, job.test.images)
    log(f"before: top1={before['top1']:.4f}, dense MACs/sample={before['acc']['dense_macs']:,}")

    module, sites = insert_gates(module, example=job.ds.val.images[:8], pool=o.pool, softmax=o.softmax, mode=o.mode)
    log(f"gated {len(sites)} Conv-BN(-act) layers ({o.mode}, mass r={o.mass})")
    history = train_gates(job, module)
    top1, acc, per_sample = measure_gated(job, module)
    log(
        f"after: top1={top1:.4f}, FLOPs reduction mean={acc['flops_reduction_mean']:.3f} "
        f"(p10 {acc['flops_reduction_p10']:.3f}, p90 {acc['flops_reduction_p90']:.3f}), "
        f"mask entropy {acc.get('input_dependence', {}).get('mask_entropy_mean', 0.0):.3f} bit"
    )
    record = {"name": TRANSFORM_NAME, "kind": "gate", "sites": sites, "pool": o.pool, "softmax": o.softmax}
    record |= {"mode": o.mode, "mass": o.mass}
    gated = LoadedModel(
        module=module,
        input_shape=lm.input_shape,
        num_classes=lm.num_classes,
        source=lm.source,
        dataset=job.ds.info.name,
        transforms=[*lm.transforms, record],
        metrics={"top1": top1, "flops_reduction_mean": acc["flops_reduction_mean"]},
    )
    result = build_result(job, sites=sites, history=history, before=before, after={"top1": top1, "acc": acc})
    if job.run is not None:
        dense_lm = LoadedModel(
            module=dense, input_shape=lm.input_shape, num_classes=lm.num_classes, source=lm.source,
            transforms=list(lm.transforms),
        )  # fmt: skip
        write_outputs(job, result, gated, dense_lm, per_sample)
    return result


if "ftwt" not in METHODS:
    METHODS.add("ftwt", prune_ftwt)
