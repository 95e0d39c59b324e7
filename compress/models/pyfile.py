"""``path/to/file.py:factory`` references: a user's own ``nn.Module``, written in plain PyTorch.

The file is imported (it is the user's own code, run as they asked) and ``factory`` is called with
whichever of ``num_classes`` and ``in_chans`` it accepts; weights come from ``--weights`` as
safetensors or a ``weights_only`` torch state_dict (never unpickled). The record keeps the file's
absolute path, its SHA-256 and the factory, so a model directory built from it reloads only against
the same file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

from compress.core.errors import UsageError, suggest
from compress.models.ref import RESOLVERS, LoadedModel, register_base_kind


def split_ref(ref: str) -> tuple[Path, str] | None:
    """``file.py:factory`` -> (path, factory); None when ``ref`` is not of that form."""
    path, sep, factory = str(ref).rpartition(":")
    if not sep or not path.endswith(".py") or not factory.isidentifier():
        return None
    return Path(path), factory


def import_factory(path: str | Path, factory: str) -> tuple[Any, str]:
    """Import the user's file and return (its callable ``factory``, the file's SHA-256).

    Separate from :func:`build_pyfile` so a pipeline preflight can check that the file exists and
    the factory is there in seconds, without building (or loading weights into) the model.
    """
    p = Path(path).resolve()
    if not p.is_file():
        raise UsageError(f"model file not found: {p} (give --model path/to/file.py:factory)")
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    name = f"compress_user_model_{digest[:12]}"
    spec = importlib.util.spec_from_file_location(name, p)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses and pickling-free deepcopy of classes need the module
    try:
        spec.loader.exec_module(mod)
    except Exception as err:  # noqa: BLE001 - the user's file may raise anything
        sys.modules.pop(name, None)
        raise UsageError(
            f"{p}: importing it failed ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    fn = getattr(mod, factory, None)
    if not callable(fn):
        names = [k for k, v in vars(mod).items() if callable(v) and not k.startswith("_")]
        raise UsageError(f"{p}: no callable '{factory}'{suggest(factory, names)}")
    return fn, digest


def build_pyfile(
    path: str | Path,
    factory: str,
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    image_size: int = 224,
    weights: str | Path | None = None,
    sha256: str | None = None,
) -> LoadedModel:
    import torch

    p = Path(path).resolve()
    fn, digest = import_factory(p, factory)
    if sha256 is not None and digest != sha256:
        raise UsageError(
            f"{p} changed since this model was saved (sha256 {digest[:12]} != {sha256[:12]}); "
            "restore the file or rebuild the model"
        )
    params = inspect.signature(fn).parameters
    kwargs = {k: v for k, v in (("num_classes", num_classes), ("in_chans", in_chans)) if k in params}
    torch.manual_seed(0)  # a deterministic random init when no weights are given
    module = fn(**kwargs)
    if not isinstance(module, torch.nn.Module):
        raise UsageError(f"{p}:{factory}() returned {type(module).__name__}, not a torch.nn.Module")
    if weights is not None:
        from compress.models.timm_source import load_state_dict_file

        missing, unexpected = module.load_state_dict(load_state_dict_file(weights), strict=False)
        if missing or unexpected:
            raise UsageError(
                f"{weights}: weights do not fit {p.name}:{factory} (missing {list(missing)[:3]}, "
                f"unexpected {list(unexpected)[:3]})"
            )
    module.eval()
    source = {
        "kind": "pyfile",
        "path": str(p),
        "factory": factory,
        "sha256": digest,
        "num_classes": num_classes,
        "in_chans": in_chans,
        "image_size": image_size,
    }
    return LoadedModel(
        module=module, input_shape=(in_chans, image_size, image_size), num_classes=num_classes, source=source
    )


class PyFileResolver:
    def matches(self, ref: str) -> bool:
        return split_ref(ref) is not None

    def load(self, ref: str, **opts: Any) -> LoadedModel:
        path, factory = split_ref(ref)
        return build_pyfile(
            path,
            factory,
            num_classes=opts.get("num_classes") or 1000,
            in_chans=opts.get("in_chans") or 3,
            image_size=opts.get("image_size") or 224,
            weights=opts.get("weights"),
        )


if "pyfile" not in RESOLVERS:
    RESOLVERS.add("pyfile", PyFileResolver())
register_base_kind(
    "pyfile",
    lambda base: build_pyfile(
        base["path"],
        base["factory"],
        num_classes=base["num_classes"],
        in_chans=base["in_chans"],
        image_size=base["image_size"],
        sha256=base.get("sha256"),
    ),
)
