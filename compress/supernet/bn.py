"""BatchNorm recalibration of a subnet on calibration images (OFA's ``set_running_statistics``).

Weight sharing leaves each subnet with running statistics that belong to other subnets; before
evaluating a subnet its BN statistics are re-estimated on a calibration split: statistics are
reset, then a cumulative average (momentum None) is taken over the calibration batches in train
mode without gradients. This module adds what a supernet needs (the active subnet, its resolution,
the active slices of shared statistics) to the one implementation, :mod:`compress.nn.bn`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from compress.core.errors import UsageError


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
    Images are resized to the config's resolution. The work is :func:`compress.nn.bn.recalibrate_bn`
    (whole model in train mode, as OFA).
    """
    from compress.nn.bn import recalibrate_bn as recalibrate
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
    recalibrate(
        model,
        images,
        batch_size=batch_size,
        mode="train",
        channels=_active_channels(model) if isinstance(model, Supernet) else None,
        transform=None if resolution is None else (lambda x: resize_input(x, resolution)),
    )
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
