"""Post-training quantization: INT8 (and FP16) models for ONNX Runtime, OpenVINO and TensorRT.

``compress.quantize(...)`` (``compress.quantize.api.quantize``) quantizes anything ``compress export``
takes, calibrates on the dataset's calib split, measures top-1 of fp32 and quantized models in their
runtimes, keeps the most sensitive layers in fp32 when the drop exceeds ``max_drop``, and times both
with the drift-controlled timing engine. The backends are plain modules:

- :mod:`compress.quantize.onnxruntime`: ``quant_pre_process`` + ``quantize_static`` (QDQ, per-channel);
- :mod:`compress.quantize.openvino`: ``nncf.quantize`` on the OpenVINO model, fp16 via ``ov.save_model``;
- TensorRT: the QDQ ONNX from ONNX Runtime's quantizer, placed in the engine bundle (explicit quantization).

``compress.quantize(...)`` is a plain function of :mod:`compress` (which imports this package first
so that the function keeps the name ``compress.quantize``; see there). Import submodules with
``from compress.quantize import onnxruntime``.
"""
