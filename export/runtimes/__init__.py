"""ONE runner per runtime, shared by parity checks, latency profiling and ``compress bench``.

>>> from compress.export.runtimes import get_runner, runner_names
>>> runner_names()
['onnxruntime', 'openvino', 'tensorrt', 'torch']
>>> get_runner("ov").name
'openvino'

See /work/notes/runtimes_api.md (and the README section ``export``) for the full contract.
Importing this package imports numpy only; each runtime is imported when it is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.core.errors import UsageError
from compress.core.registry import Registry
from compress.export.runtimes.base import PRECISIONS, Runner, Session
from compress.export.runtimes.eager import TorchRunner
from compress.export.runtimes.ort import OrtRunner
from compress.export.runtimes.ov import OvRunner
from compress.export.runtimes.trt import TrtRunner

RUNNERS: Registry[Runner] = Registry("runtime")
for _r in (OrtRunner(), OvRunner(), TrtRunner(), TorchRunner()):
    RUNNERS.add(_r.name, _r, aliases=_r.aliases)


def get_runner(name: str) -> Runner:
    """The runner for ``name`` (``onnxruntime``/``ort``, ``openvino``/``ov``, ``tensorrt``/``trt``,
    ``torch``); an unknown name raises :class:`UsageError` with close-match suggestions."""
    return RUNNERS.get(name)


def runner_names() -> list[str]:
    return RUNNERS.names()


def guess_runtime(artifact: Any) -> str:
    """Default runtime for an artefact: ``.onnx`` -> onnxruntime, ``.xml`` -> openvino,
    ``.engine``/``.plan`` -> tensorrt, an ``nn.Module``/``LoadedModel``/``timm:NAME`` -> torch."""
    if not isinstance(artifact, (str, Path)):
        return "torch"
    s = str(artifact)
    if s.startswith("timm:"):
        return "torch"
    p = Path(s)
    if p.is_dir():
        for name, rt in (("model.onnx", "onnxruntime"), ("model.xml", "openvino"), ("model.engine", "tensorrt")):
            if (p / name).is_file():
                return rt
        if (p / "model.json").is_file():
            return "torch"
    for _name, runner in RUNNERS.items():
        if p.suffix.lower() in runner.suffixes:
            return runner.name
    raise UsageError(
        f"cannot tell which runtime reads '{p.name}'; pass the runtime explicitly ({', '.join(runner_names())})"
    )


__all__ = ["PRECISIONS", "RUNNERS", "Runner", "Session", "get_runner", "guess_runtime", "runner_names"]
