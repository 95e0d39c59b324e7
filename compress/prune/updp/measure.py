"""MACs and parameter counts (torch's FlopCounterMode; MACs = FLOPs / 2), logits and UPDP's BN recalibration settings.

Top-1 is :func:`compress.nn.evaluate.top1` (a fraction; UPDP reports it in percent).
"""

from __future__ import annotations

import torch
import torch.nn as nn


def count_macs(module: nn.Module, input_shape: tuple[int, ...], *, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass per sample (convs, linears, matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    was = module.training
    module.eval()
    x = torch.zeros(batch, *input_shape)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        module(x)
    module.train(was)
    return int(fc.get_total_flops() // 2 // batch)


def count_params(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


@torch.no_grad()
def logits(module: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    was = module.training
    module.eval()
    out = torch.cat([module(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    module.train(was)
    return out


def recalibrate_bn(
    module: nn.Module, images: torch.Tensor, *, batch_size: int = 128, only: list[nn.Module] | None = None
) -> None:
    """UPDP's settings for :func:`compress.nn.bn.recalibrate_bn`: only the BN layers run in train
    mode (stochastic depth and dropout stay off), batches of 128; ``only`` restricts the reset to the
    BN layers inside these modules (e.g. the pruned blocks)."""
    from compress.nn.bn import recalibrate_bn as recalibrate

    recalibrate(module, images, batch_size=batch_size, mode="bn", only=only)
