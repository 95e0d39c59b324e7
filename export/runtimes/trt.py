"""TensorRT runner: deserializes a ``.engine`` / ``.plan`` built for THIS GPU and TensorRT version
and runs it through an execution context (``execute_async_v3`` on a dedicated CUDA stream).

``import tensorrt`` is lazy. Device buffers come from ``torch.cuda`` (torch is a dependency of
compress); host buffers are pinned so the copies are asynchronous. ``run_bound`` records CUDA events
around the execution and returns the GPU time in ms. The precision is baked into the engine at
build time: ``precision`` is recorded, not applied. Where TensorRT or CUDA is missing,
``available()`` is False and ``load`` raises :class:`MissingDependency` naming the extra.
"""

from __future__ import annotations

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
    concrete_shape,
)

INSTALL = "pip install 'compress[tensorrt]' on an x86 CUDA machine, or use JetPack's TensorRT on Jetson"


def _import_trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError:
        raise MissingDependency(f"TensorRT is not installed: {INSTALL}") from None
    return trt


def _cuda_ok() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


class TrtSession(Session):
    runtime = "tensorrt"

    def __init__(self, engine: Any, *, batch: int | None, settings: dict[str, Any], name: str) -> None:
        import tensorrt as trt
        import torch

        self._torch = torch
        self._engine = engine
        self._ctx = engine.create_execution_context()
        if self._ctx is None:
            raise Failure(f"TensorRT could not create an execution context for {name} (out of GPU memory?)")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1:
            raise UsageError(f"{name} has {len(ins)} inputs; the runners take single-input models")
        self.input_name = ins[0]
        self.output_names = outs
        self.settings = settings
        self.input_shape = concrete_shape("tensorrt", list(engine.get_tensor_shape(self.input_name)), batch, what=name)
        if -1 in tuple(engine.get_tensor_shape(self.input_name)):
            lo, _opt, hi = engine.get_tensor_profile_shape(self.input_name, 0)
            if not (lo[0] <= self.input_shape[0] <= hi[0]):
                raise UsageError(
                    f"{name} was built for batch {lo[0]}..{hi[0]}; batch {self.input_shape[0]} is outside its profile"
                )
            self._ctx.set_input_shape(self.input_name, self.input_shape)
        tdt = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32, trt.int8: torch.int8}
        if hasattr(trt, "bfloat16"):
            tdt[trt.bfloat16] = torch.bfloat16
        self._stream = torch.cuda.Stream()
        in_dt = tdt[engine.get_tensor_dtype(self.input_name)]
        self.input_dtype = np.dtype(
            np.float32 if in_dt == torch.bfloat16 else torch.empty(0, dtype=in_dt).numpy().dtype
        )
        self._d_in = torch.empty(self.input_shape, dtype=in_dt, device="cuda")
        self._h_in = torch.empty(self.input_shape, dtype=in_dt).pin_memory()
        self._in = self._h_in.numpy() if in_dt != torch.bfloat16 else None
        self._ctx.set_tensor_address(self.input_name, self._d_in.data_ptr())
        self._d_out, self._h_out = [], []
        for n in outs:
            shape = tuple(self._ctx.get_tensor_shape(n))
            dt = tdt[engine.get_tensor_dtype(n)]
            d = torch.empty(shape, dtype=dt, device="cuda")
            self._ctx.set_tensor_address(n, d.data_ptr())
            self._d_out.append(d)
            self._h_out.append(torch.empty(shape, dtype=torch.float32 if dt == torch.bfloat16 else dt).pin_memory())
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def bind(self, x: np.ndarray) -> None:
        x = self._check_input(x)
        if self._in is not None:
            np.copyto(self._in, x, casting="unsafe")
            src = self._h_in
        else:
            src = self._torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self._d_in.dtype)
        with self._torch.cuda.stream(self._stream):
            self._d_in.copy_(src, non_blocking=True)
        self._stream.synchronize()

    def run_bound(self) -> float | None:
        self._start.record(self._stream)
        if not self._ctx.execute_async_v3(self._stream.cuda_stream):
            raise Failure("TensorRT execution failed (execute_async_v3 returned False)")
        self._end.record(self._stream)
        self._end.synchronize()
        return float(self._start.elapsed_time(self._end))

    def outputs(self) -> list[np.ndarray]:
        with self._torch.cuda.stream(self._stream):
            for d, h in zip(self._d_out, self._h_out):
                h.copy_(d, non_blocking=True)
        self._stream.synchronize()
        return [h.numpy() for h in self._h_out]

    def close(self) -> None:
        self._ctx = None
        self._engine = None
        self._d_out, self._h_out = [], []


class TrtRunner(Runner):
    name = "tensorrt"
    aliases = ("trt",)
    suffixes = (".engine", ".plan", ".trt")
    kind = ArtifactKind("tensorrt-engine", "a TensorRT engine", suffixes=suffixes, files=("model.engine",))
    reads = ("tensorrt-engine",)
    fallback = "trtexec"
    extra = INSTALL

    def available(self) -> bool:
        try:
            _import_trt()
        except MissingDependency:
            return False
        return _cuda_ok()

    def info(self) -> dict[str, Any]:
        try:
            trt = _import_trt()
        except MissingDependency:
            return {"runtime": self.name, "available": False, "install": INSTALL}
        out: dict[str, Any] = {"runtime": self.name, "version": trt.__version__, "cuda": _cuda_ok()}
        out["available"] = out["cuda"]
        if out["cuda"]:
            import torch

            out["gpu"] = torch.cuda.get_device_name(0)
            out["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
            out["cuda_version"] = torch.version.cuda
        return out

    def load(
        self,
        artifact: Any,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        device: str | None = None,
        batch: int | None = None,
        **opts: Any,
    ) -> TrtSession:
        check_opts(self.name, opts, ())
        p = check_precision(self.name, precision, ("fp32", "fp16", "bf16", "int8"))
        path = artifact_file(self.name, artifact, self.suffixes, names=("model.engine", "model.plan"))
        trt = _import_trt()
        if not _cuda_ok():
            raise MissingDependency(
                "TensorRT needs a CUDA GPU and torch with CUDA for its buffers; none is visible here"
            )
        if threads is not None:
            raise UsageError("tensorrt runs on the GPU: threads does not apply")
        import torch

        dev = (device or "cuda:0").lower()
        if dev.startswith("cuda:"):
            torch.cuda.set_device(int(dev.split(":", 1)[1]))
        elif dev not in ("cuda", "gpu"):
            raise UsageError(f"tensorrt device must be cuda or cuda:N, got '{device}'")
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise Failure(
                f"TensorRT could not deserialize {path.name}: engines only load on the GPU model and "
                f"TensorRT version ({trt.__version__} here) that built them; rebuild it on this device"
            )
        settings = {
            "device": dev,
            "precision": p,
            "engine": str(path),
            "tensorrt": trt.__version__,
            "gpu": torch.cuda.get_device_name(),
        }
        return TrtSession(engine, batch=batch, settings=settings, name=path.name)
