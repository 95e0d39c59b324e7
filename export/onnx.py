"""PyTorch -> ONNX: the dynamo exporter by default, the legacy TorchScript exporter as fallback.

The file is a single ``.onnx`` (``external_data=False``; models over 2 GB are refused with a clear
error), optionally simplified with onnxslim (kept only if outputs are unchanged), checked with
``onnx.checker`` and stamped with metadata properties. Every node carries a ``module`` metadata
property (the PyTorch module path that produced it) so preflight can name offending layers.
"""

from __future__ import annotations

import ast
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compress.core.errors import Failure, UsageError
from compress.core.runs import atomic_path
from compress.core.storage import STORAGE_ERRNOS, map_stream_error

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 18
MAX_PROTO_BYTES = 2 * 1024**3 - 1


@dataclass
class OnnxExport:
    path: Path
    exporter: str  # "dynamo" or "legacy": the one that produced the file
    opset: int
    dynamic_batch: bool
    input_shape: tuple[int, ...]  # (batch or -1, C, H, W)
    simplified: bool
    notes: list[str] = field(default_factory=list)
    fallback_reason: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "exporter": self.exporter,
            "opset": self.opset,
            "dynamic_batch": self.dynamic_batch,
            "input_shape": list(self.input_shape),
            "simplified": self.simplified,
            "notes": self.notes,
            "fallback_reason": self.fallback_reason,
            "seconds": round(self.seconds, 3),
        }


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return (text.splitlines()[0] if text else type(err).__name__)[:300]


def _export_dynamo(module: Any, x: Any, path: Path, *, opset: int, dynamic: bool) -> None:
    import torch

    kw: dict[str, Any] = {}
    if dynamic:
        kw["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    torch.onnx.export(
        module,
        (x,),
        str(path),
        dynamo=True,
        external_data=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        verbose=False,
        **kw,
    )


def _export_legacy(module: Any, x: Any, path: Path, *, opset: int, dynamic: bool) -> None:
    import torch

    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic else None
    torch.onnx.export(
        module,
        (x,),
        str(path),
        dynamo=False,
        opset_version=min(opset, 20),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=axes,
        do_constant_folding=True,
    )


def _module_of(node: Any) -> str | None:
    """The PyTorch module path recorded for an ONNX node by either exporter."""
    for p in node.metadata_props:
        if p.key == "module":
            return p.value
        if p.key == "pkg.torch.onnx.name_scopes":
            try:
                scopes = ast.literal_eval(p.value)
            except (ValueError, SyntaxError):
                continue
            mods = [s for s in scopes[:-1] if s]
            return mods[-1] if mods else ""
    # legacy exporter: node names like "/layer1/layer1.0/conv1/Conv"
    if node.name.startswith("/"):
        parts = [s for s in node.name.split("/")[1:-1] if s]
        return parts[-1] if parts else ""
    return None


