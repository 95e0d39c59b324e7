"""Load a model for a dataset: the one place that turns a dataset's shape into model options.

A reference that *builds* an architecture (``timm:NAME``, ``file.py:factory``, ``small:NAME``,
``efficientnet-lite0``) needs the dataset's class count, and most also its channels and image
size; a reference that *carries* its architecture (a model directory, a supernet checkpoint with
``subnet=``, a search run) takes what it recorded. The default image size is the dataset's native
size, raised to at least ``min_image_size`` (32 by default: timm backbones downsample 32x; FTWT's
small CIFAR-style models pass 0 to keep 28x28 Fashion-MNIST at 28).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.models.ref import MODEL_JSON, RESOLVERS, LoadedModel, _ensure_builtin, load_model

# Which dataset-derived options each model source (by its RESOLVERS name) builds its model from.
DATASET_OPTIONS: dict[str, tuple[str, ...]] = {
    "timm": ("in_chans", "image_size"),
    "pyfile": ("in_chans", "image_size"),
    "small": ("in_chans", "image_size"),
    "efficientnet-lite0": ("image_size",),  # 3 input channels by construction
}


def dataset_options(ref: str) -> tuple[str, ...]:
    """The dataset-derived options (besides ``num_classes``) the source of ``ref`` builds from."""
    p = Path(ref)
    if p.is_dir() and (p / MODEL_JSON).is_file():
        return ()
    _ensure_builtin()
    for name, resolver in RESOLVERS.items():
        if resolver.matches(ref):
            return DATASET_OPTIONS.get(name, ())
    return ()


def default_image_size(info: Any, *, min_image_size: int = 32) -> int:
    """The dataset's native image size (32 when it has none), at least ``min_image_size``."""
    return int(max(min_image_size, info.native_size or 32))


def load_for_dataset(
    model: str | Path | LoadedModel,
    info: Any,
    *,
    weights: str | Path | None = None,
    subnet: Any = None,
    image_size: int | None = None,
    min_image_size: int = 32,
) -> LoadedModel:
    """``model`` (a reference, or an already loaded model, returned as is) built for the dataset ``info``.

    ``info`` is a :class:`compress.data.DatasetInfo` (``num_classes``, ``channels``, ``native_size``);
    ``image_size`` overrides the default size (see the module docstring).
    """
    if isinstance(model, LoadedModel):
        return model
    ref = str(model)
    opts: dict[str, Any] = {"num_classes": info.num_classes}
    takes = dataset_options(ref)
    if "in_chans" in takes:
        opts["in_chans"] = info.channels
    if "image_size" in takes:
        opts["image_size"] = int(image_size or default_image_size(info, min_image_size=min_image_size))
    if weights:
        opts["weights"] = str(weights)
    if subnet is not None:
        opts["subnet"] = subnet
    return load_model(ref, **opts)
