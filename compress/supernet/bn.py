"""BatchNorm recalibration of a subnet on calibration images (OFA's ``set_running_statistics``).

Weight sharing leaves each subnet with running statistics that belong to other subnets; before
evaluating a subnet its BN statistics are re-estimated on a calibration split: statistics are
reset, then a cumulative average (momentum None) is taken over the calibration batches in train
mode without gradients.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from compress.core.errors import UsageError


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    cfg: Any = None,
    calib_images: torch.Tensor | None = None,
    *,
    batch_size: int = 256,
    max_images: int | None = None,
) -> nn.Module:
    """Re-estimate BN statistics of ``model`` (in place) and return it in eval mode.

    ``model`` is a :class:`~compress.supernet.base.Supernet` (``cfg`` is set active first; only the
    active slices of the shared statistics change; call it on ``net.export_active()`` to keep the
    supernet untouched) or any static module (``cfg`` optional, used only for the resolution).
    Images are resized to the config's resolution.
    """
    from compress.supernet.base import Supernet, resize_input

    if calib_images is None or len(calib_images) == 0:
        raise UsageError("BN recalibration needs calibration images (got none)")
    images = calib_images if max_images is None else calib_images[:max_images]
    resolution = None
    if isinstance(model, Supernet):
        if cfg is not None:
            model.set_active(cfg)
        resolution = model.active.resolution
    elif cfg is not None:
        resolution = getattr(cfg, "resolution", None)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    was_training = model.training
    active_ch = _active_channels(model) if isinstance(model, Supernet) else {}
    for m in bns:
        c = active_ch.get(id(m), m.num_features)
        m.running_mean[:c].zero_()
        m.running_var[:c].fill_(1.0)
        m.num_batches_tracked.zero_()
        m.momentum = None
    model.train()
    dev = next(model.parameters()).device
    try:
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(dev)
            if resolution is not None:
                x = resize_input(x, resolution)
            model(x)
    finally:
        for m, (mom, _) in zip(bns, saved):
            m.momentum = mom
        model.train(was_training)
    return model.eval()


def _active_channels(net: Any) -> dict[int, int]:
    """id(BN) -> active channel count for the supernet's active subnet."""
    out: dict[int, int] = {}
    for layer, s in zip(net._layers, net._specs):
        for local, t in layer.active_state(s).items():
            if local.endswith("running_mean"):
                mod_name = local.rsplit(".", 1)[0] if "." in local else ""
                bn = layer.get_submodule(mod_name) if mod_name else layer
                out[id(bn)] = int(t.shape[0])
    return out
