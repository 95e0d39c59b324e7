"""Preflight: before building a target, check every ONNX op the model produces against what that
target runs, and name each offending layer by its PyTorch module path.

- onnxruntime: the CPU execution provider's registered kernels (``get_all_opkernel_def``) for the
  op's schema version (ONNX function ops such as HardSwish are expanded by ORT when no kernel
  exists), then an actual session creation.
- openvino: the ONNX frontend's partial conversion (ops without a conversion rule), then
  ``Core().query_model`` on the device (ops the device plugin cannot run).
- tensorrt: the installed TensorRT's ONNX parser where present (``supports_model``); otherwise
  the documented operator table for the named/installed version (:mod:`compress.export.trt_ops`), plus
  DLA restrictions with ``dla_core``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compress.core.errors import Failure, UsageError


@dataclass
class Offender:
    op: str
    node: str
    module: str
    reason: str
    domain: str = ""

    def describe(self) -> str:
        where = f"layer '{self.module}'" if self.module else "no module recorded"
        op = f"{self.domain}.{self.op}" if self.domain else self.op
        return f"{op} in {where} (node {self.node}): {self.reason}"


@dataclass
class PreflightReport:
    target: str
    checked: str
    passed: bool
    opset: int
    ops: dict[str, int]
    offenders: list[Offender] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["offenders"] = [asdict(o) | {"message": o.describe()} for o in self.offenders]
        return d

    def summary(self) -> str:
        if self.passed:
            return f"preflight {self.target}: ok ({self.checked})"
        listed = "; ".join(o.describe() for o in self.offenders[:5])
        more = f"; +{len(self.offenders) - 5} more" if len(self.offenders) > 5 else ""
        return f"preflight failed for {self.target} ({self.checked}): {len(self.offenders)} unsupported: {listed}{more}"


def _module(node: Any) -> str:
    for p in node.metadata_props:
        if p.key == "module":
            return p.value
    from compress.export.onnx import _module_of

    return _module_of(node) or ""


def _load(path: str | Path) -> Any:
    import onnx

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"ONNX file not found: {p}")
    try:
        return onnx.load(str(p))
    except Exception as err:  # noqa: BLE001
        raise UsageError(
            f"{p}: not a readable ONNX model ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        ) from None


def _opsets(model: Any) -> dict[str, int]:
    return {("" if o.domain in ("", "ai.onnx") else o.domain): int(o.version) for o in model.opset_import}


def _offender(node: Any, reason: str) -> Offender:
    return Offender(
        op=node.op_type,
        node=node.name or (node.output[0] if node.output else "?"),
        module=_module(node),
        reason=reason,
        domain=node.domain if node.domain not in ("", "ai.onnx") else "",
    )


# ---- onnxruntime -------------------------------------------------------------------------------


def _check_ort(model: Any, path: Path, device: str | None) -> tuple[str, list[Offender], list[str]]:
    import onnx
    import onnxruntime as ort
    from onnxruntime.capi import _pybind_state as C

    provider = {
        "cuda": "CUDAExecutionProvider",
        "gpu": "CUDAExecutionProvider",
        "tensorrt": "TensorrtExecutionProvider",
    }.get((device or "cpu").lower(), "CPUExecutionProvider")
    kernels: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for k in C.get_all_opkernel_def():
        if k.provider == provider:
            dom = "" if k.domain in ("", "ai.onnx") else k.domain
            kernels.setdefault((dom, k.op_name), []).append(tuple(k.version_range))
    opsets = _opsets(model)
    offenders = []
    for n in model.graph.node:
        dom = "" if n.domain in ("", "ai.onnx") else n.domain
        ranges = kernels.get((dom, n.op_type))
        try:
            schema = onnx.defs.get_schema(n.op_type, opsets.get(dom, 1), dom)
        except Exception:  # noqa: BLE001 - custom/contrib domains may have no ONNX schema
            schema = None
        since = schema.since_version if schema is not None else opsets.get(dom, 1)
        # ONNX function ops (HardSwish, Gelu, ...) without a kernel are expanded into their body by ORT
        expands = schema is not None and (schema.has_function or schema.has_context_dependent_function)
        if not ranges:
            if not expands:
                offenders.append(_offender(n, f"no {provider} kernel in onnxruntime {ort.__version__}"))
            continue
        if not any(lo <= since <= hi for lo, hi in ranges) and not expands:
            offenders.append(_offender(n, f"{provider} has no kernel for opset version {since}"))
    warnings: list[str] = []
    if not offenders:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        try:
            ort.InferenceSession(str(path), so, providers=[provider] if provider != "CPUExecutionProvider" else None)
        except Exception as err:  # noqa: BLE001
            msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            node = next((n for n in model.graph.node if n.name and n.name in msg), None)
            offenders.append(
                _offender(node, msg[:300]) if node else Offender(op="?", node="?", module="", reason=msg[:300])
            )
    return f"onnxruntime {ort.__version__} {provider} kernels + session", offenders, warnings


# ---- openvino ----------------------------------------------------------------------------------


def _check_ov(model: Any, path: Path, device: str | None) -> tuple[str, list[Offender], list[str]]:
    from compress.core.extras import require

    ov = require("openvino", what="the OpenVINO preflight")

    by_name = {n.name: n for n in model.graph.node if n.name}
    by_out = {o: n for n in model.graph.node for o in n.output}
    fe = ov.frontend.FrontEndManager().load_by_framework("onnx")
    input_model = fe.load(str(path))  # keep a reference: the partial model's nodes point into it
    partial = fe.convert_partially(input_model)
    offenders = []
    for op in partial.get_ordered_ops():
        if op.get_type_name() == "ONNXFrameworkNode":
            name = op.get_friendly_name()
            node = by_name.get(name) or by_out.get(name)
            reason = f"OpenVINO {ov.get_version().split('-')[0]} has no conversion rule for it"
            if node is not None:
                offenders.append(_offender(node, reason))
            else:
                attrs = op.get_attributes()
                offenders.append(
                    Offender(
                        op=str(attrs.get("ONNX_META_type", "?")),
                        node=name,
                        module="",
                        reason=reason,
                        domain=str(attrs.get("ONNX_META_domain", "")),
                    )
                )
    dev = (device or "CPU").upper()
    checked = f"OpenVINO {ov.get_version().split('-')[0]} ONNX frontend + query_model({dev})"
    if offenders:
        return checked, offenders, []
    core = ov.Core()
    if dev not in core.available_devices:
        raise UsageError(
            f"OpenVINO device '{dev}' is not available here (available: {', '.join(core.available_devices)})"
        )
    try:
        converted = ov.convert_model(str(path))
    except Exception as err:  # noqa: BLE001 - conversion rule exists but the node cannot be converted
        return checked, _ov_conversion_offenders(str(err), model), []
    supported = core.query_model(converted, dev)
    for op in converted.get_ordered_ops():
        if op.get_type_name() in ("Parameter", "Result", "Constant"):
            continue
        name = op.get_friendly_name()
        if name not in supported:
            node = by_name.get(name) or by_out.get(name)
            reason = f"the {dev} plugin cannot run OpenVINO op {op.get_type_name()}"
            offenders.append(
                _offender(node, reason)
                if node
                else Offender(op=op.get_type_name(), node=name, module="", reason=reason)
            )
    return checked, offenders, []


def _ov_conversion_offenders(text: str, model: Any) -> list[Offender]:
    """Parse OpenVINO's "Conversion failed for OP" report into offenders (node names where given)."""
    import re

    by_name = {n.name: n for n in model.graph.node if n.name}
    found: list[Offender] = []
    for m in re.finditer(r"ONNX node '<Node\((\w+)\): ([^>]+)>'", text):
        node = by_name.get(m.group(2))
        reason = (
            "OpenVINO failed to convert it: "
            + next(
                (ln.strip() for ln in text[m.end() :].splitlines() if "failed" in ln or "incompatible" in ln),
                "conversion error",
            )[:200]
        )
        found.append(
            _offender(node, reason) if node else Offender(op=m.group(1), node=m.group(2), module="", reason=reason)
        )
    if not found:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        found.append(
            Offender(
                op="?", node="?", module="", reason="OpenVINO conversion failed: " + (lines[-1] if lines else "?")[:300]
            )
        )
    return found


