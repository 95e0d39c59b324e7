"""Registrations: the ``ftwt-gates`` model transform and the ``small:NAME`` model references.

Imported by :func:`compress.models.ref._ensure_builtin`, so reloading a saved FTWT model directory
re-inserts the gates (recorded sites, verbatim) before ``model.safetensors`` is loaded.
"""

from __future__ import annotations

from typing import Any

from compress.models.ref import RESOLVERS, TRANSFORMS, LoadedModel, register_base_kind

TRANSFORM_NAME = "ftwt-gates"


class FtwtGatesTransform:
    """Replays the gate surgery recorded as ``{"name": "ftwt-gates", "sites": [...], "pool", "softmax", "mode", "mass"}``."""

    def rebuild(self, module: Any, record: dict[str, Any]) -> Any:
        from compress.prune.ftwt.wrap import apply_sites, configure

        apply_sites(
            module,
            record["sites"],
            kind=record.get("kind", "gate"),
            pool=record.get("pool", "avg"),
            softmax=bool(record.get("softmax", True)),
            mode=record.get("mode", "decoupled"),
        )
        configure(module, mass=float(record.get("mass", 1.0)))
        return module


def build_small_loaded(
    name: str,
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    image_size: int = 28,
    weights: str | None = None,
    seed: int = 0,
) -> LoadedModel:
    from compress.core.errors import UsageError
    from compress.models.timm_source import load_state_dict_file
    from compress.prune.ftwt.models import build_small, parse_small_name

    base_name, width = parse_small_name(name)
    module = build_small(base_name, num_classes=num_classes, in_chans=in_chans, seed=seed, width=width)
    if weights is not None:
        missing, unexpected = module.load_state_dict(load_state_dict_file(weights), strict=False)
        if missing or unexpected:
            raise UsageError(
                f"{weights}: weights do not fit small:{name}: missing {list(missing)[:3]}, "
                f"unexpected {list(unexpected)[:3]}"
            )
    source = {
        "kind": "small",
        "name": name,
        "num_classes": num_classes,
        "in_chans": in_chans,
        "image_size": image_size,
        "seed": seed,
    }
    return LoadedModel(
        module=module, input_shape=(in_chans, image_size, image_size), num_classes=num_classes, source=source
    )


class SmallResolver:
    """``small:resnet``, ``small:mobilenetv2``, ``small:mobilenetv1``, ``small:vgg`` (28-32 px CNNs) and
    the paper-plan ``small:resnet56``, ``small:vgg16``, ``small:mobilenetv1-cifar``, each optionally
    ``@WIDTH`` (channel multiplier, e.g. ``small:mobilenetv1-cifar@0.5``)."""

    def matches(self, ref: str) -> bool:
        return ref.startswith("small:")

    def load(self, ref: str, **opts: Any) -> LoadedModel:
        return build_small_loaded(
            ref.split(":", 1)[1],
            num_classes=opts.get("num_classes") or 10,
            in_chans=opts.get("in_chans") or 1,
            image_size=opts.get("image_size") or 28,
            weights=opts.get("weights"),
        )


if TRANSFORM_NAME not in TRANSFORMS:
    TRANSFORMS.add(TRANSFORM_NAME, FtwtGatesTransform())
if "small" not in RESOLVERS:
    RESOLVERS.add("small", SmallResolver())
register_base_kind(
    "small",
    lambda base: build_small_loaded(
        base["name"],
        num_classes=base.get("num_classes", 10),
        in_chans=base.get("in_chans", 1),
        image_size=base.get("image_size", 28),
        seed=base.get("seed", 0),
    ),
)
