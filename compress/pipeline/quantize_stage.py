"""The pipeline's ``quantize`` stage (between prune and export) and what bench and the report take from it.

For each runtime of ``quantize: {precision, runtimes, max_drop}`` the pruned model is quantized by
:func:`compress.quantize` (calibration on the dataset's calib split, top-1 of fp32 and quantized on
its test split in the runtime, accuracy control keeping the most sensitive layers in fp32 until the
drop is at most ``max_drop`` points). When the search chose its subnet by a quantized latency table
(a device with ``precision: int8``) and pruning changed the model, the searched subnet itself is
quantized too (ONNX Runtime, no accuracy control): the bench stage times it, so the report can set
the search's prediction against a measurement of the very model it predicted.

The stage is cached like the others: its key covers the ``quantize`` config, the dataset, the seed
and the upstream stages' keys (a new pruning result re-quantizes; a new gate does not).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.core.errors import InternalError, UsageError
from compress.core.progress import Prefixed
from compress.pipeline.config import PipelineCfg
from compress.pipeline.stages import Context, Stage, _seam, canonical_devices, prune_device, pruned_model_ref

QUANTIZED = ("int8",)  # search precisions whose subnet the stage also quantizes for predicted-vs-measured


def search_precision(ctx: Context) -> tuple[str | None, str | None]:
    """(device, precision) the pruned model's subnet was searched at (``None`` without a search)."""
    if "search" not in ctx.records or ctx.cfg.model is not None:
        return None, None
    dev = prune_device(ctx)
    r = ctx.result("search")["devices"].get(dev) or {}
    return dev, r.get("precision")


class QuantizeStage(Stage):
    name = "quantize"
    needs = ("train", "profile", "search", "prune")

    def enabled(self, cfg: PipelineCfg) -> bool:
        return cfg.quantize is not None

    def config(self, cfg: PipelineCfg) -> Any:
        q = cfg.quantize
        return {
            "quantize": q.model_dump(mode="json") if q else None,
            "data": cfg.data.name,
            "seed": cfg.seed,
            "threads": cfg.bench.threads,
        }

    def run(self, ctx: Context, work: Path, resumed: bool) -> dict[str, Any]:
        from compress.quantize.api import quantize

        q = ctx.cfg.quantize
        if q is None:  # enabled() is False without a quantize section: the runner must not call run()
            raise InternalError("quantize stage run without a `quantize:` section")
        model = pruned_model_ref(ctx)
        threads = ctx.cfg.bench.threads or 1
        out: dict[str, Any] = {"precision": q.precision, "max_drop": q.max_drop, "runtimes": {}, "searched": None}

        say = Prefixed(ctx.progress, "  quantize")  # the quantizer's accuracy-control steps

        for rt in q.runtimes:
            ctx.log(
                f"  quantizing the final model for {rt} ({q.precision}"
                + (f", accuracy control: drop <= {q.max_drop:g} points)" if q.max_drop is not None else ")")
            )
            # the bench stage times fp32 and quantized models interleaved for its runtimes; the quantizer
            # times them itself only for a runtime bench does not cover
            b = ctx.cfg.bench
            res = quantize(
                model,
                out=work / rt,
                runtime=rt,
                precision=q.precision,
                data=ctx.cfg.data.name,
                calib_images=q.calib_images,
                max_drop=q.max_drop,
                method=q.method,
                threads=threads,
                time=rt not in b.runtimes,
                iterations=b.iterations,
                rounds=b.rounds,
                seed=ctx.cfg.seed,
                command="compress pipeline (quantize)",
                progress=say,
            )
            out["runtimes"][res.runtime] = _record(res, work)
            _seam(self.name, work)
        dev, prec = search_precision(ctx)
        pr = ctx.result("prune")
        if prec in QUANTIZED and pr.get("method") != "none":
            # the search predicted the *unpruned* subnet at int8: quantize that one too, to measure it
            rt = next(d["runtime"] for d in canonical_devices(ctx.cfg) if d["name"] == dev)
            if rt not in ("onnxruntime", "openvino"):
                raise UsageError(
                    f"search ran at {prec} on {dev} with runtime {rt}; the pipeline can measure the "
                    f"quantized searched subnet on onnxruntime or openvino only"
                )
            ctx.log(f"  quantizing the searched subnet ({prec}, {rt}) to check the search's {prec} prediction")
            res = quantize(
                pr["source"],
                out=work / "searched",
                runtime=rt,
                precision=prec,
                data=ctx.cfg.data.name,
                calib_images=q.calib_images,
                max_drop=None,
                method=q.method,
                threads=threads,
                time=False,
                seed=ctx.cfg.seed,
                command="compress pipeline (quantize searched subnet)",
                progress=say,
            )
            out["searched"] = {"device": dev, **_record(res, work)}
        return out


def _record(res: Any, work: Path) -> dict[str, Any]:
    d: dict[str, Any] = dict(res.to_json())
    d["path"] = str(Path(res.path).resolve().relative_to(work.resolve()))
    return d


def summary_section(ctx: Context) -> dict[str, Any]:
    """``summary.json["quantization"]``: per runtime, top-1 fp32 vs quantized and the drop (what the
    ``max_quant_drop`` gate reads), the quantizer's own timing, and the bench stage's interleaved
    medians of the fp32 and quantized final models where it timed both."""
    if "quantize" not in ctx.records:
        return {}
    r = ctx.result("quantize")
    items = ctx.result("bench")["items"] if "bench" in ctx.records else {}
    out = {}
    for rt, q in r["runtimes"].items():
        f32, qm = items.get(f"final:{rt}"), items.get(f"final-{r['precision']}:{rt}")
        bench = None
        if f32 and qm:
            bench = {
                "median_ms_fp32": f32["median_ms"],
                "median_ms_quant": qm["median_ms"],
                "speedup": f32["median_ms"] / qm["median_ms"],
                "drift_status": qm.get("drift_status"),
            }
        out[rt] = {
            k: q.get(k)
            for k in (
                "precision",
                "top1_fp32",
                "top1_quant",
                "drop_points",
                "top1_agreement",
                "fp32_layers",
                "median_ms_fp32",
                "median_ms_quant",
                "speedup",
                "drift",
                "calib_images",
            )
        } | {"bench": bench}
    return out
