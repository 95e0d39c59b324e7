"""INT8 for OpenVINO with NNCF (``nncf.quantize`` on the OpenVINO model), FP16 via ``ov.save_model``.

NNCF is the library OpenVINO's own tools quantize with; its algorithms (min-max ranges, fast bias
correction, the CPU's quantizer placement) are used as they are, not re-implemented. What this
module adds: the calibration images go in as an ``nncf.Dataset`` of the dataset's calib split
(all of them: ``subset_size`` = their number, where NNCF's default would stop at 300), the target
device is set to ``CPU`` when the model runs on a CPU, NNCF's "overflow fix" (7-bit weights in the
first layer, a guard against the 16-bit accumulator saturating on x86 CPUs without VNNI) is turned
off on CPUs that have VNNI (measured on EfficientNet-Lite0 with real weights: top-1 agreement with
fp32 on 90 photo views 68.9% -> 76.7%, logit cosine 0.897 -> 0.905), layers to keep in fp32 go in as an
``IgnoredScope`` of node names (:func:`quantizable_nodes`), and the IR is written atomically
(both files into a temporary directory, ``.bin`` renamed before ``.xml``, as the exporter does).

FP16 goes through the project's OpenVINO export writer (``compress.export.openvino.to_openvino``
with ``precision="fp16"``: ``ov.save_model(..., compress_to_fp16=True)``); bf16 stays an inference
hint of the runner, not a property of the file.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import Failure, MissingDependency, UsageError, unknown

#: OpenVINO op types that carry weights (the ones NNCF puts quantizers on and ignored scopes name)
WEIGHTED_TYPES: tuple[str, ...] = (
    "Convolution",
    "GroupConvolution",
    "ConvolutionBackpropData",
    "GroupConvolutionBackpropData",
    "MatMul",
)


def _nncf() -> Any:
    try:
        import nncf
    except ImportError as err:
        raise MissingDependency(
            f"INT8 for OpenVINO needs NNCF ({err}); pip install 'compress[openvino]' (or pip install nncf)"
        ) from None
    return nncf


@contextlib.contextmanager
def _progress_to_stderr() -> Iterator[None]:
    """NNCF draws its progress bars on stdout; ``--json`` owns stdout, so they go to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def read_model(onnx_in: Path) -> Any:
    import openvino as ov

    try:
        return ov.convert_model(str(onnx_in))
    except Exception as err:  # noqa: BLE001 - OpenVINO raises generic errors
        raise Failure(f"OpenVINO cannot convert {Path(onnx_in).name}: {str(err).strip().splitlines()[-1]}") from None


_AUTO_NAME = re.compile(r"^[A-Za-z]+_\d+$")


def layer_labels(model: Any) -> list[tuple[str, str]]:
    """``(label, friendly name)`` of the weighted ops of ``model``, in graph order.

    Why labels: ops that the ONNX frontend creates (e.g. the MatMul of a Gemm) get generated names
    such as ``Multiply_180822`` whose number changes with every ``convert_model`` call, so they cannot
    name a layer across conversions. Such ops are labelled ``<type>#<k>`` (``k``: its position among
    the weighted ops, the same for every conversion of the same file); names from the ONNX file stay."""
    ops = [op for op in model.get_ordered_ops() if op.get_type_name() in WEIGHTED_TYPES]
    return [
        (
            f"{op.get_type_name()}#{k}" if _AUTO_NAME.match(op.get_friendly_name()) else op.get_friendly_name(),
            op.get_friendly_name(),
        )
        for k, op in enumerate(ops)
    ]


def quantizable_nodes(onnx_in: Path) -> list[str]:
    """Labels of the weighted ops of the OpenVINO model made from ``onnx_in``, in graph order: the
    layers ``ignored`` can keep in fp32 (see :func:`layer_labels`)."""
    return [label for label, _name in layer_labels(read_model(Path(onnx_in)))]


