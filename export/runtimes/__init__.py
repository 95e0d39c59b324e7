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
from compress.export.runtimes.base import PRECISIONS, ArtifactKind, Runner, Session
from compress.export.runtimes.eager import TorchRunner
from compress.export.runtimes.ort import OrtRunner
from compress.export.runtimes.ov import OvRunner
from compress.export.runtimes.trt import TrtRunner

# The one list of runtimes: every name, alias, suffix, artefact kind and vendor fallback below and
# in profiles, ``compress bench``, the benchmark agent and the pipeline is read from these runners.
RUNNERS: Registry[Runner] = Registry("runtime")


def register_runtime(runner: Runner) -> Runner:
    """Add ``runner`` under its ``name`` and ``aliases`` (refused when a name is taken); returns it.

    Its artefact ``kind`` (when it owns one) must have a new name and suffixes no other kind claims,
    else files would be classified ambiguously."""
    if not runner.name:
        raise ValueError(f"{type(runner).__name__} declares no name")
    if runner.kind is not None:
        for _n, other in RUNNERS.items():
            k = other.kind
            if k is not None and (k.name == runner.kind.name or set(k.suffixes) & set(runner.kind.suffixes)):
                raise ValueError(
                    f"artefact kind '{runner.kind.name}' of runtime '{runner.name}' clashes with '{other.name}'"
                )
    RUNNERS.add(runner.name, runner, aliases=runner.aliases)
    return runner


for _r in (OrtRunner(), OvRunner(), TrtRunner(), TorchRunner()):
    register_runtime(_r)


def get_runner(name: str) -> Runner:
    """The runner for ``name`` (``onnxruntime``/``ort``, ``openvino``/``ov``, ``tensorrt``/``trt``,
    ``torch``); an unknown name raises :class:`UsageError` with close-match suggestions."""
    return RUNNERS.get(name)


def runner_names() -> list[str]:
    return RUNNERS.names()


def canonical_runtime(name: str) -> str:
    """The registered name for ``name`` or one of its aliases (case-insensitive); UsageError otherwise."""
    return RUNNERS.canonical(name)


def runtime_aliases() -> dict[str, str]:
    """Every alias -> its runtime's name, as the runner modules declare them."""
    return {a: r.name for _n, r in RUNNERS.items() for a in r.aliases}


def artifact_kinds() -> list[ArtifactKind]:
    """The artefact kinds the runtimes own, in registry order."""
    return [r.kind for _n, r in RUNNERS.items() if r.kind is not None]


def kind_runtimes(kind: str) -> tuple[str, ...]:
    """The runtimes that run artefacts of ``kind``: its owner first, then the others in registry order."""
    owner = [r.name for _n, r in RUNNERS.items() if r.kind is not None and r.kind.name == kind]
    return (*owner, *(r.name for _n, r in RUNNERS.items() if kind in r.reads and r.name not in owner))


def kind_of(path: str | Path) -> ArtifactKind | None:
    """The artefact kind a file's suffix names (``.onnx`` -> onnx, ``.xml`` -> openvino-ir, ...)."""
    suffix = Path(path).suffix.lower()
    return next((k for k in artifact_kinds() if suffix in k.suffixes), None)


def fallback_tool(runtime: str) -> str:
    """The vendor tool that times ``runtime``'s artefacts without its Python package ('' for none)."""
    return RUNNERS.get(runtime).fallback if runtime in RUNNERS else ""


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
        for _n, runner in RUNNERS.items():
            if runner.kind is not None and any((p / f).is_file() for f in runner.kind.files):
                return runner.name
    for _name, runner in RUNNERS.items():
        if p.suffix.lower() in runner.suffixes:
            return runner.name
    raise UsageError(
        f"cannot tell which runtime reads '{p.name}'; pass the runtime explicitly ({', '.join(runner_names())})"
    )


__all__ = [
    "PRECISIONS",
    "RUNNERS",
    "ArtifactKind",
    "Runner",
    "Session",
    "artifact_kinds",
    "canonical_runtime",
    "fallback_tool",
    "get_runner",
    "guess_runtime",
    "kind_of",
    "kind_runtimes",
    "register_runtime",
    "runner_names",
    "runtime_aliases",
]
