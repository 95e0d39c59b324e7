"""torch eager runner: wraps an ``nn.Module`` (or a ``LoadedModel``, or a model reference that
:func:`compress.models.load_model` resolves) in eval mode under ``torch.inference_mode``.

``torch.set_flush_denormal(True)`` is switched on at load (random-initialised models are otherwise
60-260x slower on x86 CPUs). ``threads`` calls ``torch.set_num_threads`` which is PROCESS-WIDE; the
previous value is restored by :meth:`close`. Precisions: fp32 on CPU; fp16/bf16 cast a copy of the
module (bf16 on CPU, fp16/bf16 on CUDA). The input shape is the model's recorded input shape
(``LoadedModel.input_shape``) or ``input_shape=(C, H, W)`` for a bare module.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from compress.core.errors import MissingDependency, UsageError
from compress.export.runtimes.base import (
    PRECISIONS,
    ArtifactKind,
    Runner,
    Session,
    check_opts,
    check_precision,
    check_threads,
)


class TorchSession(Session):
    runtime = "torch"

    def __init__(
        self,
        module: Any,
        *,
        shape: tuple[int, ...],
        dtype: Any,
        device: str,
        settings: dict[str, Any],
        restore_threads: int | None,
    ) -> None:
        import torch

        self._torch = torch
        self._module = module
        self.input_name = "input"
        self.input_shape = shape
        self.input_dtype = np.dtype(np.float32)
        self.output_names = ["output"]
        self.settings = settings
        self._restore_threads = restore_threads
        self._in = np.zeros(shape, dtype=np.float32)
        host = torch.from_numpy(self._in)  # shares memory with self._in
        self._x = host if (device == "cpu" and dtype == torch.float32) else host.to(device=device, dtype=dtype)
        self._host = host
        self._device = device
        self._dtype = dtype
        self._out: list[Any] = []

    def bind(self, x: np.ndarray) -> None:
        np.copyto(self._in, self._check_input(x), casting="same_kind")
        if self._x is not self._host:
            self._x.copy_(self._host)

    def run_bound(self) -> float | None:
        with self._torch.inference_mode():
            out = self._module(self._x)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if self._device != "cpu":
            self._torch.cuda.synchronize()
        self._out = outs
        return None

    def outputs(self) -> list[np.ndarray]:
        return [o.detach().float().cpu().numpy() for o in self._out]

    def close(self) -> None:
        if self._restore_threads is not None:
            self._torch.set_num_threads(self._restore_threads)
            self._restore_threads = None
        self._out = []


class TorchRunner(Runner):
    name = "torch"
    aliases = ("pytorch", "eager")
    kind = ArtifactKind("model-ref", "a model reference", files=("model.json",))  # timm:NAME or a run dir
    reads = ("model-ref",)
    extra = "pip install torch"

    module = "torch"

    def info(self) -> dict[str, Any]:
        if not self.available():
            return self.unavailable_info()
        import torch

        return {
            "runtime": self.name,
            "available": True,
            "version": torch.__version__,
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "cuda_version": torch.version.cuda,
            "flush_denormal": True,
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
    ) -> TorchSession:
        if not self.available():
            raise MissingDependency(f"torch is not installed: {self.extra}")
        import torch

        check_opts(self.name, opts, ("input_shape",))
        check_threads(threads)
        dev = (device or "cpu").lower()
        if dev == "gpu":
            dev = "cuda"
        if dev not in ("cpu", "cuda"):
            raise UsageError(f"torch device must be cpu or cuda, got '{device}'")
        if dev == "cuda" and not torch.cuda.is_available():
            raise UsageError("torch here has no CUDA device; use device=cpu")
        p = check_precision(self.name, precision, ("fp32", "bf16") if dev == "cpu" else ("fp32", "fp16", "bf16"))
        module, shape = _resolve(artifact, opts.get("input_shape"))
        if batch is not None and (not isinstance(batch, int) or batch < 1):
            raise UsageError(f"batch must be a positive integer, got {batch!r}")
        full = (batch or 1, *shape)
        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[p]
        if p != "fp32" or dev != "cpu":
            module = copy.deepcopy(module).to(device=dev, dtype=dtype)
        module.eval()
        torch.set_flush_denormal(True)
        restore = None
        if threads:
            restore = torch.get_num_threads()
            torch.set_num_threads(threads)
        settings = {
            "device": dev,
            "precision": p,
            "threads": threads or torch.get_num_threads(),
            "flush_denormal": True,
        }
        return TorchSession(module, shape=full, dtype=dtype, device=dev, settings=settings, restore_threads=restore)


def _resolve(artifact: Any, input_shape: Any) -> tuple[Any, tuple[int, ...]]:
    import torch.nn as nn

    if isinstance(artifact, nn.Module):
        if input_shape is None:
            raise UsageError("torch runner: a bare nn.Module needs input_shape=(C, H, W)")
        return artifact, tuple(int(d) for d in input_shape)
    if hasattr(artifact, "module") and hasattr(artifact, "input_shape"):  # LoadedModel
        return artifact.module, tuple(input_shape or artifact.input_shape)
    if isinstance(artifact, str) or hasattr(artifact, "__fspath__"):
        from compress.models import load_model

        lm = load_model(str(artifact))
        return lm.module, tuple(input_shape or lm.input_shape)
    raise UsageError(
        f"torch runner cannot run a {type(artifact).__name__}; give an nn.Module, a LoadedModel or a model reference"
    )


__all__ = ["TorchRunner", "TorchSession", "PRECISIONS"]
