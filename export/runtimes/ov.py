"""OpenVINO runner: ``PERFORMANCE_HINT=LATENCY``, an explicit ``INFERENCE_PRECISION_HINT`` (f32 for
fp32 so parity is not silently bf16 on CPUs with AVX512_BF16), ``INFERENCE_NUM_THREADS`` and device
CPU/GPU. Reads an IR (``.xml`` + ``.bin``) or an ``.onnx`` file. A dynamic batch dim is reshaped
to the requested batch before compiling. Extra option: ``config`` (dict of further properties).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import Failure, MissingDependency, UsageError
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

#: inference precision hints; ``int8`` is not a hint but an INT8 IR (FakeQuantize ops), run with f32 for the rest
PRECISION_HINTS = {"fp32": "f32", "fp16": "f16", "bf16": "bf16"}


class OvSession(Session):
    runtime = "openvino"

    def __init__(self, compiled: Any, *, settings: dict[str, Any]) -> None:
        import openvino as ov

        self._compiled = compiled
        self._req = compiled.create_infer_request()
        inp = compiled.inputs[0]
        self.input_name = inp.get_any_name()
        self.input_shape = tuple(int(d) for d in inp.get_shape())
        self.input_dtype = np.dtype(inp.get_element_type().to_dtype())
        self.output_names = [
            o.get_any_name() if o.get_names() else f"output{i}" for i, o in enumerate(compiled.outputs)
        ]
        self.settings = settings
        self._in = np.zeros(self.input_shape, dtype=self.input_dtype)
        # shared_memory: the request reads straight from self._in, so bind() is one copy.
        self._req.set_input_tensor(ov.Tensor(self._in, shared_memory=True))
        self._n_out = len(compiled.outputs)

    def bind(self, x: np.ndarray) -> None:
        np.copyto(self._in, self._check_input(x), casting="same_kind")

    def run_bound(self) -> float | None:
        self._req.infer()
        return None

    def outputs(self) -> list[np.ndarray]:
        return [self._req.get_output_tensor(i).data for i in range(self._n_out)]

    def close(self) -> None:
        self._req = None
        self._compiled = None


class OvRunner(Runner):
    name = "openvino"
    aliases = ("ov",)
    suffixes = (".xml", ".onnx")
    kind = ArtifactKind("openvino-ir", "an OpenVINO IR", suffixes=(".xml",), files=("model.xml",), companions=(".bin",))
    reads = ("openvino-ir", "onnx", "model-ref")
    fallback = "benchmark_app"
    extra = "pip install 'compress[openvino]'"

    module = "openvino"

    def info(self) -> dict[str, Any]:
        if not self.available():
            return self.unavailable_info()
        import openvino as ov

        core = ov.Core()
        devices = list(core.available_devices)
        full = {}
        for d in devices:
            try:
                full[d] = core.get_property(d, "FULL_DEVICE_NAME")
            except Exception:  # noqa: BLE001
                full[d] = d
        return {
            "runtime": self.name,
            "available": True,
            "version": ov.get_version(),
            "devices": devices,
            "device_names": full,
            "defaults": {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
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
    ) -> OvSession:
        if not self.available():
            raise MissingDependency(f"openvino is not installed: {self.extra}")
        import openvino as ov

        check_opts(self.name, opts, ("config",))
        check_threads(threads)
        p = check_precision(self.name, precision, (*PRECISION_HINTS, "int8"))
        path = artifact_file(
            self.name, artifact, self.suffixes, names=("model.xml", "openvino/model.xml", "model.onnx")
        )
        core = ov.Core()
        dev = (device or "CPU").upper()
        if dev not in core.available_devices and not dev.startswith(("AUTO", "HETERO", "MULTI")):
            raise UsageError(
                f"OpenVINO device '{dev}' is not available here (available: {', '.join(core.available_devices)})"
            )
        try:
            model = core.read_model(str(path))
        except Exception as err:  # noqa: BLE001
            raise Failure(f"OpenVINO cannot read {path.name}: {str(err).strip().splitlines()[0]}") from None
        if p == "int8" and not any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()):
            raise UsageError(
                f"{path.name} is not quantized (no FakeQuantize): int8 on openvino runs an INT8 IR; make one with "
                f"`compress quantize MODEL --runtime openvino --data DATASET`"
            )
        if len(model.inputs) != 1:
            raise UsageError(f"{path.name} has {len(model.inputs)} inputs; the runners take single-input models")
        pshape = model.inputs[0].get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in pshape]
        shape = concrete_shape(self.name, dims, batch, what=path.name)
        if pshape.is_dynamic:
            model.reshape({model.inputs[0].get_any_name(): ov.PartialShape(list(shape))})
        # int8: the FakeQuantize'd layers run in int8, the rest in f32 (as `compress quantize` measured it)
        hint = PRECISION_HINTS.get(p, "f32")
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        config.update(opts.get("config") or {})
        try:
            compiled = core.compile_model(model, dev, config)
        except Exception as err:  # noqa: BLE001
            raise Failure(
                f"OpenVINO cannot compile {path.name} for {dev}: {str(err).strip().splitlines()[0]}"
            ) from None
        eff: dict[str, Any] = {}
        for key in ("INFERENCE_PRECISION_HINT", "INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT"):
            try:
                val = compiled.get_property(key)
                eff[key] = val.get_type_name() if hasattr(val, "get_type_name") else str(val)
            except Exception:  # noqa: BLE001 - not every plugin exposes every property
                continue
        settings = {
            "device": dev,
            "precision": p,
            "threads": threads,
            "requested": config,
            "effective": eff,
            "path": str(Path(path)),
        }
        return OvSession(compiled, settings=settings)