def module_map(model: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(node name -> module, output tensor name -> module) for every node that has one."""
    by_node: dict[str, str] = {}
    by_out: dict[str, str] = {}
    for n in model.graph.node:
        mod = _module_of(n)
        if mod is None:
            continue
        if n.name:
            by_node[n.name] = mod
        for o in n.output:
            by_out[o] = mod
    return by_node, by_out


def tag_modules(model: Any, maps: tuple[dict[str, str], dict[str, str]]) -> None:
    """Replace bulky exporter metadata by one ``module`` property per node."""
    by_node, by_out = maps
    for n in model.graph.node:
        mod = by_node.get(n.name)
        if mod is None:
            mod = next((by_out[o] for o in n.output if o in by_out), None)
        del n.metadata_props[:]  # stack traces and fx dumps make the file large; the module path is enough
        if mod is not None:
            e = n.metadata_props.add()
            e.key, e.value = "module", mod


def set_metadata(model: Any, props: dict[str, Any]) -> None:
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        if key in existing:
            existing[key].value = text
        else:
            e = model.metadata_props.add()
            e.key, e.value = key, text


def read_metadata(path: str | Path) -> dict[str, str]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in m.metadata_props}


def _max_diff(a: Any, b: Any) -> float:
    import numpy as np

    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def _simplify(model: Any, x_np: Any, notes: list[str]) -> tuple[Any, bool]:
    """onnxslim, kept only if ORT gives the same outputs (within 1e-5 of the output scale)."""
    import numpy as np
    import onnxruntime as ort

    try:
        import onnxslim

        slim = onnxslim.slim(model)
    except Exception as err:  # noqa: BLE001 - onnxslim failures must not block export
        notes.append(f"onnxslim failed ({_first_line(err)}); kept the unsimplified graph")
        return model, False
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        run = lambda m: ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(  # noqa: E731
            None, {INPUT_NAME: x_np}
        )[0]
        before, after = run(model), run(slim)
    except Exception as err:  # noqa: BLE001
        notes.append(f"could not verify the onnxslim graph ({_first_line(err)}); kept the unsimplified graph")
        return model, False
    scale = float(np.max(np.abs(before))) or 1.0
    diff = _max_diff(before, after)
    if before.shape != after.shape or diff > 1e-5 * scale:
        notes.append(f"onnxslim changed the outputs (max abs diff {diff:.3g}); kept the unsimplified graph")
        return model, False
    notes.append(
        f"onnxslim: {len(model.graph.node)} -> {len(slim.graph.node)} nodes, outputs unchanged (max abs diff {diff:.3g})"
    )
    return slim, True


def to_onnx(
    model: Any,
    path: str | Path,
    *,
    batch: int | str = 1,
    opset: int | None = None,
    exporter: str = "auto",
    simplify: bool = True,
    metadata: dict[str, Any] | None = None,
    seed: int = 0,
) -> OnnxExport:
    """Export ``model`` (a LoadedModel, or a reference for ``load_model``) to one ``.onnx`` file.

    ``batch``: an int for a static batch, or ``"dynamic"``. ``exporter``: ``auto`` (dynamo, legacy
    on failure), ``dynamo`` or ``legacy``. Returns what was done, including which exporter wrote it.

    >>> to_onnx(load_model("timm:resnet18", num_classes=10, image_size=64), "m.onnx")  # doctest: +SKIP
    """
    import onnx
    import torch

    from compress.models import LoadedModel, load_model

    lm: LoadedModel = model if isinstance(model, LoadedModel) else load_model(str(model))
    dynamic = str(batch).lower() == "dynamic"
    if not dynamic:
        try:
            batch = int(batch)
        except (TypeError, ValueError):
            raise UsageError(f"batch must be a positive integer or 'dynamic', got {batch!r}") from None
        if batch < 1:
            raise UsageError(f"batch must be a positive integer or 'dynamic', got {batch}")
    if exporter not in ("auto", "dynamo", "legacy"):
        raise UsageError(f"exporter must be auto, dynamo or legacy, got '{exporter}'")
    opset = int(opset or DEFAULT_OPSET)
    if not 9 <= opset <= 23:
        raise UsageError(f"opset must be between 9 and 23, got {opset}")
    path = Path(path)
    module = lm.module.eval()
    g = torch.Generator().manual_seed(seed)
    example_b = 2 if dynamic else int(batch)
    x = torch.randn(example_b, *lm.input_shape, generator=g)
    t0 = time.perf_counter()
    used, reason = None, None
    with atomic_path(path) as tmp:
        tries = {"auto": ("dynamo", "legacy"), "dynamo": ("dynamo",), "legacy": ("legacy",)}[exporter]
        errors = []
        for kind in tries:
            try:
                # the exporters print progress on stdout; keep stdout for --json
                with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):
                    (_export_dynamo if kind == "dynamo" else _export_legacy)(
                        module, x, tmp, opset=opset, dynamic=dynamic
                    )
                used = kind
                break
            except Exception as err:  # noqa: BLE001 - both exporters raise many types
                if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
                    raise  # the disk, not the exporter: atomic_path names the file and the free space
                if (mapped := map_stream_error(err, path=path)) is not None:
                    raise mapped from None
                errors.append(f"{kind}: {_first_line(err)}")
        if used is None:
            raise Failure(f"ONNX export failed ({'; '.join(errors)}); run `compress export --debug` for the traceback")
        if len(errors):
            reason = errors[0]
        if tmp.with_name(tmp.name + ".data").exists():
            tmp.with_name(tmp.name + ".data").unlink()
            raise Failure("the exporter wrote external data: the model is over 2 GB and cannot be a single .onnx file")
        proto = onnx.load(str(tmp))
        maps = module_map(proto)
        notes: list[str] = []
        simplified = False
        if simplify:
            proto, simplified = _simplify(proto, x.numpy(), notes)
        from compress.export.onnx_rewrite import reorder_gelu

        n_gelu = reorder_gelu(proto)
        if n_gelu:
            notes.append(f"{n_gelu} GELU(s) reordered to (x*(1+erf))*0.5, the form ONNX Runtime fuses (exact)")
        tag_modules(proto, maps)
        set_metadata(proto, {"compress.exporter": used, **(metadata or {})})
        if proto.ByteSize() > MAX_PROTO_BYTES:
            raise Failure("the ONNX model is over 2 GB; a single-file export is not possible")
        onnx.save(proto, str(tmp))
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as err:  # noqa: BLE001
            raise Failure(f"onnx.checker rejected the exported model: {_first_line(err)}") from None
    shape = (-1 if dynamic else int(batch), *lm.input_shape)
    return OnnxExport(
        path=path,
        exporter=used,
        opset=opset,
        dynamic_batch=dynamic,
        input_shape=shape,
        simplified=simplified,
        notes=notes,
        fallback_reason=reason,
        seconds=time.perf_counter() - t0,
    )


# ---- format registration -----------------------------------------------------------------------


def _build(ctx: Any) -> Any:
    """The ``onnx`` format: the checked fp32 ONNX every export starts from; verified by loading it in ORT."""
    from compress.export.context import FormatArtifact
    from compress.export.runtimes import get_runner

    verified = ["onnx.checker (full_check)"]
    with get_runner("onnxruntime").load(ctx.onnx.path, threads=ctx.config.threads):
        verified.append("loaded in onnxruntime (CPUExecutionProvider)")
    return FormatArtifact(
        format="onnx",
        kind="onnx",
        path=ctx.onnx.path,
        files=[ctx.onnx.path],
        verified=verified,
        parity_runtime="onnxruntime",
        precision="fp32",
        notes=list(ctx.onnx.notes),
        info=ctx.onnx.to_json(),
    )


def _register() -> None:
    from compress.export.formats import FORMATS, Format, register

    if "onnx" not in FORMATS:
        register(
            Format(
                name="onnx",
                aliases=("onnxruntime", "ort"),
                suffix=".onnx",
                dtypes=("fp32",),
                dynamic_batch=True,
                needs_gpu=False,
                runtime="onnxruntime",
                description="single-file ONNX (dynamo exporter, legacy fallback), onnxslim-simplified, checked",
                build=_build,
            )
        )


_register()