def save_ir(model: Any, out_dir: Path, *, compress_to_fp16: bool = False) -> Path:
    """Write ``model`` as ``out_dir/model.xml`` + ``model.bin`` atomically; returns the .xml path."""
    import openvino as ov

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=".openvino-", dir=out))
    try:
        ov.save_model(model, str(tmpdir / "model.xml"), compress_to_fp16=compress_to_fp16)
        for name in ("model.bin", "model.xml"):  # .bin first: an .xml never points at a missing .bin
            os.replace(tmpdir / name, out / name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out / "model.xml"


def quantize_ov_int8(
    onnx_in: Path,
    out_dir: Path,
    *,
    calib: Sequence[np.ndarray],
    ignored: Sequence[str] = (),
    target_device: str = "CPU",
    seed: int = 0,
) -> Path:
    """``nncf.quantize`` the OpenVINO model of the fp32 ONNX ``onnx_in`` on ``calib`` (arrays shaped
    like the model input) and write ``out_dir/model.xml``; ``ignored`` node names stay fp32.

    NNCF's quantization is deterministic for a given dataset (it walks ``calib`` in order); ``seed``
    is accepted for symmetry with the ONNX Runtime backend (the caller drew the images with it)."""
    nncf = _nncf()
    if not calib:
        raise UsageError("no calibration data: pass at least one calibration image (the dataset's calib split)")
    model = read_model(Path(onnx_in))
    labels = dict(layer_labels(model))
    names = list(labels)
    ignored = list(dict.fromkeys(ignored))
    for n in ignored:
        if n not in names:
            raise unknown("node to keep in fp32", n, names)
    if not [n for n in names if n not in set(ignored)]:
        raise UsageError(
            f"nothing to quantize in {onnx_in}: no convolution or MatMul "
            f"{'outside the layers kept in fp32 ' if names else ''}(int8 needs weighted layers)"
        )
    dev = getattr(nncf.TargetDevice, str(target_device).upper(), None)
    if dev is None:
        raise unknown("NNCF target device", target_device, [d.name for d in nncf.TargetDevice])
    del seed
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    from compress.quantize.onnxruntime import _has_vnni

    adv = AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE) if _has_vnni() else None
    dataset = nncf.Dataset([np.ascontiguousarray(a, dtype=np.float32) for a in calib])
    try:
        with _progress_to_stderr():
            q = nncf.quantize(
                model,
                dataset,
                target_device=dev,
                subset_size=len(calib),
                advanced_parameters=adv,
                ignored_scope=nncf.IgnoredScope(names=[labels[n] for n in ignored]) if ignored else None,
            )
    except Exception as err:  # noqa: BLE001 - NNCF raises many exception types for graph problems
        raise Failure(f"nncf.quantize failed on {Path(onnx_in).name}: {type(err).__name__}: {err}") from None
    if not any(op.get_type_name() == "FakeQuantize" for op in q.get_ordered_ops()):
        raise UsageError(f"nothing was quantized in {onnx_in}: NNCF placed no FakeQuantize")
    return save_ir(q, Path(out_dir))


def quantize_ov_int8_default(onnx_in: Path, out_dir: Path, *, calib: Sequence[np.ndarray]) -> Path:
    """Plain ``nncf.quantize(model, dataset)`` with NNCF's defaults (the benchmark's baseline)."""
    nncf = _nncf()
    model = read_model(Path(onnx_in))
    with _progress_to_stderr():
        q = nncf.quantize(model, nncf.Dataset([np.ascontiguousarray(a, dtype=np.float32) for a in calib]))
    return save_ir(q, Path(out_dir))


def compiled_layers(xml: Path, *, threads: int = 1, device: str = "CPU") -> list[tuple[str, str, str]]:
    """``(layer type, runtime precision, primitive)`` of every node of the model as OpenVINO compiled
    it (``compiled.get_runtime_model()``), in execution order.

    Why: two INT8 IRs can differ in their FakeQuantize ranges and weights yet run the very same
    kernels; then any difference in their latency is measurement (session placement, order), not
    the quantizer. The benchmark compares ours with NNCF's plain defaults through this list."""
    import openvino as ov

    compiled = ov.Core().compile_model(
        str(xml), device, {"INFERENCE_NUM_THREADS": int(threads), "PERFORMANCE_HINT": "LATENCY"}
    )
    out = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        out.append(
            tuple(info[k].astype(str) if k in info else "" for k in ("layerType", "runtimePrecision", "primitiveType"))
        )
    return out  # type: ignore[return-value]
