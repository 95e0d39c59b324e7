"""The export format registry: each format declares what it can do, checked before any work.

>>> from compress.export.formats import resolve_formats
>>> [f.name for f in resolve_formats("onnx,ov,engine")]
['onnx', 'openvino', 'tensorrt']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from compress.core.errors import UsageError
from compress.core.registry import Registry


@dataclass(frozen=True)
class Format:
    name: str
    aliases: tuple[str, ...]
    suffix: str  # the main artefact's file suffix
    dtypes: tuple[str, ...]  # precisions this format can be exported in
    dynamic_batch: bool  # supports --batch dynamic
    needs_gpu: bool  # building / running needs a GPU (TensorRT: on the target)
    runtime: str  # the compress.export.runtimes runner used for parity
    description: str
    build: Callable[..., Any]  # build(ctx) -> FormatArtifact (see compress.export.api)

    def capabilities(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "suffix": self.suffix,
            "dtypes": list(self.dtypes),
            "dynamic_batch": self.dynamic_batch,
            "needs_gpu": self.needs_gpu,
            "runtime": self.runtime,
            "description": self.description,
        }


# Filled by the format modules (onnx, openvino, tensorrt) when they are imported; the package
# ``compress/export/__init__.py`` imports them, so the registry is full once ``compress.export`` is.
FORMATS: Registry[Format] = Registry("export format")


def register(fmt: Format) -> Format:
    FORMATS.add(fmt.name, fmt, aliases=fmt.aliases)
    return fmt


def resolve_formats(spec: str | Sequence[str]) -> list[Format]:
    """Parse ``"onnx,ov"`` (or a list) into formats, in registry order, without duplicates."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s and s.strip()]
    if not items:
        raise UsageError(f"no export format given; choose from: {', '.join(FORMATS.names())}")
    names = {FORMATS.canonical(s) for s in items}
    return [FORMATS.get(n) for n in FORMATS.names() if n in names]


def check_capabilities(formats: Sequence[Format], *, precision: str, dynamic: bool) -> None:
    """Refuse combinations a format cannot do, naming the format and the fix."""
    for f in formats:
        if precision not in f.dtypes:
            hint = (
                " (the ONNX file stays fp32; OpenVINO and TensorRT apply fp16 when they compile it)"
                if f.name == "onnx"
                else ""
            )
            raise UsageError(
                f"format '{f.name}' cannot be exported as {precision}; it supports {', '.join(f.dtypes)}{hint}"
            )
        if dynamic and not f.dynamic_batch:
            raise UsageError(f"format '{f.name}' does not support a dynamic batch; use --batch N")


def format_table() -> list[dict[str, Any]]:
    return [f.capabilities() for _n, f in FORMATS.items()]
