"""ONNX Runtime runner: CPU by default, CUDA / TensorRT execution providers where installed.

Options: ``threads`` (intra-op threads; inter-op is 1, sequential execution), ``graph_optimization``
(``disable|basic|extended|all``, default ``all``), ``providers`` (explicit provider list),
``device`` (``cpu`` | ``cuda`` | ``tensorrt``: picks the provider list).
Inputs and outputs are bound once with IOBinding; ``run`` copies into the bound input buffer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import Failure, MissingDependency, UsageError, unknown
from compress.export.runtimes.base import (
    ArtifactKind,
    Runner,
    Session,
    artifact_file,
    check_opts,
    check_precision,
    check_threads,
    concrete_shape,
)

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(bool)": np.bool_,
}
#: op types that make an ONNX graph quantized (QDQ from ``quantize_static`` or QOperator / integer ops)
QUANT_OPS = frozenset(
    {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger"}
)


def is_quantized_onnx(path: Path) -> bool:
    """True when the ONNX file has quantization ops (what ``compress quantize --runtime onnxruntime``
    writes): such a file runs in int8 whatever precision is asked for, so ``int8`` is its precision.

    Read with ``onnx`` (weights left out) where it is installed; a device that only has onnxruntime
    (a remote agent) scans the file for the op type names, which protobuf stores verbatim."""
    try:
        import onnx
    except ImportError:
        data = Path(path).read_bytes()
        return any(op.encode() in data for op in QUANT_OPS)
    model = onnx.load(str(path), load_external_data=False)
    return any(n.op_type in QUANT_OPS for n in model.graph.node)


_DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "gpu": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
_OPT_LEVELS = ("disable", "basic", "extended", "all")


class OrtSession(Session):
    runtime = "onnxruntime"

    def __init__(self, sess: Any, *, batch: int | None, settings: dict[str, Any], path: Path) -> None:
        import onnxruntime as ort

        self._sess = sess
        inputs = sess.get_inputs()
        if len(inputs) != 1:
            raise UsageError(f"{path.name} has {len(inputs)} inputs; the runners take single-input models")
        inp = inputs[0]
        self.input_name = inp.name
        self.input_shape = concrete_shape("onnxruntime", inp.shape, batch, what=path.name)
        self.input_dtype = np.dtype(_ORT_TYPES.get(inp.type, np.float32))
        self.output_names = [o.name for o in sess.get_outputs()]
        self.settings = settings
        self._in = np.zeros(self.input_shape, dtype=self.input_dtype)
        self._io = sess.io_binding()
        self._io.bind_cpu_input(self.input_name, self._in)
        self._outs: list[Any] = []
        b = self.input_shape[0]
        for o in sess.get_outputs():
            dims = [b if (i == 0 and not isinstance(d, int)) else d for i, d in enumerate(o.shape)]
            if all(isinstance(d, int) and d > 0 for d in dims):
                val = ort.OrtValue.ortvalue_from_shape_and_type(dims, _ORT_TYPES.get(o.type, np.float32))
                self._io.bind_ortvalue_output(o.name, val)
                self._outs.append(val)
            else:  # output shape only known after running: let ORT allocate it
                self._io.bind_output(o.name)
                self._outs.append(None)
        self._views = [v.numpy() if v is not None else None for v in self._outs]

    def bind(self, x: np.ndarray) -> None:
        np.copyto(self._in, self._check_input(x), casting="same_kind")

    def run_bound(self) -> float | None:
        self._sess.run_with_iobinding(self._io)
        return None

    def outputs(self) -> list[np.ndarray]:
        if all(v is not None for v in self._views):
            return list(self._views)  # type: ignore[arg-type]
        got = self._io.get_outputs()
        return [v if v is not None else got[i].numpy() for i, v in enumerate(self._views)]

    def close(self) -> None:
        self._io = None
        self._sess = None


class OrtRunner(Runner):
    name = "onnxruntime"
    aliases = ("ort", "onnx-runtime")
    suffixes = (".onnx",)
    kind = ArtifactKind("onnx", "an ONNX model", suffixes=(".onnx",), files=("model.onnx",))
    reads = ("onnx", "model-ref")  # a model reference is exported to ONNX in a temp dir
    extra = "pip install onnxruntime (or onnxruntime-gpu for CUDA)"

    module = "onnxruntime"

    def info(self) -> dict[str, Any]:
        if not self.available():
            return self.unavailable_info()
        import onnxruntime as ort

        return {
            "runtime": self.name,
            "available": True,
            "version": ort.__version__,
            "providers": ort.get_available_providers(),
            "device": ort.get_device(),
            "defaults": {"graph_optimization": "all", "inter_op_threads": 1, "execution_mode": "sequential"},
        }

    def load(
        self,
        artifact: Any,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        device: str | None = None,
        batch: int | None = None,
        **opts: Any,
    ) -> OrtSession:
        if not self.available():
            raise MissingDependency(f"onnxruntime is not installed: {self.extra}")
        import onnxruntime as ort

        check_opts(self.name, opts, ("graph_optimization", "providers"))
        check_threads(threads)
        path = artifact_file(self.name, artifact, self.suffixes, names=("model.onnx",))
        level = str(opts.get("graph_optimization", "all")).lower()
        if level not in _OPT_LEVELS:
            raise unknown("graph optimisation level", level, _OPT_LEVELS)
        providers = opts.get("providers")
        if providers is None:
            dev = (device or "cpu").lower()
            if dev not in _DEVICE_PROVIDERS:
                raise unknown("onnxruntime device", dev, _DEVICE_PROVIDERS)
            providers = _DEVICE_PROVIDERS[dev]
            if providers[0] not in ort.get_available_providers():
                raise UsageError(
                    f"onnxruntime here has no {providers[0]} (available: "
                    f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu or use device=cpu"
                )
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or 0
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        so.log_severity_level = 3
        try:
            sess = ort.InferenceSession(str(path), so, providers=list(providers))
        except Exception as err:  # noqa: BLE001 - ORT raises several exception types
            raise Failure(f"onnxruntime cannot load {path.name}: {str(err).strip().splitlines()[0]}") from None
        in_type = sess.get_inputs()[0].type
        model_precision = {"tensor(float)": "fp32", "tensor(float16)": "fp16"}.get(in_type, "fp32")
        if str(precision).lower() == "int8":  # a property of the file (quantize it first), not a session option
            check_precision(self.name, precision, ("int8",))
            if not is_quantized_onnx(path):
                raise UsageError(
                    f"{path.name} is not quantized (no QuantizeLinear/DequantizeLinear): int8 on onnxruntime runs a "
                    f"quantized ONNX; make one with `compress quantize {path} --runtime onnxruntime --data DATASET`"
                )
            model_precision = "int8"
        else:
            check_precision(self.name, precision, (model_precision,))
        settings = {
            "threads": threads,
            "intra_op_threads": threads or 0,
            "inter_op_threads": 1,
            "graph_optimization": level,
            "providers": sess.get_providers(),
            "precision": model_precision,
            "device": (device or "cpu").lower(),
        }
        return OrtSession(sess, batch=batch, settings=settings, path=path)
