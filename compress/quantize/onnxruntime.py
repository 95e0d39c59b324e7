"""INT8 with ONNX Runtime's quantizer: ``quant_pre_process`` then ``quantize_static`` (QDQ).

The low-level entry point is :func:`quantize_onnx_int8` (an fp32 ONNX file in, a QDQ ONNX file
out); the latency tables (``compress.latency.quantized``), the pipeline and :func:`compress.quantize`
all call it, so every int8 model of the project is made the same way.

Choices, and why:

- **QDQ format, per-channel weights.** QDQ (QuantizeLinear/DequantizeLinear pairs around float ops)
  is what every runtime here consumes: ONNX Runtime fuses DQ -> Conv -> Q into ``QLinearConv``,
  OpenVINO's low-precision transformations read the same pairs, and TensorRT builds an explicitly
  quantized engine from them. Per-channel weight scales cost nothing at run time and keep depthwise
  and merged (reparameterized) convolutions, whose channels differ in range by orders of magnitude,
  from collapsing to a few levels.
- **``quant_pre_process`` first** (symbolic shape inference + ORT's basic graph optimizations, e.g.
  Conv+BatchNorm folding), as ORT's documentation asks: calibration then sees the graph that will
  run, and a BatchNorm is not quantized as a separate op. Node names in ``exclude_nodes`` refer to
  this pre-processed graph; :func:`quantizable_nodes` lists them.
- **U8S8 for the CPU** (uint8 activations, int8 weights), not ORT's default S8S8: measured on this
  AVX512-VNNI CPU (resnet18, 224 px, one thread), U8S8 QDQ lets ORT fuse all 20 convolutions into
  ``QLinearConv`` and the 8 residual adds into ``QLinearAdd`` (8.5 ms), while with S8S8 activations
  11 convolutions stay as DQ -> float Conv -> Q (22 ms, no faster than fp32's 25 ms). On x86 CPUs
  without VNNI, U8S8 can saturate the 16-bit accumulator of ``vpmaddubsw``, so weights are then
  quantized with 7 bits (``reduce_range``), as ORT's documentation advises.
- **Symmetric S8S8 for TensorRT** (:func:`quantize_onnx_int8_tensorrt`): explicit quantization in
  TensorRT accepts only int8 Q/DQ with zero points of 0.
- **Calibration methods** ``minmax | entropy | percentile`` map to ORT's ``CalibrationMethod``.
- **Refusals** (a :class:`~compress.core.errors.UsageError`, nothing written): a model that is already
  quantized (QuantizeLinear/DequantizeLinear, QLinear*, *Integer ops) and a model with nothing to
  quantize (no Conv/ConvTranspose/Gemm/MatMul left after ``exclude_nodes``).
- The output is written atomically (temporary file beside it, then renamed).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import Failure, MissingDependency, UsageError, unknown

#: user-facing calibration method -> onnxruntime.quantization.CalibrationMethod member
METHODS: dict[str, str] = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
#: ops that carry weights: a model without any of them has nothing worth quantizing
WEIGHTED_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: ops that mark a model as already quantized (QDQ or QOperator format, or dynamic/integer ops)
_QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "ConvInteger",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
    }
)
#: percentile kept by the percentile calibrator (ORT's default 99.999 clips almost nothing on small sets)
PERCENTILE = 99.99


def _ort_quantization() -> Any:
    try:
        import onnxruntime.quantization as q
    except ImportError as err:  # pragma: no cover - onnxruntime is a core dependency
        raise MissingDependency(f"INT8 with ONNX Runtime needs onnxruntime ({err}); pip install onnxruntime") from None
    return q


def quantized_ops(model: Any) -> list[str]:
    """Op types in ``model`` (an ``onnx.ModelProto``) that show it is already quantized."""
    found = set()
    for node in model.graph.node:
        if node.op_type in _QUANTIZED_OPS or node.op_type.startswith("QLinear"):
            found.add(node.op_type)
    return sorted(found)


def check_not_quantized(model: Any, *, what: str) -> None:
    ops = quantized_ops(model)
    if ops:
        raise UsageError(
            f"{what} is already quantized (it has {', '.join(ops[:4])} nodes); "
            "quantize the fp32 model it was made from instead"
        )


def _load(path: Path) -> Any:
    import onnx

    if not path.is_file():
        raise UsageError(f"ONNX model not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - any parse error is the file's fault
        raise UsageError(f"{path} is not a readable ONNX model ({type(err).__name__}: {err})") from None


def preprocess(onnx_in: Path, onnx_out: Path) -> Path:
    """``quant_pre_process`` (shape inference + basic optimizations); without symbolic shape
    inference if that fails on the graph (it does on some dynamo exports), which only loses shape
    information the quantizer does not need for fixed-shape vision models."""
    q = _ort_quantization()
    try:
        q.quant_pre_process(str(onnx_in), str(onnx_out))
    except Exception:  # noqa: BLE001 - retry once without the part that fails most often
        try:
            q.quant_pre_process(str(onnx_in), str(onnx_out), skip_symbolic_shape=True)
        except Exception as err:  # noqa: BLE001
            raise Failure(f"onnxruntime quant_pre_process failed on {onnx_in}: {type(err).__name__}: {err}") from None
    return onnx_out


def weighted_nodes(model: Any) -> list[str]:
    """Names of the weighted nodes (Conv/ConvTranspose/Gemm/MatMul), in graph order."""
    return [n.name for n in model.graph.node if n.op_type in WEIGHTED_OPS]


def quantizable_nodes(onnx_in: Path) -> list[str]:
    """Names of the nodes ``exclude_nodes`` can name: the weighted nodes of the pre-processed graph."""
    import onnx

    onnx_in = Path(onnx_in)
    model = _load(onnx_in)
    check_not_quantized(model, what=str(onnx_in))
    with tempfile.TemporaryDirectory(prefix="compress-quant-") as tmp:
        pre = preprocess(onnx_in, Path(tmp) / "pre.onnx")
        return weighted_nodes(onnx.load(str(pre)))


def _input_spec(model: Any, input_name: str | None) -> tuple[str, list[int | None]]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    names = [i.name for i in inputs]
    if input_name is None:
        if len(inputs) != 1:
            raise UsageError(f"the model has {len(inputs)} inputs ({', '.join(names)}); pass input_name=")
        chosen = inputs[0]
    else:
        match = [i for i in inputs if i.name == input_name]
        if not match:
            raise unknown("model input", input_name, names)
        chosen = match[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in chosen.type.tensor_type.shape.dim]
    return chosen.name, dims


def _samples(calib: Iterable[np.ndarray], dims: list[int | None]) -> Iterator[np.ndarray]:
    """Calibration arrays shaped for the model input: a missing batch axis is added, and a batch
    larger than a fixed model batch is split into model-sized pieces."""
    rank = len(dims)
    batch = dims[0] if dims else None
    for arr in calib:
        a = np.asarray(arr, dtype=np.float32)
        if rank and a.ndim == rank - 1:
            a = a[None]
        if rank and a.ndim != rank:
            raise UsageError(
                f"calibration array of shape {tuple(a.shape)} does not fit the model input "
                f"({'x'.join(str(d) if d else '?' for d in dims)})"
            )
        if batch and a.shape[0] != batch:
            if a.shape[0] % batch:
                raise UsageError(f"calibration batch of {a.shape[0]} does not split into the model's batch of {batch}")
            for i in range(0, a.shape[0], batch):
                yield np.ascontiguousarray(a[i : i + batch])
        else:
            yield np.ascontiguousarray(a)


def _stride(n: int, most: int = 32) -> int:
    """The largest chunk size <= ``most`` that divides ``n`` (ORT's strided calibration needs one)."""
    return next(d for d in range(min(most, n), 0, -1) if n % d == 0)


def _reader(q: Any, name: str, samples: list[np.ndarray]) -> Any:
    class _Reader(q.CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._it = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            a = next(self._it, None)
            return None if a is None else {name: a}

        def rewind(self) -> None:
            self._it = iter(samples)

        def __len__(self) -> int:
            return len(samples)

        def set_range(self, start_index: int, end_index: int) -> None:
            self._it = iter(samples[start_index:end_index])

    return _Reader()


def quantize_onnx_int8(
    onnx_in: Path,
    onnx_out: Path,
    *,
    calib: Iterable[np.ndarray] | Sequence[np.ndarray],
    input_name: str | None = None,
    per_channel: bool = True,
    method: str = "minmax",
    exclude_nodes: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """Quantize the fp32 ONNX ``onnx_in`` to a QDQ INT8 ONNX at ``onnx_out`` and return ``onnx_out``.

    ``calib`` are calibration inputs (float32, NCHW; a batch axis is added or split to the model's
    batch); use real images (the dataset's calib split), never random data, for whole models.
    ``exclude_nodes`` names nodes of the pre-processed graph (:func:`quantizable_nodes`) to keep in
    fp32. ORT's calibrators are deterministic; ``seed`` is accepted so that callers can pass the seed
    they drew the calibration images with, and it seeds numpy for anything ORT samples internally.

    Raises :class:`UsageError` (nothing written) for an already-quantized model, a model with nothing
    quantizable, an unknown ``method`` or input, or no calibration data.
    """
    return _quantize(
        Path(onnx_in),
        Path(onnx_out),
        calib=calib,
        input_name=input_name,
        per_channel=per_channel,
        method=method,
        exclude_nodes=exclude_nodes,
        seed=seed,
        scheme="cpu",
    )


def quantize_onnx_int8_tensorrt(
    onnx_in: Path,
    onnx_out: Path,
    *,
    calib: Iterable[np.ndarray] | Sequence[np.ndarray],
    input_name: str | None = None,
    method: str = "minmax",
    exclude_nodes: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """As :func:`quantize_onnx_int8`, with the Q/DQ TensorRT's explicit quantization accepts: int8
    activations and weights, symmetric (zero points 0), per-channel weights."""
    return _quantize(
        Path(onnx_in),
        Path(onnx_out),
        calib=calib,
        input_name=input_name,
        per_channel=True,
        method=method,
        exclude_nodes=exclude_nodes,
        seed=seed,
        scheme="tensorrt",
    )


def _has_vnni() -> bool:
    """True unless this is an x86 CPU whose flags lack VNNI (non-x86 or unreadable: assume no saturation)."""
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return True
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True
    return "avx512_vnni" in flags or "avx_vnni" in flags


def _scheme_options(q: Any, scheme: str) -> dict[str, Any]:
    if scheme == "tensorrt":
        return {
            "activation_type": q.QuantType.QInt8,
            "weight_type": q.QuantType.QInt8,
            "reduce_range": False,
            "extra": {"ActivationSymmetric": True, "WeightSymmetric": True},
        }
    return {
        "activation_type": q.QuantType.QUInt8,
        "weight_type": q.QuantType.QInt8,
        "reduce_range": not _has_vnni(),
        "extra": {},
    }


def _quantize(
    onnx_in: Path,
    onnx_out: Path,
    *,
    calib: Iterable[np.ndarray] | Sequence[np.ndarray],
    input_name: str | None,
    per_channel: bool,
    method: str,
    exclude_nodes: Sequence[str],
    seed: int,
    scheme: str,
    calibration_cache: Path | None = None,
) -> Path:
    """The implementation; ``calibration_cache`` (a JSON file, ORT's ``calibration_cache_path``) is
    written by the first call and read by the next ones, so accuracy control re-quantizes with other
    layers kept in fp32 without calibrating again (ranges do not depend on which nodes are excluded)."""
    import onnx

    from compress.core.runs import atomic_path

    key = str(method).lower()
    if key not in METHODS:
        raise unknown("calibration method", str(method), METHODS)
    model = _load(onnx_in)
    check_not_quantized(model, what=str(onnx_in))
    name, dims = _input_spec(model, input_name)
    samples = list(_samples(calib, dims))
    if not samples:
        raise UsageError("no calibration data: pass at least one calibration image (the dataset's calib split)")
    q = _ort_quantization()
    excluded = list(dict.fromkeys(str(n) for n in exclude_nodes))
    with tempfile.TemporaryDirectory(prefix="compress-quant-") as tmp:
        pre = preprocess(onnx_in, Path(tmp) / "pre.onnx")
        weighted = weighted_nodes(onnx.load(str(pre)))
        missing = [n for n in excluded if n not in weighted]
        if missing:
            raise unknown("node to keep in fp32", missing[0], weighted)
        if not [n for n in weighted if n not in set(excluded)]:
            raise UsageError(
                f"nothing to quantize in {onnx_in}: no Conv/ConvTranspose/Gemm/MatMul "
                f"{'outside exclude_nodes ' if weighted else ''}(int8 needs weighted layers)"
            )
        opts = _scheme_options(q, scheme)
        extra: dict[str, Any] = dict(opts["extra"])
        if key == "minmax":
            # ranges merged chunk by chunk: memory for one chunk's activations, not the whole calib set
            extra["CalibStridedMinMax"] = _stride(len(samples))
        if key == "percentile":
            extra["CalibPercentile"] = PERCENTILE
        np.random.seed(seed)  # noqa: NPY002 - ORT's histogram calibrators use the legacy global RNG if any
        with atomic_path(onnx_out, suffix=".onnx") as tmp_out:
            try:
                q.quantize_static(
                    str(pre),
                    str(tmp_out),
                    _reader(q, name, samples),
                    quant_format=q.QuantFormat.QDQ,
                    per_channel=per_channel,
                    reduce_range=opts["reduce_range"],
                    activation_type=opts["activation_type"],
                    weight_type=opts["weight_type"],
                    nodes_to_exclude=excluded or None,
                    calibrate_method=getattr(q.CalibrationMethod, METHODS[key]),
                    calibration_providers=["CPUExecutionProvider"],
                    extra_options=extra,
                    calibration_cache_path=str(calibration_cache) if calibration_cache is not None else None,
                )
            except Exception as err:  # noqa: BLE001 - ORT raises plain exceptions for graph problems
                raise Failure(f"onnxruntime quantize_static failed on {onnx_in}: {type(err).__name__}: {err}") from None
            if "QuantizeLinear" not in {n.op_type for n in onnx.load(str(tmp_out)).graph.node}:
                raise UsageError(
                    f"nothing was quantized in {onnx_in}: ONNX Runtime placed no QuantizeLinear "
                    "(no quantizable layer outside exclude_nodes)"
                )
    return onnx_out
