"""``timm:NAME`` references: random-initialised timm models, optionally with user weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compress.core.errors import UsageError, unknown
from compress.models.ref import RESOLVERS, LoadedModel, register_base_kind


def load_state_dict_file(path: str | Path) -> dict[str, Any]:
    """Read weights from safetensors or a torch file, never unpickling arbitrary objects."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p))
        except (SafetensorError, OSError) as err:
            raise UsageError(f"{p}: cannot read safetensors ({err})") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
        raise UsageError(
            f"{p}: not a weights file that loads with weights_only=True ({str(err).splitlines()[0]})"
        ) from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UsageError(f"{p}: expected a state_dict, found {type(obj).__name__}")
    return obj


def build_timm(
    name: str, *, num_classes: int = 1000, in_chans: int = 3, image_size: int = 224, weights: str | Path | None = None
) -> LoadedModel:
    import torch

    from compress.core.extras import require

    timm = require("timm", what=f"timm:{name}")

    if name not in timm.list_models():
        raise unknown("timm model", name, timm.list_models())
    torch.manual_seed(0)  # deterministic random init when no weights are given
    try:
        module = timm.create_model(
            name,
            pretrained=False,
            num_classes=num_classes,
            in_chans=in_chans,
            **({"img_size": image_size} if _takes_img_size(name) else {}),
        )
    except TypeError:
        module = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
    if weights is not None:
        state = load_state_dict_file(weights)
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise UsageError(
                f"{weights}: weights do not fit timm:{name} (num_classes={num_classes}, in_chans={in_chans}): "
                f"missing {list(missing)[:3]}, unexpected {list(unexpected)[:3]}"
            )
    module.eval()
    source = {"kind": "timm", "name": name, "num_classes": num_classes, "in_chans": in_chans, "image_size": image_size}
    return LoadedModel(
        module=module, input_shape=(in_chans, image_size, image_size), num_classes=num_classes, source=source
    )


def _takes_img_size(name: str) -> bool:
    return any(name.startswith(p) for p in ("vit_", "deit_", "fastvit", "efficientvit"))


class TimmResolver:
    def matches(self, ref: str) -> bool:
        return ref.startswith("timm:")

    def load(self, ref: str, **opts: Any) -> LoadedModel:
        name = ref.split(":", 1)[1]
        return build_timm(
            name,
            num_classes=opts.get("num_classes") or 1000,
            in_chans=opts.get("in_chans") or 3,
            image_size=opts.get("image_size") or 224,
            weights=opts.get("weights"),
        )


if "timm" not in RESOLVERS:
    RESOLVERS.add("timm", TimmResolver())
register_base_kind(
    "timm",
    lambda base: build_timm(
        base["name"],
        num_classes=base.get("num_classes", 1000),
        in_chans=base.get("in_chans", 3),
        image_size=base.get("image_size", 224),
    ),
)
