"""Post-training quantization: INT8 (and FP16) models for ONNX Runtime, OpenVINO and TensorRT.

``compress.quantize(...)`` (``compress.quantize.api.quantize``) quantizes anything ``compress export``
takes, calibrates on the dataset's calib split, measures top-1 of fp32 and quantized models in their
runtimes, keeps the most sensitive layers in fp32 when the drop exceeds ``max_drop``, and times both
with the drift-controlled timing engine. The backends are plain modules:

- :mod:`compress.quantize.onnxruntime`: ``quant_pre_process`` + ``quantize_static`` (QDQ, per-channel);
- :mod:`compress.quantize.openvino`: ``nncf.quantize`` on the OpenVINO model, fp16 via ``ov.save_model``;
- TensorRT: the QDQ ONNX from ONNX Runtime's quantizer, placed in the engine bundle (explicit quantization).

Why this package is a *callable module*: ``compress.quantize`` is both the public function (lazily
exported from :mod:`compress` like the others) and this package. Importing any submodule
(``compress.quantize.onnxruntime``) makes Python set the attribute ``compress.quantize`` to the package,
which would shadow the function; making the package callable keeps ``compress.quantize(...)`` working
whichever of the two a caller gets.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from compress.quantize.api import quantize

        return quantize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
