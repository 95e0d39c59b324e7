"""Resolve model references and save/load model directories.

Resolvers are tried in registration order; each declares ``matches(ref)`` and ``load(ref, **opts)``.
Sources register themselves from their own modules: this package's (``timm:NAME``, ``file.py:factory``)
are imported by ``compress/models/__init__.py``; every other package puts its sources in a module
named ``source.py`` (supernet checkpoints, search runs, pruned model dirs, ``small:NAME``), which
:func:`load_model` imports on first use (:func:`source_modules` finds them by that name). Adding a
source touches nothing here; see docs/extending.md.

A model directory records ``base`` (a reference a resolver can load, e.g. ``{"kind": "timm", ...}``
or ``{"kind": "subnet", ...}``) and ``transforms`` (e.g. UPDP merges). Loading rebuilds the base,
replays each transform's *structure* with :data:`TRANSFORMS`, then loads the saved weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from compress.core.errors import UsageError
from compress.core.registry import Registry
from compress.core.runs import atomic_path, atomic_write_json, read_json, sha256_file, sha256_json

if TYPE_CHECKING:
    import torch.nn as nn

MODEL_JSON = "model.json"
MODEL_WEIGHTS = "model.safetensors"


@dataclass
class LoadedModel:
    """A static model ready for evaluation, export or benchmarking."""

    module: nn.Module
    input_shape: tuple[int, int, int]
    num_classes: int
    source: dict[str, Any]
    dataset: str | None = None
    transforms: list[dict[str, Any]] = field(default_factory=list)
    predictions: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def source_hash(self) -> str:
        return sha256_json({"source": self.source, "transforms": self.transforms})[:16]


class Resolver(Protocol):
    def matches(self, ref: str) -> bool: ...
    def load(self, ref: str, **opts: Any) -> LoadedModel: ...


RESOLVERS: Registry[Resolver] = Registry("model source")


class Transform(Protocol):
    """Replays the structural part of a recorded transform on a freshly built module."""

    def rebuild(self, module: nn.Module, record: dict[str, Any]) -> nn.Module: ...


TRANSFORMS: Registry[Transform] = Registry("model transform")


BASE_KINDS: dict[str, Callable[..., LoadedModel]] = {}


def register_base_kind(kind: str, fn: Callable[..., LoadedModel]) -> None:
    """Register how to rebuild a ``base`` record of ``kind`` (used when loading model dirs)."""
    BASE_KINDS[kind] = fn


SOURCE_MODULE = "source.py"  # the file name of a package's model-source module


def source_modules() -> list[str]:
    """The ``source.py`` modules of every ``compress`` package (sorted by name), found on disk.

    Found by name rather than listed so that a package adds a source without editing this module;
    nothing is imported here."""
    root = Path(__file__).resolve().parents[1]  # the compress package
    mods = []
    for f in sorted(root.rglob(SOURCE_MODULE)):
        rel = f.relative_to(root).with_suffix("")
        if "__pycache__" not in rel.parts and all(p.isidentifier() for p in rel.parts):
            mods.append(".".join(["compress", *rel.parts]))
    return mods


def _ensure_builtin() -> None:
    # Importing these modules registers their resolvers/base kinds/transforms; a module whose own
    # package is missing (a partial install) is skipped so that it does not break the others.
    import importlib

    for mod in source_modules():
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as err:
            if err.name and mod.startswith(err.name):
                continue
            raise


def load_model(ref: str | Path, **opts: Any) -> LoadedModel:
    """Load any model reference the toolkit understands.

    ``ref`` may be ``timm:NAME`` (``weights=PATH``, ``num_classes``, ``in_chans``, ``image_size``),
    a model directory (``model.json`` + ``model.safetensors``), or whatever later stages register
    (supernet checkpoint with ``subnet=``, a search run directory or its selected-subnet file).
    """
    _ensure_builtin()
    ref = str(ref)
    p = Path(ref)
    if p.is_dir() and (p / MODEL_JSON).is_file():
        return load_model_dir(p)
    for _name, resolver in RESOLVERS.items():
        if resolver.matches(ref):
            return resolver.load(ref, **opts)
    if p.exists():
        raise UsageError(
            f"'{ref}' is not a model this toolkit can read: expected a model directory "
            f"(model.json + model.safetensors), a search run, a supernet checkpoint, or timm:NAME"
        )
    raise UsageError(f"model not found: '{ref}' (give a path, or timm:NAME)")


def save_model_dir(path: str | Path, model: LoadedModel, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model.json`` and ``model.safetensors`` atomically; returns the directory."""
    from safetensors.torch import save_file

    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.module.state_dict().items()}
    with atomic_path(d / MODEL_WEIGHTS) as tmp:
        save_file(state, str(tmp))
    record = {
        "format": "compress-model",
        "version": 1,
        "base": model.source,
        "transforms": model.transforms,
        "input_shape": list(model.input_shape),
        "num_classes": model.num_classes,
        "dataset": model.dataset,
        "predictions": model.predictions,
        "metrics": model.metrics,
        "weights_sha256": sha256_file(d / MODEL_WEIGHTS),
        **(extra or {}),
    }
    atomic_write_json(d / MODEL_JSON, record)
    return d


def load_model_dir(path: str | Path) -> LoadedModel:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _ensure_builtin()
    d = Path(path)
    rec = read_json(d / MODEL_JSON, what="model.json")
    if not isinstance(rec, dict) or rec.get("format") != "compress-model":
        raise UsageError(f"{d / MODEL_JSON} is not a compress model description")
    base = rec["base"]
    kind = base.get("kind")
    if kind not in BASE_KINDS:
        raise UsageError(f"{d}: unknown base model kind '{kind}'")
    lm = BASE_KINDS[kind](base)
    module = lm.module
    for t in rec.get("transforms", []):
        module = TRANSFORMS.get(t["name"]).rebuild(module, t)
    wpath = d / MODEL_WEIGHTS
    if not wpath.is_file():
        raise UsageError(f"{d}: {MODEL_WEIGHTS} is missing")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError) as err:
        raise UsageError(f"{wpath}: cannot read weights ({err}); the file may be truncated or corrupted") from None
    missing, unexpected = module.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UsageError(
            f"{wpath}: weights do not match the architecture in model.json "
            f"(missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]})"
        )
    module.eval()
    return LoadedModel(
        module=module,
        input_shape=tuple(rec["input_shape"]),
        num_classes=int(rec["num_classes"]),
        source=base,
        dataset=rec.get("dataset"),
        transforms=list(rec.get("transforms", [])),
        predictions=rec.get("predictions", {}),
        metrics=rec.get("metrics", {}),
    )
