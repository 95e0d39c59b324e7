"""``export_model``: load -> ONNX -> preflight per target -> build each format -> parity -> manifest."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core.config import validate
from compress.core.errors import Failure, UsageError
from compress.core.runs import RunDir, sha256_file
from compress.export.context import ExportConfig, ExportContext, FormatArtifact


@dataclass
class ExportResult:
    out: Path
    model: dict[str, Any]
    onnx: dict[str, Any]
    formats: list[dict[str, Any]]
    preflight: list[dict[str, Any]] = field(default_factory=list)
    parity_inputs: str = ""

    @property
    def passed(self) -> bool:
        """False if any format's parity failed; formats that could not be checked here do not fail."""
        return all(f.get("passed") is not False for f in self.formats)

    def failures(self) -> list[str]:
        out = []
        for f in self.formats:
            if f.get("passed") is False:
                p = f.get("parity") or {}
                out.append(
                    f"{f['format']} ({f['precision']}): {p.get('reason') or p.get('error') or 'failed'} "
                    f"[max_abs_err {f.get('max_abs_err')}, max_rel_err {f.get('max_rel_err')}, "
                    f"top1_agreement {f.get('top1_agreement')}]"
                )
        return out

    def raise_for_failure(self) -> None:
        if not self.passed:
            raise Failure("parity failed: " + "; ".join(self.failures()) + f" (details: {self.out / 'export.json'})")

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "out": str(self.out),
            "passed": self.passed,
            "model": self.model,
            "onnx": self.onnx,
            "parity_inputs": self.parity_inputs,
            "preflight": self.preflight,
            "formats": self.formats,
        }


def _metadata(lm: Any, onnx_info: dict[str, Any] | None = None) -> dict[str, str]:
    from compress import __version__

    src = lm.source or {}
    subnet = src.get("subnet") or src.get("config")
    meta = {
        "compress.version": __version__,
        "compress.source_hash": lm.source_hash,
        "compress.source": json.dumps(src, sort_keys=True, default=str),
        "compress.input_shape": json.dumps(list(lm.input_shape)),
        "compress.num_classes": str(lm.num_classes),
        "compress.dataset": lm.dataset or "",
        "compress.predictions": json.dumps(lm.predictions or {}, sort_keys=True, default=str),
    }
    if subnet is not None:
        meta["compress.subnet"] = json.dumps(subnet, sort_keys=True, default=str)
    if lm.transforms:
        meta["compress.transforms"] = json.dumps([t.get("name") for t in lm.transforms])
    return meta


def export_model(
    model: Any,
    *,
    out: str | Path,
    config: ExportConfig | dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    command: str = "export",
    **options: Any,
) -> ExportResult:
    """Export ``model`` (a model reference for ``compress.models.load_model`` or a ``LoadedModel``)
    to every format in ``config.formats`` under ``out``, with preflight before and parity after.
    ``model_options`` go to ``load_model`` (e.g. ``num_classes``, ``image_size`` for ``timm:NAME``);
    ``options`` are :class:`ExportConfig` fields (or pass ``config``).

    The steps, each callable alone: :func:`resolve_config` and :func:`check_targets` (validation),
    :func:`load_source` (loading), :func:`export_onnx`, :func:`run_preflight` (checking),
    :func:`prepare_inputs`, :func:`build_format` (each format, with its parity) and
    :func:`write_result` (writing).

    Raises :class:`UsageError` (exit 2) for bad options/inputs and :class:`Failure` (exit 1) when
    preflight or an export fails. A parity failure does NOT raise: the result says so
    (``result.passed``), so callers can still write/print it; call ``result.raise_for_failure()``.

    >>> res = export_model("timm:resnet18", out="runs/r18", formats=["onnx", "ov"])  # doctest: +SKIP
    >>> res.formats[0]["max_rel_err"] < 1e-4  # doctest: +SKIP
    True
    """
    cfg = resolve_config(config, options)
    formats = check_targets(cfg)
    run = RunDir(out, command=command, seeds={"parity": cfg.seed})
    run.set("config", cfg.model_dump(mode="json"))
    lm, ref = load_source(model, model_options, run)
    meta = _metadata(lm)
    onnx_res = export_onnx(lm, cfg, run, meta)
    reports = run_preflight(onnx_res.path, formats, cfg, run) if cfg.preflight else []
    x, source, refs, calib = prepare_inputs(lm, cfg)
    meta["compress.parity_inputs"] = source
    ctx = ExportContext(
        model=lm,
        config=cfg,
        out=run.path,
        onnx=onnx_res,
        metadata=meta,
        parity_inputs=x,
        parity_reference=refs,
        calib_inputs=calib,
    )
    by_target = {r.target: r for r in reports}
    results = [build_format(f, ctx, run, preflight_report=by_target.get(f.name), source=source) for f in formats]
    result = ExportResult(
        out=run.path,
        model={
            "reference": ref,
            "source": lm.source,
            "source_hash": lm.source_hash,
            "input_shape": list(lm.input_shape),
            "num_classes": lm.num_classes,
            "dataset": lm.dataset,
        },
        onnx=onnx_res.to_json(),
        formats=results,
        preflight=[r.to_json() for r in reports],
        parity_inputs=source,
    )
    write_result(run, result)
    return result


