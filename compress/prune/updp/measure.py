"""MACs and parameter counts (torch's FlopCounterMode; MACs = FLOPs / 2) and top-1 evaluation."""

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
def top1(module: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 256) -> float:
    """Top-1 accuracy in percent (eval mode)."""
    was = module.training
    module.eval()
    correct = 0
    for i in range(0, len(labels), batch_size):
        correct += int((module(images[i : i + batch_size]).argmax(1) == labels[i : i + batch_size]).sum())
    module.train(was)
    return 100.0 * correct / max(1, len(labels))


@torch.no_grad()
def logits(module: nn.Module, images: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    was = module.training
    module.eval()
    out = torch.cat([module(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    module.train(was)
    return out


@torch.no_grad()
def recalibrate_bn(
    module: nn.Module, images: torch.Tensor, *, batch_size: int = 128, only: list[nn.Module] | None = None
) -> None:
    """Re-estimate BatchNorm running statistics (cumulative average) on ``images``.

    ``only``: restrict to the BN layers inside these modules (e.g. the pruned blocks).
    """
    scope = only if only is not None else [module]
    bns = [m for s in scope for m in s.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = {id(b): b.momentum for b in bns}
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
    was = module.training
    module.eval()
    for b in bns:
        b.train()
    for i in range(0, len(images), batch_size):
        module(images[i : i + batch_size])
    for b in bns:
        b.momentum = saved[id(b)]
    module.train(was)
