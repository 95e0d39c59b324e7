"""Build one block alone (random weights, eval mode) from its signature, to time it.

Supernet kinds are built by the supernet layer (``compress.supernet.build_block_module``) so the
timed module is exactly the layer of ``export_active()``; the merged kinds of depth pruning and
the kinds only timm models have (ResNet ``basic``, a lone depthwise conv) are built here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from compress.latency.signature import BlockSignature

_SUPERNET_KINDS = ("conv", "mbconv", "convnext", "bottleneck", "downsample", "maxpool", "norm", "pool", "linear")


def _act(name: str) -> nn.Module:
    return {
        "none": nn.Identity,
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "hswish": nn.Hardswish,
        "hsigmoid": nn.Hardsigmoid,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
        "sigmoid": nn.Sigmoid,
        "tanh": nn.Tanh,
    }[name]()


class MergedDwPw(nn.Module):
    """Depthwise kxk (bias) -> 1x1 (bias) [+ x] [-> act]: ConvNeXt/MBConv merged by UPDP."""

    def __init__(self, sig: BlockSignature) -> None:
        super().__init__()
        k = sig.kernel
        self.dw = nn.Conv2d(sig.in_ch, sig.in_ch, k, sig.stride, k // 2, groups=sig.in_ch, bias=True)
        self.pw = nn.Conv2d(sig.in_ch, sig.out_ch, 1, bias=True)
        self.residual = sig.residual and sig.stride == 1 and sig.in_ch == sig.out_ch
        self.act = _act(sig.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return self.act(x + y if self.residual else y)


class MergedConv(nn.Module):
    """One dense kxk conv (bias; the identity shortcut is folded into it) [-> act]."""

    def __init__(self, sig: BlockSignature) -> None:
        super().__init__()
        k = sig.kernel if sig.kind == "merged_dense" else 1
        self.conv = nn.Conv2d(sig.in_ch, sig.out_ch, k, sig.stride, k // 2, bias=True)
        self.act = _act(sig.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))


class BasicBlock(nn.Module):
    """ResNet basic block: conv kxk/s -> BN -> act -> conv kxk -> BN, + shortcut, act."""

    def __init__(self, sig: BlockSignature) -> None:
        super().__init__()
        k, s = sig.kernel, sig.stride
        self.conv1 = nn.Conv2d(sig.in_ch, sig.out_ch, k, s, k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(sig.out_ch)
        self.conv2 = nn.Conv2d(sig.out_ch, sig.out_ch, k, 1, k // 2, bias=False)
        self.bn2 = nn.BatchNorm2d(sig.out_ch)
        self.act = _act(sig.act if sig.act != "none" else "relu")
        self.down = None
        if s != 1 or sig.in_ch != sig.out_ch:
            self.down = nn.Sequential(nn.Conv2d(sig.in_ch, sig.out_ch, 1, s, bias=False), nn.BatchNorm2d(sig.out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))
        return self.act(y + (x if self.down is None else self.down(x)))


class DwConv(nn.Module):
    def __init__(self, sig: BlockSignature) -> None:
        super().__init__()
        k = sig.kernel
        self.conv = nn.Conv2d(sig.in_ch, sig.out_ch, k, sig.stride, k // 2, groups=sig.in_ch, bias=sig.bias)
        self.bn = nn.BatchNorm2d(sig.out_ch) if sig.norm else nn.Identity()
        self.act = _act(sig.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def build_module(sig: BlockSignature, *, seed: int = 0, layer_scale_init: float = 0.1) -> nn.Module:
    """A fresh module computing ``sig`` (eval mode, deterministic random weights for ``seed``)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if sig.kind in _SUPERNET_KINDS:
            from compress.supernet import BlockSpec, build_block_module

            spec = BlockSpec(name="latency", **{k: v for k, v in sig.to_dict().items()})
            mod: nn.Module = build_block_module(spec, layer_scale_init=layer_scale_init)
        elif sig.kind in ("merged_dw_pw",):
            mod = MergedDwPw(sig)
        elif sig.kind in ("merged_dense", "merged_pw"):
            mod = MergedConv(sig)
        elif sig.kind == "basic":
            mod = BasicBlock(sig)
        elif sig.kind == "dwconv":
            mod = DwConv(sig)
        else:  # pragma: no cover - KINDS is closed
            raise ValueError(f"cannot build block kind '{sig.kind}'")
    finally:
        torch.random.set_rng_state(state)
    return mod.eval()


def export_onnx(module: nn.Module, input_shape: tuple[int, ...], path: Any, *, batch: int = 1, opset: int = 17) -> Any:
    """Export ``module`` with a fixed (batch, *input_shape) input to ONNX, atomically.

    Uses the TorchScript exporter (``dynamo=False``): about 20 ms for a block, against about
    one second for the dynamo exporter, which matters when a table has hundreds of blocks.
    """
    import io
    import warnings

    from compress.core.runs import atomic_write_bytes

    x = torch.randn(batch, *input_shape)
    buf = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (x,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=["output"],
            do_constant_folding=True,
        )
    atomic_write_bytes(path, buf.getvalue())
    return path
