"""The runner/session contract shared by parity checks, latency profiling and ``compress bench``.

A :class:`Runner` knows one runtime (is it installed, which version, which settings); its
:meth:`Runner.load` turns an artefact into a :class:`Session` bound to ONE input shape. A session
pre-allocates its input and output buffers, so ``run`` copies the input in, executes, and returns
a view of the output buffer: cheap to call in a timing loop.

>>> from compress.export.runtimes import get_runner          # doctest: +SKIP
>>> with get_runner("ort").load("model.onnx", threads=2) as s:  # doctest: +SKIP
...     y = s.run(x)                                 # x: np.float32 array of s.input_shape
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compress.core.errors import UsageError, unknown

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")


class Session(ABC):
    """A loaded model ready to run on one input shape.

    Attributes set by every implementation:
      ``runtime`` (canonical runner name), ``input_name``, ``input_shape`` (concrete, batch
      included), ``input_dtype`` (numpy dtype the runtime consumes), ``output_names``,
      ``settings`` (the effective settings: threads, precision, device, providers...).
    """

    runtime: str
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: np.dtype
    output_names: list[str]
    settings: dict[str, Any]

    # -- the calls --------------------------------------------------------------------------
    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one batch and return the FIRST output.

        The returned array may be a view of the session's output buffer: it is valid until the
        next call; copy it (``y.copy()``) if you keep it.
        """
        return self.run_all(x)[0]

    def run_all(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one batch and return every output, in ``output_names`` order (views, see :meth:`run`)."""
        self.bind(x)
        self.run_bound()
        return self.outputs()

    @abstractmethod
    def bind(self, x: np.ndarray) -> None:
        """Copy ``x`` into the session's input buffer (checks shape, casts dtype)."""

    @abstractmethod
    def run_bound(self) -> float | None:
        """Execute on the bound input and wait for completion; outputs stay in the session.

        Returns the device-side time in milliseconds where the runtime measures it (TensorRT:
        CUDA events around the execution), else ``None`` (time the call with ``perf_counter``).
        """

    @abstractmethod
    def outputs(self) -> list[np.ndarray]:
        """The outputs of the last execution as host arrays (views where possible)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the runtime's resources (idempotent)."""

    # -- helpers ----------------------------------------------------------------------------
    def _check_input(self, x: np.ndarray) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise UsageError(f"{self.runtime}: run() takes a numpy array, got {type(x).__name__}")
        if tuple(x.shape) != tuple(self.input_shape):
            raise UsageError(
                f"{self.runtime}: input shape {tuple(x.shape)} does not match the session's "
                f"{tuple(self.input_shape)}; load the artefact again with batch={x.shape[0]}"
                if x.ndim == len(self.input_shape)
                else f"{self.runtime}: input shape {tuple(x.shape)} does not match {tuple(self.input_shape)}"
            )
        return x

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.runtime} input={self.input_shape} settings={self.settings}>"


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of artefact a runtime owns (its native format), declared by that runtime's module.

    ``compress bench`` classifies files by ``suffixes``, finds them in run directories by
    ``suffixes`` (and the runtime guesser by ``files``), names them with ``label`` and refuses a
    file whose ``companions`` (files beside it with these suffixes, e.g. an IR's ``.bin``) are
    missing. Nothing else spells these names.
    """

    name: str  # "onnx", "openvino-ir", "tensorrt-engine", "model-ref"
    label: str  # with its article: "an ONNX model"
    suffixes: tuple[str, ...] = ()  # file suffixes of this kind (lower case, with the dot)
    files: tuple[str, ...] = ()  # the file names an export directory holds for this kind
    companions: tuple[str, ...] = ()  # suffixes of files that must sit beside it

    @property
    def noun(self) -> str:
        """``label`` without its article: "ONNX model"."""
        return self.label.split(" ", 1)[1]


class Runner(ABC):
    """One runtime, and the single place its names are declared.

    Subclasses set ``name``, ``aliases``, ``suffixes`` (artefact files :meth:`load` reads),
    ``kind`` (the artefact kind it owns), ``reads`` (every artefact kind it can run, by name, in
    the order it prefers them) and ``fallback`` (a vendor tool the benchmark agent times this
    runtime's artefacts with when its Python package is missing on the device: ``benchmark_app``,
    ``trtexec``; empty for none). Profiles, ``compress bench``, the agent and the pipeline read
    these through :mod:`compress.export.runtimes`, so adding a runtime is its module plus one line
    there (see docs/extending.md).
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    kind: ArtifactKind | None = None
    reads: tuple[str, ...] = ()
    fallback: str = ""
    extra: str = ""  # how to install it, for MissingDependency messages
    module: str = ""  # the Python package that provides the runtime

    def available(self) -> bool:
        """True when the runtime can be imported (GPU-only runtimes also check their device)."""
        import importlib

        try:
            importlib.import_module(self.module)
        except ImportError:
            return False
        return True

    def unavailable_info(self) -> dict[str, Any]:
        return {"runtime": self.name, "available": False, "install": self.extra}

    @abstractmethod
    def info(self) -> dict[str, Any]:
        """Runtime name, version, devices and defaults; never raises (``available: False`` instead)."""

    @abstractmethod
    def load(
        self,
        artifact: Any,
        *,
        precision: str = "fp32",
        threads: int | None = None,
        device: str | None = None,
        batch: int | None = None,
        **opts: Any,
    ) -> Session:
        """Load ``artifact`` for one input shape (``batch`` fills a dynamic batch dim; default 1)."""


# ---- shared helpers for implementations ------------------------------------------------------


def check_precision(runtime: str, precision: str, allowed: Sequence[str]) -> str:
    p = str(precision).lower()
    if p not in PRECISIONS:
        raise unknown("precision", precision, PRECISIONS)
    if p not in allowed:
        raise UsageError(f"{runtime} does not run precision '{p}' here; choose one of: {', '.join(allowed)}")
    return p


def check_opts(runtime: str, opts: dict[str, Any], allowed: Sequence[str]) -> None:
    """Refuse unknown keyword options instead of silently ignoring them."""
    for key in opts:
        if key not in allowed:
            raise unknown(f"{runtime} option", key, allowed or ["(none)"])


def check_threads(threads: int | None) -> int | None:
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads must be a positive integer, got {threads!r}")
    return threads


def concrete_shape(runtime: str, dims: Sequence[Any], batch: int | None, *, what: str) -> tuple[int, ...]:
    """Replace a symbolic/dynamic leading batch dim by ``batch`` (default 1); check static ones."""
    if batch is not None and (not isinstance(batch, int) or batch < 1):
        raise UsageError(f"batch must be a positive integer, got {batch!r}")
    out: list[int] = []
    for i, d in enumerate(dims):
        static = isinstance(d, (int, np.integer)) and int(d) > 0
        if i == 0:
            if static:
                if batch is not None and batch != int(d):
                    raise UsageError(
                        f"{what} has a static batch of {int(d)}; it cannot run batch {batch} "
                        f"(export it with --batch dynamic or --batch {batch})"
                    )
                out.append(int(d))
            else:
                out.append(batch or 1)
        elif static:
            out.append(int(d))
        else:
            raise UsageError(f"{what}: input dim {i} is dynamic ({d}); only the batch dim may be dynamic")
    return tuple(out)


def artifact_file(runtime: str, artifact: Any, suffixes: Sequence[str], *, names: Sequence[str] = ()) -> Path:
    """Resolve a path (a file, or a directory holding one of ``names``) and check it exists."""
    p = Path(artifact)
    if p.is_dir():
        for n in names:
            if (p / n).is_file():
                return p / n
        raise UsageError(f"{runtime}: no {' or '.join(names) or 'artefact'} in directory {p}")
    if not p.is_file():
        raise UsageError(f"{runtime}: artefact not found: {p}")
    if suffixes and p.suffix.lower() not in suffixes:
        raise UsageError(f"{runtime} cannot read '{p.name}': expected a {' / '.join(suffixes)} file")
    return p