def resolve_config(config: ExportConfig | dict[str, Any] | None, options: dict[str, Any]) -> ExportConfig:
    """Validation: ``config`` (a model or a dict) updated by keyword ``options``, or the options alone."""
    if config is None:
        return validate(ExportConfig, options, source="export options")
    if isinstance(config, dict):
        return validate(ExportConfig, {**config, **options}, source="export config")
    return config.model_copy(update=options) if options else config


def check_targets(cfg: ExportConfig) -> list[Any]:
    """Validation: the formats asked for, and the option combinations they cannot build (before any work)."""
    from compress.export.formats import check_capabilities, resolve_formats

    formats = resolve_formats(cfg.formats)
    check_capabilities(formats, precision=cfg.precision, dynamic=cfg.dynamic)
    names = [f.name for f in formats]
    if "openvino" in names:  # before minutes of ONNX export, not after (TensorRT may build elsewhere: bundle)
        from compress.core.extras import require

        require("openvino", what="OpenVINO export")
    if cfg.remote and "tensorrt" not in names:
        raise UsageError("--remote builds TensorRT engines on the device; add --format tensorrt")
    if cfg.dla_core is not None and "tensorrt" not in names:
        raise UsageError("--dla applies to TensorRT engines; add --format tensorrt")
    if cfg.dla_core is not None and (cfg.precision not in ("fp16", "int8") or cfg.dynamic):
        raise UsageError("the DLA runs fp16/int8 with static shapes: use --precision fp16 and --batch N with --dla")
    return formats


def load_source(model: Any, model_options: dict[str, Any] | None, run: RunDir) -> tuple[Any, str | None]:
    """Loading: the model (a reference or a ``LoadedModel``), recorded as the run's input."""
    from compress.models import LoadedModel, load_model

    lm = model if isinstance(model, LoadedModel) else load_model(str(model), **(model_options or {}))
    ref = str(model) if not isinstance(model, LoadedModel) else None
    if ref is not None:
        p = Path(ref)
        run.add_input("model", p / "model.safetensors" if p.is_dir() else (p if p.exists() else None), value=ref)
    run.add_input("model_source", value={"source": lm.source, "source_hash": lm.source_hash})
    return lm, ref


def export_onnx(lm: Any, cfg: ExportConfig, run: RunDir, meta: dict[str, str]) -> Any:
    """The ONNX file every format is built from."""
    from compress.export.onnx import to_onnx

    onnx_res = to_onnx(
        lm,
        run.path / "model.onnx",
        batch=cfg.batch,
        opset=cfg.opset,
        exporter=cfg.exporter,
        simplify=cfg.simplify,
        metadata=meta,
        seed=cfg.seed,
    )
    run.add_output(onnx_res.path, role="onnx (source of every format)", exporter=onnx_res.exporter)
    run.set("onnx_export", onnx_res.to_json())
    return onnx_res


