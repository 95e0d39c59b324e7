"""The FTWT gating module (ALGORITHMS.md §4.1) and the gated Conv-BN(-act) wrapper.

``ChannelGate`` predicts, from the layer *input*, which output channels to keep: pool over space
(adaptive average pooling as in the released code; ``pool="max"`` for the paper figure's global max
pooling), softmax over channels, a 1x1 conv C_in -> C_out with bias (the logits P), and the hard
mask ``M = 1[sigmoid(P) > 0.5] = 1[P > 0]`` computed without gradient. ``GatedConv`` runs
``act(bn(conv(x)))`` and multiplies it by the mask, channel-wise.

The mask is part of the forward graph (``Greater`` + ``Cast`` + ``Mul`` in ONNX), so an exported
model computes its masks in-graph. Dense runtimes still compute every channel.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from compress.prune.ftwt.labels import mass_labels, peak_scores

POOLS = ("avg", "max")
MODES = ("decoupled", "joint")


class ChannelGate(nn.Module):
    """Mask predictor for one conv layer: ``C_in`` pooled input features -> ``C_out`` logits.

    Attributes set by the training loop (not saved in the state dict):
    ``enabled`` (False: pass the output through unmasked), ``collect`` (keep the last logits and
    mass labels for the BCE loss), ``mass`` (the heatmap-mass threshold r for the labels).
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, pool: str = "avg", softmax: bool = True, mode: str = "decoupled"
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.pool, self.softmax, self.mode = pool, bool(softmax), mode
        self.fc = nn.Conv2d(in_channels, out_channels, 1, bias=True)
        self.enabled = True
        self.collect = False
        self.mass = 1.0
        self.last_logits: torch.Tensor | None = None
        self.last_labels: torch.Tensor | None = None
        self.last_mask: torch.Tensor | None = None

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Predictor logits P (N, C_out) from the layer input x (N, C_in, H, W)."""
        z = x.detach() if self.mode == "decoupled" else x
        s = z.mean(dim=(2, 3), keepdim=True) if self.pool == "avg" else z.amax(dim=(2, 3), keepdim=True)
        if self.softmax:
            s = torch.softmax(s, dim=1)
        return self.fc(s).flatten(1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mask the layer output ``y`` (N, C_out, H, W) with the mask predicted from its input ``x``."""
        if not self.enabled and not self.collect:
            return y
        logits = self.logits(x)
        if self.collect:
            self.last_logits = logits
            self.last_labels = mass_labels(peak_scores(y), self.mass)
        if not self.enabled:
            return y
        mask = (logits.detach() > 0).to(y.dtype)  # == sigmoid(P) > 0.5; no gradient
        self.last_mask = mask.detach() if self.collect else None
        return y * mask[:, :, None, None]

    def extra_repr(self) -> str:
        return f"{self.in_channels}->{self.out_channels}, pool={self.pool}, softmax={self.softmax}, mode={self.mode}"


class GatedConv(nn.Module):
    """``gate(x, act(bn(conv(x))))``: a Conv-BN(-act) triple with an FTWT gate on its output.

    ``act`` is ``nn.Identity()`` where the original had none (MobileNetV2 project convs) or where
    the activation lives inside the norm module (timm ``BatchNormAct2d``).
    """

    def __init__(
        self,
        conv: nn.Conv2d,
        bn: nn.Module,
        act: nn.Module | None = None,
        *,
        pool: str = "avg",
        softmax: bool = True,
        mode: str = "decoupled",
    ) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn
        self.act = act if act is not None else nn.Identity()
        self.gate = ChannelGate(conv.in_channels, conv.out_channels, pool=pool, softmax=softmax, mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(x, self.act(self.bn(self.conv(x))))


class StaticMask(nn.Module):
    """A fixed 0/1 channel mask on the output of a Conv-BN(-act) (the static L1 baseline)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module, act: nn.Module | None = None) -> None:
        super().__init__()
        self.conv, self.bn = conv, bn
        self.act = act if act is not None else nn.Identity()
        self.register_buffer("mask", torch.ones(conv.out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x))) * self.mask.view(1, -1, 1, 1)