# ---- tensorrt ----------------------------------------------------------------------------------


def _check_trt(
    model: Any,
    path: Path,
    *,
    version: str | None,
    dla_core: int | None,
    dla_gpu_fallback: bool,
    precision: str,
    dynamic: bool,
) -> tuple[str, list[Offender], list[str]]:
    from compress.export.trt_ops import DLA_OPS, MIN_OPSET, table_for

    warnings: list[str] = []
    offenders: list[Offender] = []
    installed = None
    try:
        import tensorrt as trt

        installed = trt.__version__
    except ImportError:
        trt = None
    if installed and version and version.split(".")[0] != installed.split(".")[0]:
        warnings.append(
            f"checked against the documented table for TensorRT {version}; TensorRT {installed} is installed"
        )
    major, source, max_opset, ops = table_for(version or installed)
    opset = _opsets(model).get("", 0)
    checked = f"{source} (opset {MIN_OPSET}-{max_opset})"
    if not MIN_OPSET <= opset <= max_opset:
        offenders.append(
            Offender(
                op="(model)",
                node="-",
                module="",
                reason=f"opset {opset} is outside TensorRT {major}'s "
                f"supported range {MIN_OPSET}-{max_opset}; export with --opset {min(max(opset, MIN_OPSET), max_opset)}",
            )
        )
    for n in model.graph.node:
        dom = "" if n.domain in ("", "ai.onnx") else n.domain
        if dom:
            offenders.append(_offender(n, f"custom domain '{dom}' needs a TensorRT plugin"))
        elif n.op_type not in ops:
            offenders.append(_offender(n, f"not supported by the TensorRT {major} ONNX parser"))
    if trt is not None and not (version and version.split(".")[0] != installed.split(".")[0]):
        try:
            builder = trt.Builder(trt.Logger(trt.Logger.ERROR))
            network = builder.create_network(
                0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
            )
            parser = trt.OnnxParser(network, trt.Logger(trt.Logger.ERROR))
            if not parser.parse_from_file(str(path)):
                for i in range(parser.num_errors):
                    e = parser.get_error(i)
                    name = e.node_name() if hasattr(e, "node_name") else ""
                    node = next((n for n in model.graph.node if n.name == name), None)
                    reason = f"TensorRT {installed} parser: {e.desc()}"
                    offenders.append(
                        _offender(node, reason)
                        if node
                        else Offender(op="?", node=name or "?", module="", reason=reason)
                    )
            checked += f" + TensorRT {installed} ONNX parser"
        except Exception as err:  # noqa: BLE001 - no GPU visible etc.
            warnings.append(
                f"the installed TensorRT could not parse here ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
            )
    if dla_core is not None:
        checked += f" + DLA core {dla_core} restrictions"
        if precision not in ("fp16", "int8"):
            raise UsageError(f"the DLA runs fp16 or int8 only; add --precision fp16 (asked for {precision})")
        if dynamic:
            raise UsageError("the DLA needs static shapes; use --batch N with --dla")
        for n in model.graph.node:
            if n.op_type not in DLA_OPS and not n.domain:
                reason = "the DLA cannot run this layer" + (
                    "; it will fall back to the GPU"
                    if dla_gpu_fallback
                    else " (pass --dla-gpu-fallback to run it on the GPU)"
                )
                if dla_gpu_fallback:
                    warnings.append(_offender(n, reason).describe())
                else:
                    offenders.append(_offender(n, reason))
    return checked, offenders, warnings