def run_preflight(onnx_path: Path, formats: list[Any], cfg: ExportConfig, run: RunDir) -> list[Any]:
    """Checking before building: each target's preflight report; any failure raises (manifest saved)."""
    from compress.export.preflight import preflight

    reports = [
        preflight(
            onnx_path,
            f.name,
            precision=cfg.precision,
            trt_version=cfg.trt_version,
            dla_core=cfg.dla_core,
            dla_gpu_fallback=cfg.dla_gpu_fallback,
            dynamic=cfg.dynamic,
        )
        for f in formats
    ]
    run.write_json("preflight.json", [r.to_json() for r in reports])
    failed = [r for r in reports if not r.passed]
    if failed:
        run.save_manifest()
        raise Failure(" | ".join(r.summary() for r in failed) + f" (details: {run.path / 'preflight.json'})")
    return reports


def prepare_inputs(lm: Any, cfg: ExportConfig) -> tuple[Any, str, Any, Any]:
    """Parity inputs and reference outputs (with ``cfg.parity``), and int8 calibration images.
    Returns (inputs, where they come from, reference outputs, calibration images)."""
    x, source, refs = None, "", None
    if cfg.parity:
        from compress.export.parity import parity_inputs, reference_outputs

        x, source = parity_inputs(lm, data=cfg.data, samples=cfg.samples, seed=cfg.seed)
        refs = reference_outputs(lm, x)
    calib = None
    if cfg.precision == "int8":
        import numpy as np

        name = cfg.data or lm.dataset
        if not name:
            raise UsageError("int8 needs calibration images: pass --data DATASET")
        from compress.data import load_dataset

        c, h, _w = lm.input_shape
        calib = (
            load_dataset(name, image_size=h, channels=c, seed=cfg.seed).calib.images[:512].numpy().astype(np.float32)
        )
    return x, source, refs, calib


def build_format(f: Any, ctx: ExportContext, run: RunDir, *, preflight_report: Any, source: str) -> dict[str, Any]:
    """One format: built from the ONNX file, its files recorded, and its parity (here or remote)."""
    art: FormatArtifact = f.build(ctx)
    for p in art.files:
        if Path(p).is_file() and p != ctx.onnx.path:
            run.add_output(p, format=f.name, kind=art.kind)
    entry: dict[str, Any] = {
        "format": f.name,
        "kind": art.kind,
        "path": str(art.path),
        "sha256": sha256_file(art.path) if Path(art.path).is_file() else None,
        "precision": art.precision,
        "max_abs_err": None,
        "max_rel_err": None,
        "top1_agreement": None,
        "passed": None,
        "parity": None,
        "verified": art.verified,
        "notes": art.notes,
        "files": {str(Path(p).relative_to(run.path)): sha256_file(p) for p in art.files if Path(p).is_file()},
        "preflight": preflight_report.to_json() if preflight_report is not None else None,
        "info": art.info,
    }
    cfg = ctx.config
    if cfg.parity and art.parity_runtime:
        from compress.export.parity import check_parity

        res = check_parity(
            art.path,
            runtime=art.parity_runtime,
            precision=art.precision,
            inputs=ctx.parity_inputs,
            reference=ctx.parity_reference,
            batches=[1, 4] if cfg.dynamic else [int(cfg.batch)],
            source=source,
            threads=cfg.threads,
        )
        entry.update(
            max_abs_err=res.max_abs_err,
            max_rel_err=res.max_rel_err,
            top1_agreement=res.top1_agreement,
            passed=res.passed,
            parity=res.to_json(),
        )
        if res.warning:
            entry["notes"].append(res.warning)
    elif art.info.get("remote_parity"):
        rp = art.info["remote_parity"]
        entry.update(
            max_abs_err=rp.get("max_abs_err"),
            max_rel_err=rp.get("max_rel_err"),
            top1_agreement=rp.get("top1_agreement"),
            passed=bool(rp.get("passed")),
            parity=rp,
        )
    return entry


def write_result(run: RunDir, result: ExportResult) -> None:
    """Writing: ``export.json`` and the manifest (whether parity passed is recorded, not raised)."""
    run.write_json("export.json", result.to_json())
    run.set("passed", result.passed)
    run.save_manifest()
