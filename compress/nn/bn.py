"""BatchNorm recalibration, the one implementation (OFA's ``set_running_statistics``).

After weight sharing (a supernet's subnets), pruning or merging, BN running statistics no longer
describe the activations the model produces. Recalibration resets them and takes a cumulative
average (``momentum=None``) over calibration batches, without gradients. Callers choose:

- ``mode="train"``: the whole model runs in train mode, as OFA does (the supernet layer);
- ``mode="bn"``: only the BN layers run in train mode; dropout and other train-time layers stay
  off (UPDP, whose models may carry stochastic depth);
- ``only``: restrict the reset to the BN layers inside these modules (e.g. freshly merged blocks);
  the other BN layers stay in eval mode, so their statistics do not move;
- ``channels``: reset only the first ``c`` entries of a BN layer (``id(bn) -> c``), the slices a
  supernet's active subnet uses; the other entries belong to other subnets and stay as they are;
- ``transform``: applied to each input batch (e.g. resizing to the subnet's resolution).

The model's train/eval mode and each BN layer's momentum are restored afterwards, also on error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from compress.core.errors import UsageError


def batchnorms(scope: Iterable[Any]) -> list[Any]:
    """The BatchNorm layers inside the modules of ``scope`` (each once, in module order)."""
    import torch.nn as nn

    seen: set[int] = set()
    out = []
    for s in scope:
        for m in s.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in seen:
                seen.add(id(m))
                out.append(m)
    return out


def recalibrate_bn(
    model: Any,
    images: Any,
    *,
    batch_size: int = 256,
    mode: Literal["train", "bn"] = "train",
    only: list[Any] | None = None,
    channels: Mapping[int, int] | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> None:
    """Re-estimate the BN running statistics of ``model`` (in place) on ``images``; see the module docstring."""
    import torch

    if images is None or len(images) == 0:
        raise UsageError("BN recalibration needs calibration images (got none)")
    if mode not in ("train", "bn"):
        raise ValueError(f"mode must be 'train' or 'bn', got {mode!r}")
    bns = batchnorms(only if only is not None else [model])
    if not bns:
        return
    saved = [m.momentum for m in bns]
    scope = {id(m) for m in bns}
    was = model.training
    with torch.no_grad():
        for m in bns:
            c = (channels or {}).get(id(m), m.num_features)
            m.running_mean[:c].zero_()
            m.running_var[:c].fill_(1.0)
            m.num_batches_tracked.zero_()
            m.momentum = None
        model.train(mode == "train")
        for m in batchnorms([model]):  # BN layers outside ``only`` keep their statistics
            m.train(id(m) in scope)
        p = next(iter(model.parameters()), None)
        dev = p.device if p is not None else torch.device("cpu")
        try:
            for i in range(0, len(images), batch_size):
                x = images[i : i + batch_size].to(dev)
                if transform is not None:
                    x = transform(x)
                model(x)
        finally:
            for m, mom in zip(bns, saved):
                m.momentum = mom
            model.train(was)