def preflight(
    onnx_path: str | Path,
    target: str,
    *,
    precision: str = "fp32",
    device: str | None = None,
    trt_version: str | None = None,
    dla_core: int | None = None,
    dla_gpu_fallback: bool = False,
    dynamic: bool = False,
) -> PreflightReport:
    """Check ``onnx_path`` against ``target`` (``onnx``/``onnxruntime``, ``openvino``, ``tensorrt``).

    >>> preflight("run/model.onnx", "tensorrt", trt_version="10.3").passed  # doctest: +SKIP
    True
    """
    from compress.export.formats import FORMATS

    name = FORMATS.canonical(target)
    path = Path(onnx_path)
    model = _load(path)
    ops = dict(
        sorted(
            Counter(
                (f"{n.domain}." if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in model.graph.node
            ).items()
        )
    )
    if name == "onnx":
        checked, offenders, warnings = _check_ort(model, path, device)
    elif name == "openvino":
        checked, offenders, warnings = _check_ov(model, path, device)
    elif name == "tensorrt":
        checked, offenders, warnings = _check_trt(
            model,
            path,
            version=trt_version,
            dla_core=dla_core,
            dla_gpu_fallback=dla_gpu_fallback,
            precision=precision,
            dynamic=dynamic,
        )
    else:  # a format registered later without a preflight of its own
        raise UsageError(f"no preflight for format '{name}'")
    return PreflightReport(
        target=name,
        checked=checked,
        passed=not offenders,
        opset=_opsets(model).get("", 0),
        ops=ops,
        offenders=offenders,
        warnings=warnings,
    )


def require(report: PreflightReport) -> PreflightReport:
    """Raise :class:`Failure` (exit 1) with the offending layers if the report failed."""
    if not report.passed:
        raise Failure(report.summary())
    return report
