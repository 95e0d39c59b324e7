"""ONNX -> OpenVINO IR (``model.xml`` + ``model.bin``), fp32 or fp16-compressed weights.

``ov.save_model`` compresses weights to fp16 BY DEFAULT; here ``compress_to_fp16`` is set from the
precision (fp32/bf16 keep fp32 weights). The IR is compiled on CPU, and on GPU when OpenVINO lists
one, to verify it loads; the model's metadata is copied into the IR's ``rt_info`` (key ``compress``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.core.errors import Failure


def to_openvino(
    onnx_path: str | Path,
    out_dir: str | Path,
    *,
    precision: str = "fp32",
    metadata: dict[str, str] | None = None,
    verify: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Convert ``onnx_path`` to ``out_dir/model.xml`` + ``model.bin`` atomically.

    Returns ``{"xml", "bin", "compress_to_fp16", "compiled_on": [...], "version"}``.

    >>> to_openvino("run/model.onnx", "run/openvino", precision="fp16")  # doctest: +SKIP
    """
    from compress.core.extras import require

    ov = require("openvino", what="OpenVINO export")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as err:  # noqa: BLE001 - OpenVINO raises generic errors
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "No conversion rule" in ln), lines[-1] if lines else type(err).__name__)
        raise Failure(f"OpenVINO cannot convert {Path(onnx_path).name}: {detail}") from None
    for key, value in (metadata or {}).items():
        model.set_rt_info(str(value), ["compress", key])
    fp16 = precision == "fp16"
    _save_ir(ov, model, out, fp16=fp16, needed=Path(onnx_path).stat().st_size // (2 if fp16 else 1))
    compiled_on: list[str] = []
    if verify:
        from compress.export.runtimes import get_runner

        runner = get_runner("openvino")
        for dev in [d for d in ov.Core().available_devices if d.split(".")[0] in ("CPU", "GPU")]:
            hint = "fp32" if precision == "fp32" else ("fp16" if dev.startswith("GPU") else precision)
            with runner.load(out / "model.xml", device=dev, precision=hint, threads=threads):
                compiled_on.append(dev)
    return {
        "xml": out / "model.xml",
        "bin": out / "model.bin",
        "compress_to_fp16": fp16,
        "compiled_on": compiled_on,
        "version": ov.get_version(),
    }


IR_FILES = ("model.xml", "model.bin")


def _save_ir(ov: Any, model: Any, out: Path, *, fp16: bool, needed: int) -> None:
    """Write ``model.xml`` + ``model.bin`` as one unit: into a temp directory beside ``out``, which then
    replaces ``out`` (a reader sees the old pair or the new one, never half of each).

    OpenVINO's serializer reports a failed write as ``basic_ios::clear: iostream error``; that is
    mapped to its cause (disk full with the free space and about ``needed`` bytes, read-only,
    permission) when the file system shows one.
    """
    import contextlib

    from compress.core.errors import UsageError
    from compress.core.runs import atomic_dir, is_temp_name
    from compress.core.storage import map_stream_error

    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if p.name not in IR_FILES and not is_temp_name(p.name))
        if other:  # the directory is replaced as a whole: never take the user's files with it
            raise UsageError(f"{out} holds other files ({', '.join(other[:3])}); give OpenVINO IR its own directory")
    try:
        with atomic_dir(out) as tmp:
            try:
                ov.save_model(model, str(tmp / "model.xml"), compress_to_fp16=fp16)
            except RuntimeError as err:
                mapped = map_stream_error(err, path=out / "model.bin", needed=needed)
                if mapped is not None:
                    raise mapped from None
                lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
                raise Failure(
                    f"OpenVINO could not write the IR into {out}: {lines[-1] if lines else type(err).__name__}"
                ) from None
    except BaseException:
        with contextlib.suppress(OSError):
            out.rmdir()  # only if empty: no directory named like an artefact that holds none
        raise


# ---- format registration -----------------------------------------------------------------------


def _build(ctx: Any) -> Any:
    from compress.export.context import FormatArtifact

    res = to_openvino(
        ctx.onnx.path,
        ctx.out / "openvino",
        precision=ctx.config.precision,
        metadata=ctx.metadata,
        threads=ctx.config.threads,
    )
    notes = [f"weights stored as {'fp16' if res['compress_to_fp16'] else 'fp32'}"]
    return FormatArtifact(
        format="openvino",
        kind="openvino-ir",
        path=res["xml"],
        files=[res["xml"], res["bin"]],
        verified=[f"compiled on {d}" for d in res["compiled_on"]],
        parity_runtime="openvino",
        precision=ctx.config.precision,
        notes=notes,
        info={
            "compress_to_fp16": res["compress_to_fp16"],
            "openvino": res["version"],
            "compiled_on": res["compiled_on"],
        },
    )


def _register() -> None:
    from compress.export.formats import FORMATS, Format, register

    if "openvino" not in FORMATS:
        register(
            Format(
                name="openvino",
                aliases=("ov", "ir", "openvino-ir"),
                suffix=".xml",
                dtypes=("fp32", "fp16", "bf16"),
                dynamic_batch=True,
                needs_gpu=False,
                runtime="openvino",
                description="OpenVINO IR (xml+bin), fp32 or fp16-compressed weights, compiled on CPU/GPU to verify",
                build=_build,
            )
        )


_register()
